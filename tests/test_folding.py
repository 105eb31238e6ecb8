"""The channel-folding baseline (inn_ms.baselines.folding_merges,
IntegralModel.merge_channels): k-means that uses every cluster, merging
that is exact for duplicated channels, and what merge_channels refuses."""
import numpy as np
import pytest
from mindspore import Tensor, nn

from inn_ms.baselines import folding_merges, kmeans, l1_indices
from inn_ms.convert import convert

from helpers import run


class Two(nn.Cell):
    def __init__(self, hidden):
        super().__init__()
        self.a = nn.Conv2d(2, hidden, 3, pad_mode="pad", padding=1, has_bias=True)
        self.b = nn.Conv2d(hidden, 3, 3, pad_mode="pad", padding=1, has_bias=True)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.b(self.relu(self.a(x)))


def test_kmeans_uses_every_cluster_and_finds_obvious_ones(rng):
    centres = rng.normal(size=(4, 6)) * 10
    points = np.repeat(centres, 5, axis=0) + rng.normal(size=(20, 6)) * 0.01
    labels = kmeans(points, 4, seed=1)
    assert sorted(np.bincount(labels)) == [5, 5, 5, 5]
    for c in range(4):
        assert len(set(labels[c * 5:(c + 1) * 5])) == 1
    np.testing.assert_array_equal(kmeans(points, 4, seed=1), labels)
    same = np.zeros((6, 3))  # all points equal: still six clusters of one
    assert sorted(kmeans(same, 6)) == list(range(6))
    with pytest.raises(ValueError, match="1 <= k <= 6"):
        kmeans(same, 7)


def test_folding_duplicated_channels_is_exact(rng):
    small = Two(4)
    wide = Two(8)
    wa, ba = small.a.weight.asnumpy(), small.a.bias.asnumpy()
    wb = small.b.weight.asnumpy()
    wide.a.weight.set_data(Tensor(np.concatenate([wa, wa])))
    wide.a.bias.set_data(Tensor(np.concatenate([ba, ba])))
    wide.b.weight.set_data(Tensor(np.concatenate([wb * 0.25, wb * 0.75], axis=1)))  # splits summing to wb
    wide.b.bias.set_data(small.b.bias.data.copy())
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    model = convert(wide, (1, 2, 6, 6))
    merged = model.merge_channels(folding_merges(model, {"a": 4}))
    ref = run(small, x)
    assert np.abs(run(merged, x) - ref).max() <= 1e-5 * np.abs(ref).max()
    assert merged.a.weight.shape == (4, 2, 3, 3) and merged.b.weight.shape == (3, 4, 3, 3)


def test_merging_by_selection_matrices_is_selecting(rng):
    model = convert(Two(8), (1, 2, 6, 6))
    idx = l1_indices(model, {"a": 5})
    rows = np.eye(8)[idx["a"]]
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run(model.merge_channels({"a": (rows, rows)}), x),
                               run(model.select_channels(idx), x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="two n x 8 matrices"):
        model.merge_channels({"a": (rows, rows[:, :4])})
    with pytest.raises(ValueError, match="unknown group"):
        model.merge_channels({"z": (rows, rows)})


def test_l1_norms_sum_producers_only_not_batchnorm_scales(rng):
    """A BatchNorm normalises a group, it writes no channel of it: its γ is no
    producer weight (it used to be summed into the norms)."""
    from inn_ms.baselines import producer_l1_norms
    from inn_ms.layers import IntegralBatchNorm2d, IntegralConv2d, IntegralDense

    class WithBN(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 8, 3, pad_mode="pad", padding=1, has_bias=True)
            self.bn = nn.BatchNorm2d(8)
            self.b = nn.Conv2d(8, 3, 3, pad_mode="pad", padding=1, has_bias=True)

        def construct(self, x):
            return self.b(self.bn(self.a(x)))

    model = convert(WithBN(), (1, 2, 6, 6), fold_bn=False, permute=False)
    cells = [c for _, c in model.network.cells_and_names()]
    assert any(isinstance(c, IntegralBatchNorm2d) for c in cells)
    by_id = {id(p): g for g, p in model.groups.items()}
    expected = {g: np.zeros(n) for g, n in model.full_sizes.items()}
    for c in cells:
        if isinstance(c, (IntegralConv2d, IntegralDense)) and id(c.partitions.get("out")) in by_id:
            w = np.abs(c.numpy_weight())
            expected[by_id[id(c.partitions["out"])]] += w.reshape(w.shape[0], -1).sum(axis=1)
    for c in cells:  # large, varied BatchNorm scales must not move the norms
        if isinstance(c, IntegralBatchNorm2d):
            c.gamma.set_data(Tensor(rng.uniform(100, 1000, c.gamma.shape).astype(np.float32)))
    norms = producer_l1_norms(model)
    for g in model.groups:
        np.testing.assert_allclose(norms[g], expected[g], rtol=1e-6)
