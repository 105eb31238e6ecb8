#!/usr/bin/env bash
# Test suite: set up the environment, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export GLOG_v=3
exec .venv/bin/python -m pytest -q --durations=20 tests "$@"
