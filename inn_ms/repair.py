"""Repair: refitting a pruned network's layers on unlabelled images.

A network resampled to fewer channels (or pruned any other way) computes
each layer from inputs that are not the full network's, and the errors grow
layer after layer: the main job's converted CNN keeps 80.7 % at 75 % of its
channels and 20 % at half. Repair fixes that without labels and without
training. Going through the layers in the order the network runs them, it
refits each one by least squares so that, on calibration images, its output
matches the *full* network's output at the same layer, mapped to the kept
channels: output channel ``i`` of the pruned layer should be
``Σ_c A[i, c] · y_c``, the full channels ``y_c`` weighted by the row of the
resampling rule that made channel ``i`` (point sampling: the channel at
that node; antialiased: the local mean; a channel selection: the channel
itself). Because every layer is fitted on the inputs the already repaired
layers give it, errors do not compound. Convolutions (``groups=1``) and
dense layers fit their whole weight and bias; BatchNorms and depthwise
convolutions fit per channel (a scale and shift, or the channel's taps) —
for a BatchNorm that is the affine statistics correction of slimmable
networks, written as its least-squares optimum. The fit is regularised
towards the layer's current (resampled) weights, so a layer with few
samples per weight stays close to them.

The calibration images are the user's (``repair="calib"``, a few hundred
unlabelled images are enough: labels are never read) or images synthesized
from the network's own BatchNorm statistics (``repair="datafree"``,
:mod:`inn_ms.synthesis`). The result is an ordinary plain network: new
weights, the same layers, exported as any other.

It runs in graph mode as well as PyNative: the full network and the pruned
one each compile once, with probes around their layers. A probe on the full
network copies its layer's output to a buffer when its turn comes (a
run-time index); the pruned network's probe with the same index adds that
batch to its least-squares sums. One pass over the images per layer.
"""
import logging
from collections import OrderedDict

import numpy as np
from mindspore import Parameter, Tensor, mutable, nn, ops
from tqdm.auto import tqdm

from inn_ms.functional import explicit_padding, unfold
from inn_ms.graph.kinds import match_layer_kind
from inn_ms.layers.base import IntegralLayer
from inn_ms.cells import copy_tree, name_parameters_by_path, run_shapes
from inn_ms.partition import CompositePartition, size_step
from inn_ms.resampling import sampling_matrix
from inn_ms.sampler import block_diagonal
from inn_ms.synthesis import synthesize

logger = logging.getLogger(__name__)

REPAIRS = ("none", "calib", "datafree")


def check_repair(repair):
    if repair not in REPAIRS:
        raise ValueError(f"unknown repair {repair!r}; choose one of {list(REPAIRS)}")
    return repair


# -- which cells, and how their channels relate to the full network's --------

def _refit_of(cell):
    """How a plain cell is refitted: the ``refit`` of its layer kind
    (:data:`inn_ms.graph.kinds.REFITS`: ``"dense"``, ``"conv"``,
    ``"depthwise"``, ``"bn"``) or None (left as it is)."""
    kind = match_layer_kind(cell)
    return None if kind is None else kind.refit


def output_maps(model):
    """``{layer path: A}`` for the integral layers of ``model`` at its current
    sizes: ``A`` (``n × N``, rows summing to 1) relates the ``n`` output
    channels now to the ``N`` at full size, under each group's rule (a
    trainable partition: its learnt nodes). Discrete outputs are absent
    (the identity)."""
    maps = OrderedDict()
    for path, layer in model.network.cells_and_names():
        if isinstance(layer, IntegralLayer) and layer.out_axis is not None:
            maps[path] = partition_map(layer.out_axis.get_partition())
    return maps


def partition_map(p):
    """``A`` of one partition: its rule's matrix from the full-size
    channels to its nodes, rows normalised; block-diagonal over the parts
    of a concatenation."""
    if isinstance(p, CompositePartition):
        return block_diagonal([partition_map(part) for part in p.parts])
    a = sampling_matrix(np.asarray(p.nodes(), np.float64), p.full_size, p.resampling)
    return a / a.sum(axis=1, keepdims=True)


