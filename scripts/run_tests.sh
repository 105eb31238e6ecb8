#!/usr/bin/env bash
# Test suite: set up the environment (./.venv, or yours: see setup_env.sh), then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/setup_env.sh test)
export GLOG_v=3
# Test files run in INN_MS_TEST_WORKERS processes (default 2, this project's machine's cores; 0: one
# process), a file's tests together in one, so module fixtures are built once.
exec "$PY" -m pytest -q --durations=20 -n "${INN_MS_TEST_WORKERS:-2}" --dist loadfile tests "$@"
