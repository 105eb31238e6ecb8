#!/usr/bin/env bash
# Installs inn_ms with what the README's commands need and prints the Python
# to run them with (the last line of stdout; pip's output goes to stderr).
#   - INN_MS_PYTHON set: that interpreter (any environment of yours);
#   - else an active virtualenv or conda environment (VIRTUAL_ENV / CONDA_PREFIX)
#     and no ./.venv here: that environment's python;
#   - else ./.venv, created on first use.
# Safe to run again: pip skips what is already installed.
# Usage: PY=$(bash scripts/setup_env.sh [test])   # "test": also the [test] extra (pytest, torch 2.13 CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
. scripts/python_env.sh
if ! PY=$(inn_ms_python "$PWD"); then
  "${PYTHON:-python3}" -m venv .venv >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  PY="$PWD/.venv/bin/python"
fi
# The package list is requirements.txt (pyproject.toml reads its dependencies from it: numpy<2
# for MindSpore 2.10, scikit-image for the offline super-resolution photos, ...) plus, for the
# tests, the [test] extra; torch==2.13.0 (CPU) is only used by tests, as a reference implementation.
"$PY" -m pip install --quiet -e ".$extra" >&2
echo "$PY"
