#!/usr/bin/env bash
# Main job: set up the environment, then run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export GLOG_v=3
exec .venv/bin/python scripts/demo_convert.py "$@"
