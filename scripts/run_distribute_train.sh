#!/usr/bin/env bash
# Data-parallel training on N devices of this machine with MindSpore's msrun:
#   bash scripts/run_distribute_train.sh N CONFIG [--set key=value ...]
# Every worker runs scripts/train.py with distributed=true; each reads its
# slice of every global batch (batch_size per worker) and gradients are
# averaged. Worker logs: <output_dir>/msrun_logs/worker_<rank>.log.
# MASTER_PORT picks the rendezvous port (default: a free one); MSRUN the launcher (default: the
# msrun beside the chosen Python, else the one on PATH). The Python: as scripts/setup_env.sh
# chooses it (INN_MS_PYTHON, an active environment, ./.venv), else the python on PATH.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 N CONFIG [--set key=value ...]" >&2
  exit 2
fi
N=$1
CONFIG=$2
shift 2
case "$N" in ''|*[!0-9]*) echo "N must be a positive integer, got '$N'" >&2; exit 2;; esac
[ -f "$CONFIG" ] || { echo "config $CONFIG not found" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The Python that runs inn_ms, chosen as scripts/setup_env.sh chooses it (INN_MS_PYTHON, an active
# virtualenv or conda environment, ./.venv), else the python on PATH (inn_ms pip-installed there).
. "$ROOT/scripts/python_env.sh"
PY=$(inn_ms_python "$ROOT") || PY=$(command -v python3 || command -v python || true)
if [ -z "$PY" ] || ! command -v "$PY" >/dev/null; then
  echo "run_distribute_train.sh: no Python found: set INN_MS_PYTHON=/path/to/python (the one with inn_ms and" \
       "MindSpore), activate its environment, or run scripts/setup_env.sh" >&2
  exit 2
fi
MSRUN=${MSRUN:-"$(dirname "$PY")/msrun"}
[ -x "$MSRUN" ] || MSRUN=msrun
# output_dir of the config after the overrides, for the log folder (a bad config: one line, exit 2).
OUT=$(INN_ROOT="$ROOT" "$PY" - "$CONFIG" "$@" <<'PYEOF'
import importlib.util, os, sys
sys.path.insert(0, os.environ["INN_ROOT"])
missing = [m for m in ("mindspore", "yaml", "inn_ms") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"run_distribute_train.sh: {sys.executable} cannot import {', '.join(missing)}: set "
             f"INN_MS_PYTHON=/path/to/python (the one with inn_ms and MindSpore), activate its environment, "
             f"or run scripts/setup_env.sh")
from inn_ms.config import load_config
args, sets = sys.argv[2:], []
for i, a in enumerate(args):
    if a == "--set" and i + 1 < len(args):
        sets.append(args[i + 1])
try:
    print(load_config(sys.argv[1], sets)["output_dir"])
except ValueError as e:
    sys.exit(f"run_distribute_train.sh: {e}")
PYEOF
) || exit 2
export GLOG_v=${GLOG_v:-3}
export PATH="$(dirname "$PY"):$PATH"   # msrun starts workers with the python on PATH
PORT=${MASTER_PORT:-$("$PY" -c "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])")}
exec "$MSRUN" --worker_num="$N" --local_worker_num="$N" --master_port="$PORT" \
  --log_dir="$OUT/msrun_logs" --join=True \
  "$ROOT/scripts/train.py" --config "$CONFIG" --set distributed=true "$@"
