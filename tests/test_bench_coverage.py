"""``scripts/bench/coverage.py`` run as a user runs it: a row per mindcv
model from a fresh process, a time limit that ends a process, and pin
reasons counted by cause."""
import json
import os
import sys

import mindcv

from inn_ms.model import count_parameters
from tests.helpers import ROOT, run_script

sys.path.insert(0, os.path.join(ROOT, "scripts", "bench"))
from coverage import blocked, cause, main_cause  # noqa: E402


def test_a_small_model_converts_exactly_and_shrinks(tmp_path):
    out = tmp_path / "rows.json"
    text = run_script([sys.executable, "scripts/bench/coverage.py", "--models", "mobilenet_v1_025",
                       "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["model"] == "mobilenet_v1_025" and row["stage"] == "done" and "error" not in row, row
    assert row["params"] == count_parameters(mindcv.create_model("mobilenet_v1_025", num_classes=10))
    assert row["input"] == 64 and row["converts"] and row["resized"]
    assert 0 <= row["exact"] < 1e-4
    continuous, total = row["groups"]
    assert 0 < continuous <= total
    assert row["touched"] > 0.99  # every conv and the head sit on a continuous group
    assert 0.2 < row["kept"] < 0.6  # about a quarter for a layer on two halved groups, half for one
    assert ("tried 1; convert exactly 1; resize + discretize at 0.5 and run 1; touched share >= 90 % 1; "
                   "and keep <= 30% of the parameters (both axes of nearly every layer shrink) 1") in text


def test_a_model_over_the_time_limit_is_a_row_saying_so(tmp_path):
    out = tmp_path / "rows.json"
    text = run_script([sys.executable, "scripts/bench/coverage.py", "--models", "resnet18", "--timeout", "1",
                       "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["error"] == "timed out after 1 s" and not row.get("converts") and blocked(row)
    assert "tried 1; convert exactly 0" in text and "timed out: resnet18" in text


def test_pin_reasons_count_by_cause():
    assert cause("grouped layer stages.0.blocks.0.f.b (Conv2d, groups=3)") == "grouped convolution"
    assert cause("used by op Transpose (Default/patch_embed-PatchEmbed/Transpose-op0)") == \
        "op Transpose (not followed)"
    assert cause("op Add joins channels of different layouts (Default/x/Add-op10)") == \
        "op Add joins channels of different layouts"
    row = {"model": "m", "groups": [1, 9], "touched": 0.3, "kept": 0.8, "resized": True,
           "pins": [["used by op Split (a)", 2], ["grouped layer a.b (Conv2d, groups=3)", 2],
                    ["grouped layer c.d (Conv2d, groups=3)", 1]]}
    assert blocked(row) and main_cause(row) == "grouped convolution"  # 3 groups against 2
    assert blocked(dict(row, touched=0.95, kept=0.5)) and not blocked(dict(row, touched=0.95, kept=0.28))
