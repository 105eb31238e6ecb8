"""The inn-ms command line."""
import pytest

from inn_ms.cli import main


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.split()
    assert "mnist_cnn" in out and "resnet_small" in out


def test_resize_reports_fewer_parameters_at_smaller_keep(capsys):
    assert main(["resize", "mnist_cnn", "--keep", "1.0", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    params = [int(line.split()[1]) for line in lines]
    assert params[1] < params[0] / 3  # conv params scale with in x out channels


@pytest.mark.parametrize("argv, message", [(["resize", "nope"], "unknown model"),
                                           (["resize", "mnist_cnn", "--keep", "0"], "keep ratio")])
def test_errors_are_clear_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
