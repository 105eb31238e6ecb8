"""Width requests the library cannot honour exactly are refused, never
changed quietly: a group named twice in ``--sizes``, sizes that are not the
multiples asked for, and keep ratios or budgets whose rounding to a
multiple would leave a group (or the whole network) at full width."""
import pytest

from inn_ms.cli import main
from inn_ms.prune import prune
from model_zoo import create_model

from helpers import tiny_mnist_artifact


@pytest.fixture(scope="module")
def model():
    return create_model("mnist_cnn")  # groups c1 16, c2 32, c3 64, c4 64, fc 128


@pytest.mark.parametrize("kwargs, message", [
    (dict(keep=0.5, multiple_of=1000), "no multiple of 1000 fits below the full size of group(s) 'c1' (full size 16)"),
    (dict(keep=0.5, multiple_of=32), "group(s) 'c1' (full size 16):"),
    (dict(sizes={"c1": 10}, multiple_of=8), "size 10 of group 'c1' is not a multiple of 8"),
])
def test_rounding_that_cannot_be_honoured_is_refused(model, kwargs, message):
    with pytest.raises(ValueError) as e:
        prune(model, **kwargs)
    assert message in str(e.value)
    assert dict(model.sizes) == dict(model.full_sizes)


def test_rounding_that_can_be_honoured_is(model):
    _, report = prune(model, keep=0.5, multiple_of=8)
    assert report["sizes"] == {"c1": 8, "c2": 16, "c3": 32, "c4": 32, "fc": 64}
    _, report = prune(model, sizes={"c2": 24, "c1": 16}, multiple_of=8)  # 16: the full size, nothing removed
    assert report["sizes"]["c2"] == 24 and report["sizes"]["c1"] == 16
    _, report = prune(model, keep=1.0, multiple_of=1000)  # full width asked for: nothing to round
    assert report["sizes"] == dict(model.full_sizes)
    _, report = prune(model, params=20000, multiple_of=16)
    assert all(n % 16 == 0 for n in report["sizes"].values())


def test_a_group_named_twice_in_sizes_is_refused(tmp_path, capsys):
    folder = tiny_mnist_artifact(tmp_path)
    out = tmp_path / "p.mindir"
    assert main(["prune", str(folder / "tiny.inn"), "--sizes", "c1=2,c1=4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sizes names group 'c1' twice" in err[0]
    assert not out.exists()