def group_maps(model, by_group):
    """``{layer path: A}`` for a plain network whose channels were chosen
    per group by ``by_group[group]``: index arrays (a selection,
    :meth:`~inn_ms.model.IntegralModel.select_channels`; ``A`` is those rows
    of the identity) or ``n × N`` matrices (a merge, ``P`` of
    :meth:`~inn_ms.model.IntegralModel.merge_channels`; rows normalised)."""
    by_id = {id(p): name for name, p in model.groups.items()}
    maps = OrderedDict()
    for path, layer in model.network.cells_and_names():
        if not isinstance(layer, IntegralLayer) or layer.out_axis is None:
            continue
        group = by_id.get(id(layer.out_axis.get_partition()))
        if group not in by_group:
            continue
        a = np.asarray(by_group[group])
        if a.ndim == 1:
            a = np.eye(model.full_sizes[group])[a]
        maps[path] = a / a.sum(axis=1, keepdims=True)
    return maps


# -- probes -----------------------------------------------------------------

class _Turn(nn.Cell):
    """Run-time state every probe of a pass shares: whose turn it is and
    which samples of the batch are real (the last batch is padded)."""

    def __init__(self, batch):
        super().__init__()
        self.active = Parameter(Tensor(np.array([-1], np.int32)), name="active", requires_grad=False)
        self.mask = Parameter(Tensor(np.ones(batch, np.float32)), name="mask", requires_grad=False)


class _Record(nn.Cell):
    """Around a cell of the full network: copies its output to ``buffer``
    when its index is active."""

    def __init__(self, cell, index, turn, shape):
        super().__init__()
        self.cell = cell
        self.index = index
        self.turn = [turn]
        self.buffer = Parameter(Tensor(np.zeros(shape, np.float32)), name="buffer", requires_grad=False)

    def construct(self, x):
        y = self.cell(x)
        if self.turn[0].active[0] == self.index:
            ops.assign(self.buffer, y)
        return y


