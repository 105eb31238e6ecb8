#!/usr/bin/env bash
# Creates ./.venv (if missing) and installs inn_ms with its test extras into it.
# Safe to run again: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# The package list is pyproject.toml's dependencies (numpy<2 for MindSpore 2.10, scikit-image
# for the offline super-resolution photos, ...) plus the [test] extra;
# torch==2.13.0 (CPU) is only used by tests, as a reference implementation.
.venv/bin/python -m pip install --quiet -e ".[test]"
