"""Resident memory of this process (Linux ``/proc/self``), and running a
measurement in a fresh Python process, for the memory benchmarks (and the
tests that bound memory: they import this module in their subprocess)."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def status_mb(key):
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def restart_peak():
    """Make the peak (``VmHWM``) restart from the resident memory now; returns it (MB)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_mb("VmRSS")


def run_child(code, *args, env=None, timeout=1800):
    """Run ``code`` (Python source) in a fresh process with ``args``, the
    repository and this folder importable; its last stdout line is JSON.
    Returns that object, or ``{"error": ...}``: the last stderr line, the
    signal that killed it, or the time limit (``timeout`` seconds) it hit."""
    env = dict(env if env is not None else os.environ, GLOG_v="3")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory() as folder:  # a file: graph mode reads the source of Cells defined in it
        script = os.path.join(folder, "child.py")
        with open(script, "w") as f:
            f.write(code)
        try:
            proc = subprocess.run([sys.executable, script, *map(str, args)], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode < 0:
        return {"error": f"crashed: killed by signal {-proc.returncode}" + (f" ({last})" if last else "")}
    if proc.returncode:
        return {"error": last or f"failed (exit status {proc.returncode})"}
    return json.loads(proc.stdout.strip().splitlines()[-1])