class _Fit(nn.Cell):
    """Around a cell of the pruned network: when its index is active, adds
    the batch to the least-squares sums of its refit against the full
    network's output (``target``, a :class:`_Record` buffer) mapped by
    ``a``. ``refit``: which least-squares fit (one of
    :data:`inn_ms.graph.kinds.REFITS`, from the cell's layer kind)."""

    def __init__(self, cell, refit, index, turn, target, a):
        super().__init__()
        self.cell = cell
        self.refit = refit
        self.index = index
        self.turn = [turn]
        self.target = [target]  # a list: the buffer belongs to the full network's probe
        self.a = Tensor(a.astype(np.float32))
        out_c = a.shape[0]
        if refit == "conv":
            self.kernel = tuple(cell.kernel_size)
            self.stride = tuple(cell.stride)
            self.dilation = tuple(cell.dilation)
            p = cell.padding
            self.padding = (p, p, p, p) if isinstance(p, int) else tuple(p)
            self.pad_mode = cell.pad_mode
            d = cell.in_channels * self.kernel[0] * self.kernel[1] + 1
            gram, cross = (d, d), (d, out_c)
        elif refit == "dense":
            d = cell.in_channels + 1
            gram, cross = (d, d), (d, out_c)
        elif refit == "depthwise":
            self.kernel = tuple(cell.kernel_size)
            self.stride = tuple(cell.stride)
            self.dilation = tuple(cell.dilation)
            p = cell.padding
            self.padding = (p, p, p, p) if isinstance(p, int) else tuple(p)
            self.pad_mode = cell.pad_mode
            d = self.kernel[0] * self.kernel[1] + 1
            gram, cross = (out_c, d, d), (out_c, d)
        else:  # bn: per channel, input and 1
            gram, cross = (out_c, 2, 2), (out_c, 2)
        self.gram = Parameter(Tensor(np.zeros(gram, np.float32)), name="gram", requires_grad=False)
        self.cross = Parameter(Tensor(np.zeros(cross, np.float32)), name="cross", requires_grad=False)
        self.energy = Parameter(Tensor(np.zeros(out_c, np.float32)), name="energy", requires_grad=False)

    def _mapped_target(self):
        t = self.target[0].buffer
        if t.ndim == 4:
            b, c, h, w = t.shape
            t = ops.matmul(self.a, ops.transpose(t, (1, 0, 2, 3)).reshape(c, -1))
            return ops.transpose(t.reshape(-1, b, h, w), (1, 0, 2, 3))
        return ops.matmul(t, self.a.T)

    def _accumulate(self, x):
        t = self._mapped_target()
        mask = self.turn[0].mask
        weighted = t * mask.reshape((-1,) + (1,) * (t.ndim - 1))
        ops.assign_add(self.energy, (weighted * t).sum((0, 2, 3) if t.ndim == 4 else tuple(range(t.ndim - 1))))
        if self.refit == "dense":
            if x.ndim > 2:  # tokens (batch, ..., features): every token is a row of its sample
                mask = ops.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 2)), x.shape[:-1]).reshape(-1)
                x, t = x.reshape(-1, x.shape[-1]), t.reshape(-1, t.shape[-1])
            rows = ops.concat([x, ops.ones((x.shape[0], 1), x.dtype)], 1) * mask.reshape(-1, 1)
            ops.assign_add(self.gram, ops.matmul(rows.T, rows))
            ops.assign_add(self.cross, ops.matmul(rows.T, t))
            return
        if self.refit == "bn":
            b, c, h, w = x.shape
            xs = ops.transpose(x, (1, 0, 2, 3)).reshape(c, b, h * w) * mask.reshape(1, -1, 1)
            ones = ops.ones((1, b, 1), x.dtype) * mask.reshape(1, -1, 1)
            ts = ops.transpose(t, (1, 0, 2, 3)).reshape(c, b, h * w)
            sx, sxx = xs.sum((1, 2)), (xs * xs).sum((1, 2))
            n = ones.sum() * (h * w)
            gram = ops.stack([ops.stack([sxx, sx], 1), ops.stack([sx, sx * 0 + n], 1)], 1)
            ops.assign_add(self.gram, gram)
            ops.assign_add(self.cross, ops.stack([(xs * ts).sum((1, 2)), (ts * mask.reshape(1, -1, 1)).sum((1, 2))], 1))
            return
        padding = explicit_padding(x, self.kernel, self.stride, self.pad_mode, self.padding, self.dilation)
        cols, (oh, ow) = unfold(x, self.kernel, self.stride, padding, self.dilation)  # (b, c·k, L)
        b = cols.shape[0]
        length = oh * ow
        w = mask.reshape(-1, 1, 1)
        if self.refit == "conv":
            rows = ops.transpose(cols * w, (0, 2, 1)).reshape(b * length, -1)
            ones = ops.broadcast_to(w.reshape(-1, 1, 1), (b, length, 1)).reshape(b * length, 1)
            rows = ops.concat([rows, ones], 1)
            ts = ops.transpose(t.reshape(b, t.shape[1], length), (0, 2, 1)).reshape(b * length, -1)
            ops.assign_add(self.gram, ops.matmul(rows.T, rows))
            ops.assign_add(self.cross, ops.matmul(rows.T, ts))
            return
        # depthwise: channel c's taps are its own k values
        c = x.shape[1]
        k = self.kernel[0] * self.kernel[1]
        taps = ops.transpose((cols * w).reshape(b, c, k, length), (1, 0, 3, 2)).reshape(c, b * length, k)
        ones = ops.broadcast_to(w.reshape(1, -1, 1, 1), (c, b, length, 1)).reshape(c, b * length, 1)
        taps = ops.concat([taps, ones], 2)
        ts = ops.transpose(t.reshape(b, c, length), (1, 0, 2)).reshape(c, b * length, 1)
        ops.assign_add(self.gram, ops.bmm(ops.transpose(taps, (0, 2, 1)), taps))
        ops.assign_add(self.cross, ops.bmm(ops.transpose(taps, (0, 2, 1)), ts).reshape(c, -1))

    def construct(self, x):
        if self.turn[0].active[0] == self.index:
            self._accumulate(x)
        return self.cell(x)


