"""Channel-permutation solver (inn_ms/convert/tsp.py): distances against a
brute-force reference, paths against brute-force optima and brute-force
2-opt / Or-opt neighbourhoods, recovery of a hidden smooth order, errors."""
import itertools
import logging

import numpy as np
import pytest

from inn_ms.convert import tsp
from inn_ms.convert.tsp import distance_matrix, path_length, solve_path, total_variation


def ref_distance(tensors):
    """Pair-by-pair reference: sum_t mean|t_i - t_j| / mean|t|, zero tensors skipped."""
    n = tensors[0].shape[0]
    d = np.zeros((n, n))
    for t in tensors:
        t = np.asarray(t, dtype=np.float64).reshape(n, -1)
        s = np.abs(t).mean()
        if s == 0:
            continue
        for i in range(n):
            for j in range(n):
                d[i, j] += np.abs(t[i] - t[j]).mean() / s
    return d


_PERMS = {}


def brute_force_optimum(dist):
    n = dist.shape[0]
    if n not in _PERMS:
        _PERMS[n] = np.array([p for p in itertools.permutations(range(n)) if p[0] < p[-1]], dtype=np.int64)
    perms = _PERMS[n]
    return float(dist[perms[:, :-1], perms[:, 1:]].sum(axis=1).min())


def random_dist(rng, n, dim=4):
    return distance_matrix([rng.normal(size=(n, dim))])


def reversed_segment(order, i, j):
    q = order.copy()
    q[i:j + 1] = q[i:j + 1][::-1]
    return q


# ---------------------------------------------------------------- distances

def test_distance_matrix_matches_brute_force(rng):
    n = 7
    tensors = [rng.normal(size=(n, 3, 2, 2)) * 50.0,       # a big conv weight
               rng.normal(size=(n,)) * 0.01,               # a small BN vector
               rng.integers(-3, 4, size=(n, 5)),           # integers are fine
               np.zeros((n, 4))]                           # skipped
    d = distance_matrix(tensors)
    assert d.dtype == np.float64 and d.shape == (n, n)
    np.testing.assert_allclose(d, ref_distance(tensors), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)


def test_distance_matrix_normalisation(rng):
    a, b = rng.normal(size=(6, 10)), rng.normal(size=(6, 3))
    d = distance_matrix([a, b])
    # each tensor is divided by its own mean |t|: rescaling one changes nothing
    np.testing.assert_allclose(distance_matrix([1e4 * a, 1e-3 * b]), d, rtol=1e-10)
    # so both contribute on the same footing
    np.testing.assert_allclose(d, distance_matrix([a]) + distance_matrix([b]), rtol=1e-12)
    np.testing.assert_allclose(distance_matrix([a, np.zeros((6, 2, 2))]), distance_matrix([a]), rtol=0)


def test_distance_matrix_chunks_and_layouts(rng, monkeypatch):
    w = rng.normal(size=(9, 8, 3, 3)).astype(np.float32)
    consumer = rng.normal(size=(5, 9, 3, 3)).astype(np.float32)
    tensors = [w, np.moveaxis(consumer, 1, 0)]         # a non-contiguous input slice
    ref = ref_distance(tensors)
    np.testing.assert_allclose(distance_matrix(tensors), ref, rtol=1e-6)
    monkeypatch.setattr(tsp, "_CHUNK_BYTES", 8)          # force many column chunks
    np.testing.assert_allclose(distance_matrix(tensors), ref, rtol=1e-6)
    assert distance_matrix([rng.normal(size=(1, 4))]).shape == (1, 1)


def test_distance_matrix_threads_agree(rng, monkeypatch):
    tensors = [rng.normal(size=(100, 2200)), rng.normal(size=(100, 7))]   # big enough for threads
    monkeypatch.setattr(tsp, "_CHUNK_BYTES", 100 * 8 * 300)              # 300-column chunks
    one = distance_matrix(tensors, workers=1)
    np.testing.assert_allclose(one, ref_distance(tensors), rtol=1e-12)
    np.testing.assert_allclose(distance_matrix(tensors, workers=3), one, rtol=1e-12)


def test_total_variation_and_path_length_agree(rng):
    tensors = [rng.normal(size=(12, 2, 3)), 3 * rng.normal(size=(12,))]
    d = distance_matrix(tensors)
    for _ in range(5):
        order = rng.permutation(12)
        assert total_variation(tensors, order) == pytest.approx(path_length(d, order), rel=1e-12)
    assert total_variation(tensors) == pytest.approx(path_length(d, np.arange(12)), rel=1e-12)


