#!/usr/bin/env bash
# Test suite: set up the environment (./.venv, or yours: see setup_env.sh), then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/setup_env.sh test)
export GLOG_v=3
exec "$PY" -m pytest -q --durations=20 tests "$@"
