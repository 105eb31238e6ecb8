"""Per-group widths for a budget: search over the sizes an integral network allows.

An integral network runs at any combination of group sizes without
training, so the widths to deploy can be chosen per group: those that keep
the most accuracy (or PSNR) on a few calibration samples while the pruned
network's cost stays within a budget — MACs or parameters (counted exactly)
or latency (predicted by a table measured on the device,
:mod:`inn_ms.latency`).

Widths are scored on one compiled copy of the integral network that
takes the sizes as a run-time input (:class:`~inn_ms.elastic.ElasticEval`:
the same function as the discretized network at those sizes), so a search
compiles once instead of once per width (``mode="graph"``: a discretized
network per width, as before; where elastic networks are refused, it is
what ``"auto"`` falls back to).

Every group takes one of its candidate sizes (its allowed range and
``multiple_of``: :func:`inn_ms.latency.candidate_sizes`, or the sizes a
latency table measured). Two searches:

* :func:`greedy` — each group's sensitivity (the score with it alone
  shrunk to each candidate size) is measured once; from full width,
  repeatedly shrink the group whose next smaller size loses the least of it
  per unit of cost saved, until within the budget; then grow back, one step
  at a time and scored for real, any group that still fits and does not
  lose score; then trade width between groups (one a step narrower, another
  as much wider as fits) while a trade raises the score.
* :func:`evolution` — a seeded evolutionary search (reproducible): a
  population started from random feasible sizes and the widest uniform one,
  crossover and mutation, every child shrunk at random until it fits.

Both return only sizes within the budget and the allowed sizes; a budget
that even the smallest allowed sizes exceed is refused. A latency budget is
answered from the table's predictions, which a table measured layer by
layer can get wrong for some widths by 10-30 %; given a scratch folder,
:func:`search` then times the result as a whole MindIR and, if it runs
over, searches again under a budget tightened by the excess
(:func:`_meet_measured`), so the widths returned are within the budget
when measured, or the request is refused. Scores use the model's
resampling rules (or ``resampling``) and, if asked, its repair (``repair=``:
each width refitted as :func:`inn_ms.prune.prune` would, then scored).
"""
import logging
import time
from collections import OrderedDict

import numpy as np
import mindspore as ms
from tqdm.auto import tqdm

from inn_ms.latency import candidate_sizes, check_candidates, check_for, measure_networks, predict
from inn_ms.metrics import predict as run_batches, psnr
from inn_ms.model import count_parameters
from inn_ms.prune import check_shape, macs_of, model_positions
from inn_ms.repair import calibration_images, check_repair, output_maps, repair as refit
from inn_ms.resampling import check_rule
from inn_ms.cells import renew_graph_identity
from inn_ms.elastic import ElasticEval, check_elastic_partition, elastic_sizes
from inn_ms.tasks import execution_mode, save_figure

logger = logging.getLogger(__name__)

KINDS = ("macs", "params", "latency")


def parse_budget(text):
    """``"macs=3e6"`` → ``("macs", 3000000.0)``; kinds: macs, params, latency (seconds, or with a ``ms``/``us`` suffix)."""
    kind, sep, value = str(text).partition("=")
    kind = kind.strip()
    if not sep or kind not in KINDS:
        raise ValueError(f"budget must be macs=X, params=X or latency=X, got {text!r}")
    value = value.strip()
    scale = 1.0
    if kind == "latency":
        for suffix, s in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
            if value.endswith(suffix):
                value, scale = value[:-len(suffix)], s
                break
    try:
        x = float(value) * scale
    except ValueError:
        raise ValueError(f"budget {text!r}: {value!r} is not a number") from None
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"budget {text!r} must be a positive number")
    return kind, x


def _outputs(net, x, batch_size):
    """Outputs of ``net`` on ``x`` in batches of one shape (the last padded),
    so that graph mode compiles each width once."""
    n = len(x)
    batch = min(batch_size, n)
    pad = -n % batch
    if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    return run_batches(net, x, batch)[:n]