# -- the refit ---------------------------------------------------------------

class _Driven(nn.Cell):
    """A probed network called as ``net(x, active, mask)``: the run-time
    state is written in the graph (MindSpore 2.10 does not see ``set_data``
    on a Parameter read inside a graph's branch, measured)."""

    def __init__(self, network, turn):
        super().__init__()
        self.network = network
        self.turn = turn

    def construct(self, x, active, mask):
        ops.assign(self.turn.active, active)
        ops.assign(self.turn.mask, mask)
        return self.network(x)


class _Write(nn.Cell):
    """Writes new values into Parameters inside a graph. In graph mode,
    MindSpore 2.10 keeps running compiled graphs with control flow on a
    Parameter's old data after a host-side ``set_data`` (measured: the
    pruned network's next pass still saw a layer's old weights); an
    ``assign`` in a graph updates the data every graph reads."""

    def __init__(self, params):
        super().__init__()
        self.params = list(params)

    def construct(self, values):
        for p, v in zip(self.params, values):
            ops.assign(p, v)
        return values[0]


class _Writer:
    """Writes refitted values into ``params`` through one compiled
    :class:`_Write` over all of them (the others rewritten with the values
    they hold), instead of a graph compiled per layer."""

    def __init__(self, params):
        self.params = list(params)
        self.values = {id(p): p.asnumpy().astype(np.float32) for p in self.params}
        self.cell = _Write(self.params)

    def __call__(self, params, values):
        for p, v in zip(params, values):
            if id(p) not in self.values:
                raise ValueError(f"repair: parameter {p.name!r} is not one the writer holds")
            v = np.asarray(v, np.float32)
            if v.shape != self.values[id(p)].shape:
                raise ValueError(f"repair: new value of {p.name!r} is {v.shape}, the parameter "
                                 f"{self.values[id(p)].shape}")
            self.values[id(p)] = v
        # mutable: a tuple argument is otherwise a constant, compiled afresh per call (measured)
        self.cell(mutable(tuple(Tensor(self.values[id(p)]) for p in self.params)))


def _refitted_parameters(probe):
    """The Parameters :func:`_refit` writes for ``probe``."""
    cell = probe.cell
    if probe.refit == "bn":
        return [cell.gamma, cell.beta]
    return [cell.weight] + ([cell.bias] if cell.has_bias else [])


def _solve(gram, cross, current, ridge):
    """``argmin_w |X w − t|² + λ |w − current|²`` from ``XᵀX``, ``Xᵀt``,
    with ``λ = ridge · mean(diag XᵀX)`` (batched over a leading axis when
    ``gram`` is 3-D)."""
    gram = np.asarray(gram, np.float64)
    cross = np.asarray(cross, np.float64)
    eye = np.eye(gram.shape[-1])
    lam = ridge * np.mean(np.diagonal(gram, axis1=-2, axis2=-1), axis=-1)
    lam = np.maximum(lam, 1e-12)
    if gram.ndim == 2:
        return np.linalg.solve(gram + lam * eye, cross + lam * current)
    return np.linalg.solve(gram + lam[:, None, None] * eye, (cross + lam[:, None] * current)[..., None])[..., 0]


