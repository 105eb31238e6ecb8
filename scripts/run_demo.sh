#!/usr/bin/env bash
# Main job: set up the environment (./.venv, or yours: see setup_env.sh), then run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/setup_env.sh)
export GLOG_v=3
exec "$PY" scripts/demo_convert.py "$@"