def accuracy_score(x, y, batch_size=500):
    """A score function: top-1 accuracy on the numpy samples ``x`` with labels ``y``."""
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"calibration data: {len(x)} samples and {len(y)} labels")

    def score(net):
        return float(np.mean(_outputs(net, x, batch_size).argmax(1) == y))
    score.metric = "top1"
    return score


def psnr_score(x, target, border=0, batch_size=16):
    """A score function: mean PSNR (dB) of the network's outputs for ``x``
    against ``target`` (same shape as the outputs), per image and channel."""
    x, target = np.asarray(x, np.float32), np.asarray(target, np.float32)
    if len(x) == 0 or len(x) != len(target):
        raise ValueError(f"calibration data: {len(x)} inputs and {len(target)} targets")

    def score(net):
        out = _outputs(net, x, batch_size)
        if out.shape != target.shape:
            raise ValueError(f"network outputs {out.shape} but the targets are {target.shape}")
        return float(np.mean([psnr(o, t, border) for oi, ti in zip(out, target) for o, t in zip(oi, ti)]))
    score.metric = "psnr"
    return score


def score_network(net, score, mode="graph"):
    """``score(net)`` for a plain network built for it (changed here): in
    graph mode with unfold + matmul convolutions, or in PyNative mode (for
    tiny networks, where compiling costs more than it saves). On mnist_cnn
    with 500 digits a new width scores in 1.6-3 s in graph mode, compile
    included, against 6-9 s in PyNative (measured here, machine shared)."""
    if mode not in ("graph", "pynative"):
        raise ValueError(f"mode must be 'graph' or 'pynative', got {mode!r}")
    for _, c in net.cells_and_names():
        if hasattr(c, "conv_backend"):
            c.conv_backend = "matmul"
    renew_graph_identity(net)  # a copied Cell shares its original's compile identity
    with execution_mode(ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE):
        return score(net)


MODES = ("auto", "elastic", "graph", "pynative")


class _AtSizes:
    """An :class:`~inn_ms.elastic.ElasticEval` held at fixed sizes, called
    like a plain network by the score functions."""

    def __init__(self, cell, sizes):
        self.cell, self.sizes = cell, sizes

    def set_train(self, mode=True):
        self.cell.set_train(mode)
        return self

    def __call__(self, x):
        return self.cell(x, self.sizes)