def _residual(gram, cross, energy, w):
    """``|X w − t|² / |t|²`` over all output channels, from the sums
    (``w``: columns per channel, or rows for per-channel fits)."""
    gram, cross = np.asarray(gram, np.float64), np.asarray(cross, np.float64)
    if gram.ndim == 2:
        err = np.einsum("ic,ij,jc->", w, gram, w) - 2 * np.sum(w * cross) + energy.sum()
    else:
        err = np.einsum("ci,cij,cj->", w, gram, w) - 2 * np.sum(w * cross) + energy.sum()
    return float(max(err, 0.0) / max(energy.sum(), 1e-30))


def _refit(probe, ridge, write):
    """Set the pruned cell's parameters to its least-squares solution
    (through ``write``, a :class:`_Writer`); returns the relative residual
    before and after."""
    cell, refit = probe.cell, probe.refit
    gram, cross = probe.gram.asnumpy(), probe.cross.asnumpy()
    energy = probe.energy.asnumpy().astype(np.float64)
    if refit == "bn":
        g, b, mean, var = (p.asnumpy().astype(np.float64) for p in
                           (cell.gamma, cell.beta, cell.moving_mean, cell.moving_variance))
        sd = np.sqrt(var + float(cell.eps))
        scale, shift = g / sd, b - g * mean / sd  # the BatchNorm as y = scale·x + shift
        current = np.stack([scale, shift], 1)
        sol = _solve(gram, cross, current, ridge)
        write([cell.gamma, cell.beta], [sol[:, 0] * sd, sol[:, 1] + sol[:, 0] * mean])
        return _residual(gram, cross, energy, current), _residual(gram, cross, energy, sol)
    w = cell.weight.asnumpy().astype(np.float64)
    has_bias = bool(cell.has_bias)
    if not has_bias:  # the last column of the sums is the constant 1: fit without it
        gram, cross = gram[..., :-1, :-1], cross[..., :-1, :] if refit != "depthwise" else cross[..., :-1]
    parts = [w.reshape(w.shape[0], -1)] + ([cell.bias.asnumpy().astype(np.float64)[:, None]] if has_bias else [])
    current = np.concatenate(parts, 1)
    if refit == "depthwise":
        sol = _solve(gram, cross, current, ridge)
        before, after = _residual(gram, cross, energy, current), _residual(gram, cross, energy, sol)
    else:
        sol = _solve(gram, cross, current.T, ridge).T
        before, after = _residual(gram, cross, energy, current.T), _residual(gram, cross, energy, sol.T)
    new_w = sol[:, :w[0].size].reshape(w.shape)
    if has_bias:
        write([cell.weight, cell.bias], [new_w, sol[:, -1]])
    else:
        write([cell.weight], [new_w])
    return before, after


class _Reference:
    """The full network, probed and compiled once, for every width repaired
    against it: its layer outputs in the order they run (``shapes``), the
    recording probes by path, and the turn they share with the pruned
    network's probes."""

    def __init__(self, model, sample, batch):
        with model.at_sizes(model.full_sizes):
            full = model.discretize()
        full.set_train(False)
        self.batch = batch
        self.shapes = _trace_shapes(full, sample)
        self.turn = _Turn(batch)
        self.records = OrderedDict()
        paths = {id(c): p for p, c in full.cells_and_names() if p in self.shapes}

        def record(cell):
            path = paths.get(id(cell))
            if path is None:
                return None
            probe = _Record(cell, len(self.records), self.turn, (batch,) + self.shapes[path][1:])
            self.records[path] = probe
            return probe

        self.network = name_parameters_by_path(_Driven(copy_tree(full, record, share_parameters=True), self.turn))
        self.network.set_train(False)


def _reference(model, sample, batch):
    """The :class:`_Reference` of ``model`` for this input shape and batch,
    kept on the model while its weights stay the same."""
    key = (tuple(sample.shape[1:]), int(batch), _fingerprint(model))
    cache = model.__dict__.setdefault("_repair_reference", {})
    if key not in cache:
        cache.clear()
        cache[key] = _Reference(model, sample, batch)
    return cache[key]


