# Sourced by the scripts that run Python (setup_env.sh, run_distribute_train.sh): one rule for
# which interpreter runs inn_ms.
#   inn_ms_python ROOT   prints, in this order:
#     - $INN_MS_PYTHON, if set (any environment of yours);
#     - the active virtualenv's or conda environment's python (VIRTUAL_ENV / CONDA_PREFIX),
#       when ROOT has no ./.venv;
#     - ROOT/.venv/bin/python, if it exists;
#   and returns 1 when none applies (setup_env.sh then creates ./.venv; run_distribute_train.sh
#   takes the python on PATH, where inn_ms may be pip-installed).
inn_ms_python() {
  local root=$1
  if [ -n "${INN_MS_PYTHON:-}" ]; then
    echo "$INN_MS_PYTHON"
  elif [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && [ ! -x "$root/.venv/bin/python" ]; then
    command -v python || command -v python3
  elif [ -x "$root/.venv/bin/python" ]; then
    echo "$root/.venv/bin/python"
  else
    return 1
  fi
}
