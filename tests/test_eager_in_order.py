"""Eager operators launched in order on CPU (``inn_ms.runner.eager_in_order``),
by the library's entry points. In fresh processes: the test session itself
switches it on."""
import sys

from helpers import run_script

PROBE = """
from mindspore._c_expression import RuntimeConf
def blocking():
    return RuntimeConf.get_instance().is_launch_blocking()
before = blocking()
{body}
print(before, blocking())
"""


def _run(body):
    return run_script([sys.executable, "-c", PROBE.format(body=body)]).split()[-2:]


def test_on_cpu_only():
    assert _run("from inn_ms.runner import eager_in_order\neager_in_order('Ascend')") == ["False", "False"]
    assert _run("from inn_ms.runner import eager_in_order\neager_in_order('CPU')") == ["False", "True"]


def test_the_cli_sets_it_for_its_work_commands():
    assert _run("from inn_ms.cli import main\nassert main(['models']) == 0") == ["False", "False"]
    assert _run("from inn_ms.cli import main\nassert main(['resize', 'mnist_cnn', '--keep', '1.0']) == 0") \
        == ["False", "True"]