def _fit_network(reference, pruned, maps):
    """The pruned plain network with a :class:`_Fit` probe on every layer
    the reference records (sharing ``pruned``'s Parameters), and the probes."""
    fits = OrderedDict()
    paths = {id(c): p for p, c in pruned.cells_and_names() if p in reference.records}

    def fit(cell):
        path = paths.get(id(cell))
        if path is None or _refit_of(cell) != _refit_of(reference.records[path].cell):
            return None
        refit = _refit_of(cell)
        n_out = int(cell.weight.shape[0]) if refit != "bn" else int(cell.moving_mean.shape[0])
        n_full = reference.shapes[path][-1 if refit == "dense" else 1]  # a dense layer's features are last
        a = maps.get(path)
        if a is None:
            if n_out != n_full:
                raise ValueError(f"repair: layer {path!r} has {n_out} outputs here and {n_full} in the full "
                                 f"network, but no map relates them")
            a = np.eye(n_full)
        if a.shape != (n_out, n_full):
            raise ValueError(f"repair: the map of {path!r} is {a.shape}, the layer has {n_out} of {n_full} outputs")
        record = reference.records[path]
        fits[path] = _Fit(cell, refit, record.index, reference.turn, record, a)
        return fits[path]

    network = name_parameters_by_path(_Driven(copy_tree(pruned, fit, share_parameters=True), reference.turn))
    network.set_train(False)
    return network, fits


def repair(model, plain, images, ridge=1e-2, batch_size=64, maps=None, reference=None, progress=False):
    """Refit ``plain`` (a pruned plain network of ``model``, e.g. from
    :meth:`~inn_ms.model.IntegralModel.discretize` at the current sizes) on
    ``images`` (numpy, ``N × C × H × W``, no labels) so that every layer
    reproduces the full network's. ``maps``: ``{layer path: A}`` relating
    pruned to full output channels (default :func:`output_maps` of
    ``model`` at its current sizes). ``ridge``: pull towards the current
    weights (a fraction of the mean diagonal of each layer's Gram matrix).
    ``reference``: the integral model whose full width is the target
    (default ``model``; needed when ``model``'s partitions were made
    trainable by pipeline B, which fixes their size, so that ``model`` has
    no full width any more — a fresh conversion of the same network).
    Changes ``plain`` in place and returns a report: ``layers`` maps each
    refitted layer, in the order they ran, to its relative residual
    ``|X w − t|²/|t|²`` on the images before and after its refit."""
    blocked = [n for n, p in model.groups.items() if size_step(p) > 1]
    if blocked:
        raise ValueError(f"repair: group(s) {blocked} come in blocks (a grouped convolution's channels), which "
                         f"repair does not support yet")
    images = np.asarray(images, np.float32)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"repair: need a batch of calibration images, got shape {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError("repair: the calibration images contain NaN or infinite values")
    maps = output_maps(model) if maps is None else maps
    plain.set_train(False)
    names = {p: p.name for p in plain.get_parameters()}
    batch = int(min(batch_size, len(images)))
    if reference is None:
        if any(getattr(p, "trainable", False) for p in model.groups.values()):
            raise ValueError("repair: the model's partitions are trainable (pipeline B) and fix its width, so "
                             "it has no full width to repair towards; pass reference= (the converted model)")
        reference = model
    elif list(reference.full_sizes.items()) != list(model.full_sizes.items()):
        raise ValueError(f"repair: the reference's groups {dict(reference.full_sizes)} are not the model's")
    reference = _reference(reference, images[:1], batch)
    full_probed, turn = reference.network, reference.turn
    try:
        pruned_probed, fits = _fit_network(reference, plain, maps)
    finally:
        for p, name in names.items():  # the probes renamed the shared Parameters
            p.name = name
    chunks = [images[i:i + batch] for i in range(0, len(images), batch)]

    def run_pass(active):
        active = Tensor(np.array([active], np.int32))
        for chunk in chunks:
            real = len(chunk)
            if real < batch:  # pad the last batch; padded samples weigh nothing
                chunk = np.concatenate([chunk, np.zeros((batch - real,) + chunk.shape[1:], np.float32)])
            mask = np.zeros(batch, np.float32)
            mask[:real] = 1
            x, mask = Tensor(chunk), Tensor(mask)
            full_probed(x, active, mask)
            pruned_probed(x, active, mask)

    report = OrderedDict()
    order = [p for p in reference.shapes if p in fits]
    write = _Writer([q for path in order for q in _refitted_parameters(fits[path])])
    for path in tqdm(order, desc="repair", disable=not progress, leave=False):
        # in the order the layers run in; a probe's sums start at zero and
        # fill in its own pass only
        run_pass(fits[path].index)
        report[path] = _refit(fits[path], ridge, write)
    logger.info("repaired %d layers on %d images", len(report), len(images))
    return {"layers": report, "images": int(len(images))}