# ---------------------------------------------------------------- solver

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 17, 150])
def test_solve_path_returns_permutation(rng, n):
    d = random_dist(rng, n)
    order = solve_path(d)
    assert order.dtype == np.int64 and order.shape == (n,)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    assert path_length(d, order) <= path_length(d, np.arange(n)) + 1e-12


def test_solve_path_near_brute_force_optimum(rng):
    gaps = []
    for n in [3, 4, 5, 6, 7, 8, 9]:
        for _ in range(12 if n < 9 else 3):
            d = random_dist(rng, n, dim=int(rng.integers(1, 6)))
            length = path_length(d, solve_path(d))
            opt = brute_force_optimum(d)
            assert length >= opt - 1e-12
            assert length <= path_length(d, np.arange(n)) + 1e-12
            gaps.append(length / opt - 1)
    gaps = np.array(gaps)
    assert gaps.max() <= 0.03, gaps.max()
    assert gaps.mean() <= 0.005, gaps.mean()


def test_solve_path_is_two_opt_and_or_opt_optimal(rng):
    """No single segment reversal, and no move of a 1-3 channel segment (kept
    or reversed) to another place, shortens the returned path."""
    for n in [6, 11, 23, 40]:
        for _ in range(3):
            d = random_dist(rng, n, dim=3)
            order = solve_path(d, n_restarts=1)
            length = path_length(d, order)
            tol = 1e-9 * length
            for i in range(n):
                for j in range(i + 1, n):
                    assert path_length(d, reversed_segment(order, i, j)) >= length - tol, (n, i, j)
            for s in range(n):
                for L in (1, 2, 3):
                    if s + L > n:
                        continue
                    seg, rest = order[s:s + L], np.concatenate([order[:s], order[s + L:]])
                    for k in range(len(rest) + 1):
                        for piece in (seg, seg[::-1]):
                            moved = np.concatenate([rest[:k], piece, rest[k:]])
                            assert path_length(d, moved) >= length - tol, (n, s, L, k)


def test_two_opt_handles_open_path_ends():
    """Reversing a prefix or a suffix changes one edge only: both must be found."""
    x = np.array([1.0, 0.0, 2.0, 3.0, 4.0, 6.0, 5.0])    # ends out of place
    d = np.abs(x[:, None] - x[None, :])
    n = len(x)
    dfull = np.zeros((n + 1, n + 1))
    dfull[:n, :n] = d
    P = np.concatenate([[n], np.arange(n), [n]])
    gain = tsp._two_opt_pass(P, dfull, 1e-12, tsp._Tables(d))
    order = P[1:-1]
    assert gain == pytest.approx(path_length(d, np.arange(n)) - path_length(d, order))
    assert path_length(d, order) == pytest.approx(6.0)    # sorted: 0, 1, ..., 6
    np.testing.assert_array_equal(x[order], np.sort(x))


def test_each_move_pass_reports_its_exact_gain(rng):
    """Every kind of round (full / near-neighbour 2-opt and Or-opt, batched
    moves) shortens the path by exactly the gain it reports."""
    n = 60
    d = random_dist(rng, n, dim=3)
    tables = tsp._Tables(d)
    assert tables.nbr is not None
    dfull = np.zeros((n + 1, n + 1))
    dfull[:n, :n] = d
    passes = {"2-opt": lambda P: tsp._two_opt_pass(P, dfull, 1e-12, tables),
              "near 2-opt": lambda P: tsp._two_opt_near_pass(P, dfull, tables.nbr, 1e-12),
              "Or-opt": lambda P: tsp._or_opt_pass(P, dfull, 1e-12, tables),
              "near Or-opt": lambda P: tsp._or_opt_pass(P, dfull, 1e-12, tables, near=True)}
    for name, run in passes.items():
        improved = 0
        for _ in range(4):
            P = np.concatenate([[n], rng.permutation(n), [n]])
            for _ in range(3):
                before = path_length(d, P[1:-1])
                gain = run(P)
                assert P[0] == n and P[-1] == n
                np.testing.assert_array_equal(np.sort(P[1:-1]), np.arange(n))
                assert before - path_length(d, P[1:-1]) == pytest.approx(gain, rel=1e-9, abs=1e-9), name
                improved += gain > 0
        assert improved >= 8, name