def scoring_mode(model, mode):
    """The way widths are scored: ``"elastic"`` (one compiled graph for
    every width, :class:`~inn_ms.elastic.ElasticEval`), ``"graph"`` (a
    discretized network compiled per width) or ``"pynative"``. ``"auto"``:
    elastic when every group allows it (not trainable partitions or groups
    in blocks), else graph."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode in ("auto", "elastic"):
        try:
            for part in model.groups.values():
                check_elastic_partition(part)
        except ValueError as e:
            if mode == "elastic":
                raise ValueError(f"elastic scoring: {e}") from None
            logger.info("search: scoring a discretized network per width (%s)", e)
            return "graph"
        return "elastic"
    return mode


class Problem:
    """The model, its candidate sizes, a cost and a score, with every
    evaluation cached by sizes. ``budget``: ``(kind, value)``; ``mode``:
    how widths are scored (:func:`scoring_mode`)."""

    def __init__(self, model, budget, score, input_shape=None, table=None, multiple_of=1, count=8,
                 candidates=None, resampling=None, mode="auto", repair="none", calib=None, calib_count=128,
                 seed=0):
        kind, value = budget
        if kind not in KINDS:
            raise ValueError(f"budget kind must be one of {KINDS}, got {kind!r}")
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"budget must be a positive number, got {value!r}")
        if kind == "macs" and input_shape is None:
            raise ValueError("a MAC budget needs input_shape")
        if kind == "latency" and table is None:
            raise ValueError("a latency budget needs a latency table (inn_ms.latency.measure_table)")
        if resampling is not None:
            check_rule(resampling, "search")
        self.model, self.kind, self.budget, self.score_fn = model, kind, float(value), score
        self.input_shape = None if input_shape is None else check_shape(input_shape)
        self.table = None if table is None else check_for(model, table)
        if kind == "latency":
            if candidates is not None:
                raise ValueError("with a latency budget the candidate sizes are the table's")
            cands = OrderedDict((g, list(s)) for g, s in table["groups"].items())
        elif candidates is not None:
            cands = check_candidates(model, candidates)
        else:
            cands = candidate_sizes(model, multiple_of, count)
        self.groups = list(model.groups)
        self.candidates = [list(cands[g]) for g in self.groups]
        check_repair(repair)
        if repair != "none":  # a repair writes each width's own weights: a discretized network per width
            if mode == "elastic":
                raise ValueError("elastic scoring cannot repair: use mode 'graph' or 'pynative' with a repair")
            mode = "graph" if mode == "auto" else mode
        self.repair = repair
        self.images = calibration_images(model, repair, calib, calib_count, self.input_shape, seed)
        self.resampling, self.mode = resampling, scoring_mode(model, mode)
        self._costs, self._scores, self._plain, self._elastic = {}, {}, {}, None
        self.evaluations = 0

    def sizes(self, idx):
        return OrderedDict((g, int(c[i])) for g, c, i in zip(self.groups, self.candidates, idx))

    def _network(self, idx):
        idx = tuple(idx)
        if idx not in self._plain:
            with self.model.at_sizes(self.sizes(idx), resampling=self.resampling):
                self._plain = {idx: self.model.discretize()}  # keep one: cost and score need the same
        return self._plain[idx]

    def measure(self, idx, kind):
        """The cost ``kind`` of the plain network at ``idx``."""
        if kind == "latency":
            return predict(self.table, self.sizes(idx))
        net = self._network(idx)
        if kind == "params":
            return count_parameters(net)
        return macs_of(net, self.input_shape, model_positions(self.model, net, self.input_shape))

    def cost(self, idx):
        idx = tuple(idx)
        if idx not in self._costs:
            self._costs[idx] = self.measure(idx, self.kind)
        return self._costs[idx]

    def fits(self, idx):
        return self.cost(idx) <= self.budget

    def score(self, idx):
        idx = tuple(idx)
        if idx not in self._scores:
            if self.mode == "elastic":
                if self._elastic is None:
                    with self.model.at_sizes(self.model.full_sizes, resampling=self.resampling):
                        self._elastic = ElasticEval(self.model)
                net = _AtSizes(self._elastic, elastic_sizes(self.model, sizes=self.sizes(idx)))
                with execution_mode(ms.GRAPH_MODE):
                    self._scores[idx] = self.score_fn(net)
            else:
                net = self._network(idx)
                if self.repair != "none":  # in place: shapes (so costs) unchanged
                    with self.model.at_sizes(self.sizes(idx), resampling=self.resampling):
                        if dict(self.model.sizes) != dict(self.model.full_sizes):
                            refit(self.model, net, self.images, maps=output_maps(self.model))
                self._scores[idx] = score_network(net, self.score_fn, self.mode)
            self.evaluations += 1
        return self._scores[idx]

    def smallest(self):
        return tuple(0 for _ in self.groups)

    def largest(self):
        return tuple(len(c) - 1 for c in self.candidates)

    def check_feasible(self):
        """Refuse a budget the smallest allowed sizes exceed."""
        low = self.smallest()
        if not self.fits(low):
            raise ValueError(f"no allowed sizes meet the budget {self.kind} <= {self.budget:.6g}: the smallest "
                             f"({dict(self.sizes(low))}) cost {self.cost(low):.6g}")

    def uniform(self):
        """The widest sizes with every group at the same candidate position
        (its smallest, ..., its largest) within the budget: uniform keep in
        this search space."""
        top = max(len(c) for c in self.candidates)
        for k in range(top - 1, -1, -1):
            idx = tuple(int(round(k * (len(c) - 1) / max(top - 1, 1))) for c in self.candidates)
            if self.fits(idx):
                return idx
        return None

    def result(self, idx, method, seconds):
        sizes = self.sizes(idx)
        out = {"method": method, "sizes": dict(sizes), "budget": {self.kind: self.budget},
               "cost": self.cost(idx), "score": self.score(idx), "metric": getattr(self.score_fn, "metric", "score"),
               "params": self.measure(idx, "params"), "evaluations": self.evaluations, "seconds": seconds}
        if self.input_shape is not None:
            out["macs"] = self.measure(idx, "macs")
        if self.table is not None:  # sizes outside the table's (a MACs search's finer ones): not predicted
            known = all(n in self.table["groups"][g] for g, n in sizes.items())
            out["predicted_latency"] = predict(self.table, sizes) if known else None
        if not (self.fits(idx) and all(c[i] == sizes[g] for g, c, i in zip(self.groups, self.candidates, idx))):
            raise AssertionError("search returned sizes outside the budget")  # never: both searches repair
        return out


def greedy(problem, progress=False, seeds=()):
    """Sensitivity-ordered greedy (see the module doc); returns the index
    tuple. A group's sensitivity at a size is the score with that group
    alone at that size (the others at full width), measured once; the walk
    down uses those and the whole network's cost, so it costs at most one
    evaluation per group and candidate size, plus the grow-back's. Each of
    ``seeds`` (index tuples, e.g. uniform keep) that fits is grown back too,
    and the best-scoring end is improved by trades (:func:`_exchange`) and
    returned: never worse than a seed on the calibration score."""
    problem.check_feasible()
    full = problem.largest()
    idx = list(full)
    bar = tqdm(desc=f"greedy ({problem.kind})", disable=not progress, leave=False)

    def alone(k, i):
        j = list(full)
        j[k] = i
        return problem.score(j)

    while not problem.fits(idx):
        here_cost = problem.cost(idx)
        options = []
        for k in range(len(idx)):
            if idx[k] == 0:
                continue
            j = list(idx)
            j[k] -= 1
            saved = here_cost - problem.cost(j)
            lost = alone(k, idx[k]) - alone(k, idx[k] - 1)
            # least score lost per unit of cost saved; a step that saves nothing comes last
            options.append((0 if saved > 0 else 1, lost / saved if saved > 0 else lost, k, j))
        if not options:
            break
        idx = min(options)[3]
        bar.update(1)
    if not problem.fits(idx):  # only if cost is not monotone (a noisy table): fall back to the smallest
        idx = list(problem.smallest())
    starts = [tuple(idx)] + [tuple(s) for s in seeds if problem.fits(s)]
    ends = [_grow(problem, start, bar) for start in dict.fromkeys(starts)]
    best = max(ends, key=lambda i: (problem.score(i), -problem.cost(i)))
    best = _exchange(problem, best, bar)
    bar.close()
    return best


def _grow(problem, idx, bar):
    """Grow groups back one step at a time, scored for real, while the
    network fits and does not lose score."""
    idx = list(idx)
    while True:
        here = problem.score(idx)
        best = None
        for k in range(len(idx)):
            if idx[k] + 1 >= len(problem.candidates[k]):
                continue
            j = list(idx)
            j[k] += 1
            if problem.fits(j) and problem.score(j) >= here and (best is None or problem.score(j) > best[0]):
                best = (problem.score(j), j)
        if best is None:
            return tuple(idx)
        idx = best[1]
        bar.update(1)


def _exchange(problem, idx, bar):
    """Trade width between groups, scored for real: one group one candidate
    smaller, another as much larger as then fits; take the best trade that
    raises the score, until none does. Growing alone cannot leave a point
    that fills the budget (uniform keep at its own cost, say); a trade can."""
    idx = tuple(idx)
    n = len(idx)
    while True:
        here, best = problem.score(idx), None
        for i in range(n):
            if idx[i] == 0:
                continue
            for j in range(n):
                if j == i or idx[j] + 1 >= len(problem.candidates[j]):
                    continue
                k = list(idx)
                k[i] -= 1
                while k[j] + 1 < len(problem.candidates[j]) and problem.fits(k[:j] + [k[j] + 1] + k[j + 1:]):
                    k[j] += 1
                if k[j] == idx[j] or not problem.fits(k):
                    continue
                score = problem.score(k)
                if score > here and (best is None or score > best[0]):
                    best = (score, tuple(k))
        if best is None:
            return idx
        idx = best[1]
        bar.update(1)


def evolution(problem, seed=0, population=16, generations=8, mutation=0.3, progress=False, seeds=()):
    """Seeded evolutionary search (see the module doc); ``seeds`` (index
    tuples) that fit join the first population. Returns the index tuple."""
    problem.check_feasible()
    rng = np.random.default_rng(seed)
    lengths = [len(c) for c in problem.candidates]

    def repair(idx):
        idx = list(idx)
        while not problem.fits(idx):
            movable = [k for k in range(len(idx)) if idx[k] > 0]
            if not movable:
                return tuple(problem.smallest())
            idx[movable[rng.integers(len(movable))]] -= 1
        return tuple(idx)

    pop = [tuple(s) for s in seeds if problem.fits(s)]
    uniform = problem.uniform()
    if uniform is not None:
        pop.append(uniform)
    while len(pop) < population:
        pop.append(repair(tuple(int(rng.integers(n)) for n in lengths)))
    pop = list(dict.fromkeys(pop))
    elite = max(2, population // 4)
    for _ in tqdm(range(generations), desc=f"evolution ({problem.kind})", disable=not progress, leave=False):
        ranked = sorted(pop, key=lambda i: (-problem.score(i), problem.cost(i), i))
        parents = ranked[:elite]
        children = []
        for _ in range(population * 4):  # enough tries to fill the population with new sizes
            if len(children) + len(parents) >= population:
                break
            a, b = parents[rng.integers(len(parents))], parents[rng.integers(len(parents))]
            child = [a[k] if rng.random() < 0.5 else b[k] for k in range(len(a))]
            for k in range(len(child)):
                if rng.random() < mutation:
                    child[k] = int(np.clip(child[k] + rng.choice([-2, -1, 1, 2]), 0, lengths[k] - 1))
            child = repair(child)
            if child not in parents and child not in children:
                children.append(child)
        pop = parents + children
    return min(pop, key=lambda i: (-problem.score(i), problem.cost(i), i))


def search(model, budget, score, method="greedy", input_shape=None, table=None, multiple_of=1, count=8,
           candidates=None, resampling=None, seed=0, population=16, generations=8, mode="auto", seeds=(),
           progress=False, folder=None, reference=None, tolerance=0.05, rounds=4, repair="none", calib=None,
           calib_count=128):
    """Per-group sizes of ``model`` maximising ``score`` (a function of a
    plain network: :func:`accuracy_score`, :func:`psnr_score`) with cost
    within ``budget`` (``(kind, value)`` or ``"kind=value"``; MACs need
    ``input_shape``, latency a ``table``). ``method``: ``"greedy"`` or
    ``"evolution"`` (``seed``, ``population``, ``generations``); ``mode``:
    how widths are scored (:func:`scoring_mode`; by default one compiled
    elastic graph for every width); ``seeds``: sizes
    (``{group: size}``, among the candidates) the search starts from beside
    its own, the widest uniform candidate sizes within budget always among
    them, so the result scores at least as well as they do on the
    calibration samples. ``repair`` (``"calib"`` on ``calib``, unlabelled
    images, the first ``calib_count``; or ``"datafree"``): every width is
    scored after that repair (:mod:`inn_ms.repair`), as it will be pruned —
    a discretized network and a refit per width, so slower.

    With a latency budget and a scratch ``folder`` the result is *measured*
    (:func:`_meet_measured`): timed as the table was, against the budget or,
    given ``reference`` sizes, against the network at those sizes timed
    interleaved with it; over by more than ``tolerance``, the search runs
    again under a budget scaled down by the excess, at most ``rounds``
    times. A table that underpredicts the searched widths cannot make them
    slower than asked.

    Returns a dict: ``sizes``, ``cost``, ``score``, ``metric``, ``params``
    (and ``macs``, ``predicted_latency``, ``measured_latency`` when known),
    the uniform baseline of the same search space (``uniform``),
    evaluations and seconds. The model is left as it was."""
    if isinstance(budget, str):
        budget = parse_budget(budget)
    if method not in ("greedy", "evolution"):
        raise ValueError(f"method must be 'greedy' or 'evolution', got {method!r}")
    if not (np.isfinite(tolerance) and tolerance >= 0) or rounds < 1:
        raise ValueError(f"tolerance must be >= 0 and rounds >= 1, got {tolerance} and {rounds}")
    t0 = time.perf_counter()
    problem = Problem(model, budget, score, input_shape, table, multiple_of, count, candidates, resampling, mode,
                      repair, calib, calib_count, seed)
    starts = []
    for sizes in seeds:
        try:
            starts.append(tuple(c.index(int(sizes[g])) for g, c in zip(problem.groups, problem.candidates)))
        except (KeyError, ValueError):
            raise ValueError(f"seed sizes {dict(sizes)} are not among the candidate sizes") from None

    def run():
        uniform = problem.uniform()  # recomputed: a tightened budget can exclude the last one
        begin = starts + ([uniform] if uniform is not None else [])
        if method == "greedy":
            return greedy(problem, progress, begin)
        return evolution(problem, seed, population, generations, progress=progress, seeds=begin)

    if reference is not None:
        try:
            ref_idx = tuple(c.index(int(reference[g])) for g, c in zip(problem.groups, problem.candidates))
        except (KeyError, ValueError):
            raise ValueError(f"reference sizes {dict(reference)} are not among the candidate sizes") from None
        if not problem.fits(ref_idx):
            raise ValueError(f"reference sizes {dict(reference)} are over the budget")
    idx = run()
    measured, asked = None, problem.budget
    if problem.kind == "latency" and folder is not None:
        idx, measured = _meet_measured(problem, idx, run, folder, reference, tolerance, rounds)
    out = problem.result(idx, method, time.perf_counter() - t0)
    out["seed"] = seed if method == "evolution" else None
    if measured is not None:
        out.update(measured, budget={problem.kind: asked}, predicted_budget=problem.budget)
    uniform = problem.uniform()
    out["uniform"] = None if uniform is None else {"sizes": dict(problem.sizes(uniform)),
                                                  "cost": problem.cost(uniform), "score": problem.score(uniform)}
    logger.info("search (%s, %s <= %.6g): %s, %s %.4g in %d evaluations, %.1f s", method, problem.kind,
                problem.budget, out["sizes"], out["metric"], out["score"], out["evaluations"], out["seconds"])
    return out


def _meet_measured(problem, idx, run, folder, reference, tolerance, rounds):
    """Measure the searched network ``idx`` (and the ``reference`` sizes
    beside it, interleaved) and tighten the problem's budget until it is
    within ``tolerance`` of the target: ``problem.budget`` (seconds) or the
    reference's measured time. Each round scales the budget the table's
    predictions are held to by target / measured and searches again (scores
    and costs are cached, so a round costs only the new widths it scores).
    Sizes equal to the reference are accepted as they are; an excess is
    acted on only if a second timing confirms it (the lesser of the two
    counts: on a shared machine one timing can catch a busy moment; the
    same network timed twice at load 5 differed by 7 %). Returns the
    accepted index and its measurements; refuses (one line) when ``rounds``
    do not get there, unless a reference is given, whose sizes are then the
    result (within the target by definition; logged)."""
    target, history, why = problem.budget, [], f"after {rounds} round(s) of tightening the table's budget"

    def timed(sizes):
        """``(time, iqr, reference's (time, iqr) or None, limit)``."""
        if reference is not None and sizes == {g: int(reference[g]) for g in problem.groups}:
            (t, iqr), = measure_networks(problem.model, [sizes], problem.table, folder)
            ref = (t, iqr)
        elif reference is not None:
            (t, iqr), ref = measure_networks(problem.model, [sizes, reference], problem.table, folder)
        else:
            (t, iqr), ref = measure_networks(problem.model, [sizes], problem.table, folder)[0], None
        return t, iqr, ref, target if ref is None else ref[0]

    for r in range(rounds + 1):
        sizes = problem.sizes(idx)
        t, iqr, ref, limit = timed(sizes)
        if t > (1 + tolerance) * limit:  # confirmed on a second timing: a busy moment is not an excess
            again = timed(sizes)
            if again[0] / again[3] < t / limit:
                t, iqr, ref, limit = again
        history.append({"sizes": dict(sizes), "budget": problem.budget, "measured": t, "limit": limit})
        info = {"measured_latency": t, "measured_latency_iqr": iqr, "rounds": r, "tightening": history}
        if ref is not None:
            info["reference_latency"], info["reference_latency_iqr"] = ref
        if t <= (1 + tolerance) * limit:
            return idx, info
        if r == rounds:
            break
        logger.info("search: widths %s measured %.3g ms, over %.3g ms: budget %.4g -> %.4g", dict(sizes), 1e3 * t,
                    1e3 * limit, problem.budget, problem.budget * limit / t)
        problem.budget *= limit / t
        try:
            problem.check_feasible()
        except ValueError:
            why = "and the smallest allowed sizes are predicted over the budget tightened by that excess"
            break
        idx = run()
    if reference is None:
        raise ValueError(f"search: the searched widths run in {1e3 * t:.3f} ms measured, over the latency budget "
                         f"{1e3 * target:.3f} ms by more than {tolerance:.0%} {why} (the table underpredicts "
                         f"this network here, or the machine is busier than when it was measured: re-measure it)")
    logger.warning("search: no searched widths measured within %.0f%% of the reference (%s); the result is the "
                   "reference sizes", 100 * tolerance, why)
    problem.budget = target  # the reference fits it (checked by search)
    idx = tuple(c.index(int(reference[g])) for g, c in zip(problem.groups, problem.candidates))
    (t, iqr), = measure_networks(problem.model, [reference], problem.table, folder)
    info.update({"measured_latency": t, "measured_latency_iqr": iqr, "reference_latency": t,
                 "reference_latency_iqr": iqr})
    return idx, info


def front(model, kind, score, keeps, input_shape, table=None, folder=None, method="greedy", multiple_of=1,
          count=8, resampling=None, seed=0, population=16, generations=8, mode="auto", progress=False,
          tolerance=0.05, rounds=4, repair="none", calib=None, calib_count=128):
    """Uniform keep ratios beside searched widths at equal cost: for every
    keep ratio in ``keeps``, the uniform sizes' cost ``kind`` (``"macs"``,
    ``"params"``, or ``"latency"``, which needs a ``table`` and a scratch
    ``folder``) becomes the budget of a search whose candidate sizes include
    the uniform ones (with a latency budget they are the table's: measure it
    at the keeps' sizes).

    At equal latency the budget is the table's prediction for the uniform
    sizes, and the searched widths are then *measured* beside the uniform
    ones (interleaved) and tightened until within ``tolerance`` of them
    (:func:`search`): equal measured latency, not equal prediction. With a
    table, both sides' latencies in a row come from one interleaved timing.
    Returns rows ``{"keep", "budget", "uniform": {...}, "searched": {...}}``,
    each side with sizes, score (of the discretized network, repaired as
    the search was, in graph mode unless ``mode`` is ``"pynative"``),
    MACs, parameters and (with a table) measured latency."""
    if kind not in KINDS:
        raise ValueError(f"front: kind must be one of {KINDS}, got {kind!r}")
    if table is not None and folder is None:
        raise ValueError("front: measuring latency needs a scratch folder")
    if kind == "latency" and table is None:
        raise ValueError("front: a latency front needs a latency table")
    shape = check_shape(input_shape)
    uniforms = [model.sizes_for_keep(keep, multiple_of) for keep in keeps]
    for keep, sizes in zip(keeps, uniforms):
        for g, n in sizes.items():
            low, high = model.allowed_range(g)
            if not low <= n <= high:
                raise ValueError(f"front: keep {keep:g} gives group {g!r} {n} channels, outside its allowed "
                                 f"range [{low}, {high}]")
            if kind == "latency" and n not in table["groups"][g]:
                raise ValueError(f"front: keep {keep:g} gives group {g!r} {n} channels, a size the latency table "
                                 f"did not measure (it has {table['groups'][g]}): measure it at these keeps")

    def describe(sizes):
        with model.at_sizes(sizes):
            net = model.discretize()
        out = {"sizes": dict(sizes), "params": count_parameters(net),
               "macs": macs_of(net, shape, model_positions(model, net, shape))}
        with model.at_sizes(sizes, resampling=resampling):
            plain = model.discretize()
            if images is not None and dict(model.sizes) != dict(model.full_sizes):
                refit(model, plain, images, maps=output_maps(model))
            out["score"] = score_network(plain, score, "pynative" if mode == "pynative" else "graph")
        return out

    images = calibration_images(model, repair, calib, calib_count, shape, seed)
    candidates = None
    if kind != "latency":  # the uniform sizes are in the search space, so the search can pick them
        candidates = candidate_sizes(model, multiple_of, count)
        for sizes in uniforms:
            for g, n in sizes.items():
                candidates[g] = sorted(set(candidates[g]) | {n})
    rows = []
    for keep, sizes in tqdm(list(zip(keeps, uniforms)), desc="front", disable=not progress):
        uniform = describe(sizes)
        budget = predict(table, sizes) if kind == "latency" else uniform[kind]
        found = search(model, (kind, budget), score, method, shape, table, multiple_of, count, candidates,
                       resampling, seed, population, generations, mode, [sizes], folder=folder,
                       reference=sizes if kind == "latency" else None, tolerance=tolerance, rounds=rounds,
                       repair=repair, calib=calib, calib_count=calib_count)
        searched = describe(found["sizes"])
        searched.update({"predicted_latency": found.get("predicted_latency"), "seconds": found["seconds"],
                         "evaluations": found["evaluations"], "rounds": found.get("rounds")})
        if table is not None:  # one interleaved timing for both sides of the row
            (uniform["latency"], uniform["latency_iqr"]), (searched["latency"], searched["latency_iqr"]) = \
                measure_networks(model, [sizes, found["sizes"]], table, folder)
            uniform["predicted_latency"] = predict(table, sizes) if kind == "latency" else None
        rows.append({"keep": float(keep), "kind": kind, "budget": budget, "metric": found["metric"],
                     "uniform": uniform, "searched": searched})
    return rows


def plot_front(rows, path, title=""):
    """PNG of score against MACs (and against measured latency when the rows
    have it), uniform keep ratios beside searched widths; written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    axes = [("macs", "MACs per sample (M)", 1e-6)]
    if rows and "latency" in rows[0]["uniform"]:
        axes.append(("latency", "measured latency (ms)", 1e3))
    fig, axs = plt.subplots(1, len(axes), figsize=(5 * len(axes), 3.5), squeeze=False)
    metric = rows[0]["metric"] if rows else "score"
    scale = 100 if metric == "top1" else 1
    for ax, (key, label, unit) in zip(axs[0], axes):
        for side, style in (("uniform", "o--"), ("searched", "s-")):
            ax.plot([unit * r[side][key] for r in rows], [scale * r[side]["score"] for r in rows], style, label=side)
        for r in rows:
            ax.annotate(f"{r['keep']:g}", (unit * r["uniform"][key], scale * r["uniform"]["score"]),
                        textcoords="offset points", xytext=(3, -10), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)" if metric == "top1" else metric)
        ax.grid(alpha=0.3)
        ax.legend()
    axs[0][0].set_title(title or f"searched widths vs uniform keep (at equal {rows[0]['kind'] if rows else ''})")
    return save_figure(plt, fig, path)


def prune_command(artifact, sizes, out="pruned.mindir", resampling=None, input_shape=None, repair="none",
                  calib_count=128):
    """The ``inn-ms prune`` line that builds the MindIR of ``sizes`` (with a
    calibration repair, ``--calib-data`` must name the images as a .npy)."""
    line = f"inn-ms prune {artifact} --sizes " + ",".join(f"{g}={n}" for g, n in sizes.items()) + f" --out {out}"
    if resampling:
        line += f" --resample {resampling}"
    if repair != "none":
        line += f" --repair {repair} --calib {calib_count}" + (" --calib-data IMAGES.npy" if repair == "calib" else "")
    if input_shape is not None:
        line += " --input-shape " + ",".join(str(v) for v in input_shape)
    return line


__all__ = ["Problem", "accuracy_score", "evolution", "front", "greedy", "parse_budget", "plot_front", "prune_command",
           "psnr_score", "score_network", "search"]