def _trace_shapes(full, x):
    """Output shape of every refittable cell of ``full`` for the input
    ``x``, in the order the cells run (one sample, in PyNative mode,
    whatever mode is set)."""
    try:
        shapes = run_shapes(full, x, [p for p, c in full.cells_and_names() if p and _refit_of(c) is not None])
    except ValueError as e:
        raise ValueError(f"repair: {e}; repair needs each layer to run once") from None
    return OrderedDict((path, out) for path, (_, out) in shapes.items())


def _fingerprint(model):
    """A digest of every parameter of ``model`` (synthesized images stay
    valid only while the weights they were made for do)."""
    import hashlib
    h = hashlib.sha1()
    for name, p in model.parameters_and_names():
        h.update(name.encode())
        h.update(p.asnumpy().tobytes())
    return h.hexdigest()


def clear_cache(model):
    """Drop what repairs keep on ``model`` between calls (the compiled
    full network and synthesized images), so that its memory can be
    returned (``gc.collect()`` then ``mindspore.ms_memory_recycle()``)."""
    model.__dict__.pop("_repair_reference", None)
    model.__dict__.pop("_synthetic_images", None)


def calibration_images(model, repair, calib=None, count=128, input_shape=None, seed=0, progress=False):
    """The images a repair fits on: for ``"calib"``, the first ``count`` of
    the user's ``calib`` (unlabelled, ``N × C × H × W``); for
    ``"datafree"``, ``count`` images synthesized from the network's
    statistics (:func:`inn_ms.synthesis.synthesize`) for ``input_shape``,
    made once per model, weights, shape, count and seed (pruning to several
    widths reuses them). None for ``"none"``."""
    check_repair(repair)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"repair: the number of calibration images must be an int >= 1, got {count!r}")
    if repair == "none":
        if calib is not None:
            raise ValueError("calibration images were given but repair is 'none': choose repair='calib'")
        return None
    if repair == "calib":
        if calib is None:
            raise ValueError("repair='calib' needs calibration images (unlabelled, N x C x H x W)")
        images = np.asarray(calib, np.float32)
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"repair: calibration images must be N x C x H x W, got shape {images.shape}")
        if input_shape is not None and tuple(images.shape[1:]) != tuple(input_shape)[1:]:
            raise ValueError(f"repair: calibration images are {tuple(images.shape[1:])}, the network takes "
                             f"{tuple(input_shape)[1:]}")
        return images[:count]
    if calib is not None:
        raise ValueError("repair='datafree' makes its own images: give calibration images with repair='calib'")
    if input_shape is None:
        raise ValueError("repair='datafree' needs the input shape to synthesize images for")
    key = (tuple(int(v) for v in input_shape)[1:], int(count), int(seed), _fingerprint(model))
    cache = model.__dict__.setdefault("_synthetic_images", {})
    if key not in cache:
        cache.clear()  # one set at a time: they are only valid for these weights
        cache[key] = synthesize(model, key[0], count=count, seed=seed, progress=progress)
    return cache[key]


__all__ = ["REPAIRS", "calibration_images", "check_repair", "clear_cache", "group_maps", "output_maps", "repair"]