def test_smooth_hidden_order_is_recovered(rng):
    n, cols = 200, 48
    t = np.linspace(0.0, 1.0, n)
    freq, phase = rng.uniform(0.2, 0.6, cols), rng.uniform(0, 2 * np.pi, cols)
    w = np.sin(2 * np.pi * np.outer(t, freq) + phase).reshape(n, 6, 8)
    bn = np.cos(3 * t) + 2.0
    shuffle = rng.permutation(n)
    tensors = [w[shuffle], bn[shuffle]]
    tv_true = total_variation(tensors, np.argsort(shuffle))
    tv_shuffled = total_variation(tensors)
    order = solve_path(distance_matrix(tensors))
    tv = total_variation(tensors, order)
    assert tv_shuffled > 20 * tv_true
    assert tv <= 1.01 * tv_true, (tv, tv_true)


def brute_force_path(dist):
    n = dist.shape[0]
    brute_force_optimum(dist)
    perms = _PERMS[n]
    return perms[dist[perms[:, :-1], perms[:, 1:]].sum(axis=1).argmin()]


def test_identity_kept_when_better(rng):
    """Relabel random instances so that identity is the optimal order: with no
    local search (max_passes=0) the greedy start is often worse, and the
    identity must then be returned."""
    greedy_worse = 0
    for _ in range(10):
        d = random_dist(rng, 8)
        best = brute_force_path(d)
        d = d[np.ix_(best, best)]                          # identity is now optimal
        opt = path_length(d, np.arange(8))
        _, lengths = tsp._nearest_neighbour(d, tsp._start_nodes(d, 1, 0))
        greedy_worse += lengths[0] > opt + 1e-12
        for kw in ({"max_passes": 0, "n_starts": 1, "seed": 0}, {}):
            assert path_length(d, solve_path(d, **kw)) == pytest.approx(opt, rel=1e-12)
    assert greedy_worse > 0
    x = np.sort(rng.normal(size=30))                       # sorted points on a line
    d = np.abs(x[:, None] - x[None, :])
    assert path_length(d, solve_path(d)) == pytest.approx(x[-1] - x[0], rel=1e-12)


def test_ties_and_degenerate_distances(rng):
    assert np.array_equal(solve_path(np.zeros((5, 5))), np.arange(5))
    same = distance_matrix([np.ones((6, 3))])                 # identical channels
    np.testing.assert_array_equal(solve_path(same), np.arange(6))
    x = rng.permutation(12).astype(float)                      # equal spacings: many ties
    d = np.abs(x[:, None] - x[None, :])
    assert path_length(d, solve_path(d)) == pytest.approx(11.0)
    d2 = np.array([[0.0, 2.0], [2.0, 0.0]])
    np.testing.assert_array_equal(solve_path(d2), [0, 1])


def test_seed_and_determinism(rng):
    d = random_dist(rng, 60)
    np.testing.assert_array_equal(solve_path(d), solve_path(d))
    np.testing.assert_array_equal(solve_path(d, seed=3), solve_path(d, seed=3))


def test_max_passes_warns(rng, caplog):
    d = random_dist(rng, 80)
    with caplog.at_level(logging.WARNING, logger="inn_ms.convert.tsp"):
        order = solve_path(d, max_passes=1)
    assert "max_passes" in caplog.text
    np.testing.assert_array_equal(np.sort(order), np.arange(80))


# ---------------------------------------------------------------- errors

def test_bad_tensors_raise(rng):
    with pytest.raises(ValueError, match="same count"):
        distance_matrix([rng.normal(size=(4, 3)), rng.normal(size=(5, 3))])
    with pytest.raises(ValueError, match="same count"):
        total_variation([rng.normal(size=(4, 3)), rng.normal(size=(3,))])
    bad = rng.normal(size=(4, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"tensors\[1\].*non-finite"):
        distance_matrix([rng.normal(size=(4, 2)), bad])
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        total_variation([bad])
    with pytest.raises(ValueError, match="at least one"):
        distance_matrix([])
    with pytest.raises(ValueError, match="0 channels"):
        distance_matrix([np.zeros((0, 3))])
    with pytest.raises(ValueError, match="scalar"):
        distance_matrix([np.float64(1.0)])


def test_bad_dist_and_order_raise(rng):
    d = random_dist(rng, 5)
    with pytest.raises(ValueError, match="square"):
        solve_path(d[:4])
    with pytest.raises(ValueError, match="non-finite"):
        solve_path(np.where(np.eye(5, dtype=bool), np.nan, d))
    asym = d.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        solve_path(asym)
    with pytest.raises(ValueError, match="negative"):
        solve_path(-d)
    with pytest.raises(ValueError, match="permutation"):
        path_length(d, [0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="permutation"):
        total_variation([rng.normal(size=(5, 2))], [0, 1, 2])
