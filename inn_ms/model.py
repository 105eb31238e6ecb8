"""An integral network: a Cell of integral layers plus its channel groups.

:class:`IntegralModel` finds the partitions (channel groups) its layers use,
resizes them by name or by one keep ratio, keys its compiled graphs on the
current sizes (so graph mode never runs a stale width), and turns itself into
a plain, thinner MindSpore network with :meth:`IntegralModel.discretize`.
"""
import contextlib
import logging
from collections import OrderedDict

import numpy as np
from mindspore import nn

from inn_ms.cells import copy_tree, name_parameters_by_path
from inn_ms.keyed import SizeKeyed
from inn_ms.layers.base import IntegralLayer
from inn_ms.layers.plain import fast_convolution
from inn_ms.partition import CompositePartition, allowed_size, describe_sizes, size_range, size_step
from inn_ms.resampling import check_rule

logger = logging.getLogger(__name__)


def integral_layers(cell):
    """``(name, layer)`` for every integral layer inside ``cell``."""
    return [(name, c) for name, c in cell.cells_and_names() if isinstance(c, IntegralLayer)]


def find_groups(cell):
    """The resizable partitions used by the integral layers of ``cell``, in
    order of first use, by name (composites contribute their parts)."""
    found = OrderedDict()
    seen = set()

    def add(p):
        if isinstance(p, CompositePartition):
            for part in p.parts:
                add(part)
            return
        if id(p) in seen:
            return
        seen.add(id(p))
        name = p.name
        k = 1
        while name in found:
            k += 1
            name = f"{p.name}#{k}"
        found[name] = p

    for _, layer in integral_layers(cell):
        for p in layer.partitions.values():
            add(p)
    return found


def count_parameters(cell):
    """Number of scalars in the trainable and non-trainable parameters of ``cell``."""
    return int(sum(int(np.prod(p.shape)) for p in cell.get_parameters()))


class IntegralModel(SizeKeyed, nn.Cell):
    """Wraps ``network`` (a Cell containing integral layers).

    ``groups`` maps a name to each partition the layers share; by default it
    is found from the layers (:func:`find_groups`).

    In graph mode it holds at most ``max_graphs`` (4) compiled graphs (one
    per width, input shape and train/eval phase) and releases them all, and
    their memory, when it needs another (:mod:`inn_ms.keyed`): evaluating
    many widths in one process stays bounded. ``model.max_graphs = None``
    holds every graph.
    """

    max_graphs = 4

    def __init__(self, network, groups=None):
        super().__init__()
        self.network = network
        self._groups = OrderedDict(groups if groups is not None else find_groups(network))
        if not self._groups:
            raise ValueError("IntegralModel: the network has no integral layer with a continuous axis")
        self._full_params = None

    @property
    def groups(self):
        """Channel groups: name → partition."""
        return OrderedDict(self._groups)

    @property
    def sizes(self):
        """Current size of each group."""
        return OrderedDict((n, p.size) for n, p in self._groups.items())

    @property
    def full_sizes(self):
        """Each group's channel count at full width (what its quadrature is
        normalised by), also after pipeline B fixed a group at fewer."""
        return OrderedDict((n, p.full_size) for n, p in self._groups.items())

    @property
    def resampling(self):
        """The rule every group is sampled with (:mod:`inn_ms.resampling`),
        or ``{group: rule}`` when the groups differ."""
        rules = OrderedDict((n, p.resampling) for n, p in self._groups.items())
        return next(iter(rules.values())) if len(set(rules.values())) == 1 else rules

    def set_resampling(self, rule):
        """Sample every group with ``rule`` (``"point"``/``"antialiased"``),
        or the groups named in a ``{group: rule}`` dict (others keep theirs).
        Every name and rule is checked before any group changes."""
        rules = dict(rule) if isinstance(rule, dict) else {n: rule for n in self._groups}
        unknown = [n for n in rules if n not in self._groups]
        if unknown:
            raise ValueError(f"set_resampling: unknown group(s) {unknown}; groups are {list(self._groups)}")
        for name, r in rules.items():
            check_rule(r, f"group {name!r}")
        for name, r in rules.items():
            self._groups[name].resampling = r
        return self.resampling

    def size_key(self):
        # Rules change the sampling matrices, which fixed partitions bake in.
        return tuple((p.size, p.resampling) for p in self._groups.values())

    def construct(self, x, size_key=None):
        return self.network(x)

    def allowed_range(self, group):
        """``(low, high)``: the sizes ``group`` may take — the range its
        artifact allows (``allowed_sizes``, set by ``load_artifact``) within
        :func:`inn_ms.partition.size_range`. What prune, the elastic network
        and the width search check sizes against."""
        smallest, largest = size_range(self._groups[group])
        low, high = (getattr(self, "allowed_sizes", None) or {}).get(group, (smallest, largest))
        return max(int(low), smallest), min(int(high), largest)

    def sizes_for_keep(self, keep, multiple_of=1):
        """Per-group sizes for a keep ratio ``keep`` ∈ (0, 1], rounded to a
        multiple of ``multiple_of`` (never below it or the group's smallest
        size, :func:`inn_ms.partition.size_range`; never above full size);
        a group of blocks (a grouped convolution's channels) to a multiple of
        its blocks too (:func:`inn_ms.partition.size_step`)."""
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ValueError(f"keep ratio must be in (0, 1], got {keep!r}")
        out = OrderedDict()
        for name, p in self._groups.items():
            step = np.lcm(int(multiple_of), size_step(p))
            n = int(round(keep * p.full_size / step)) * step
            n = min(max(n, step, size_range(p)[0]), p.full_size)
            out[name] = int(n)
        return out

    def resize(self, sizes=None, keep=None, multiple_of=1):
        """Resize groups: ``sizes`` maps group names to sizes (others keep
        theirs), or ``keep`` sets every group to that fraction of its full
        size. All sizes are checked before any group changes."""
        if (sizes is None) == (keep is None):
            raise ValueError("resize: give exactly one of sizes= or keep=")
        if keep is not None:
            sizes = self.sizes_for_keep(keep, multiple_of)
        unknown = [n for n in sizes if n not in self._groups]
        if unknown:
            raise ValueError(f"resize: unknown group(s) {unknown}; groups are {list(self._groups)}")
        for name, n in sizes.items():
            if not allowed_size(self._groups[name], n):
                raise ValueError(f"resize: size of group {name!r} must be {describe_sizes(self._groups[name])}, "
                                 f"got {n!r}")
        for name, n in sizes.items():
            self._groups[name].resize(int(n))
        logger.debug("resized to %s", dict(self.sizes))
        return self.sizes

    @contextlib.contextmanager
    def at_sizes(self, sizes=None, keep=None, multiple_of=1, resampling=None):
        """``with model.at_sizes(...):`` the model at these sizes (the
        arguments of :meth:`resize`; none: the sizes it has), sampled with
        ``resampling`` if given (as :meth:`set_resampling`), and back at the
        sizes and rules it had when the block ends, however it ends."""
        saved, saved_rules = dict(self.sizes), self.resampling
        try:
            if resampling is not None:
                self.set_resampling(resampling)
            if sizes is not None or keep is not None:
                self.resize(sizes=None if sizes is None else dict(sizes), keep=keep, multiple_of=multiple_of)
            yield self
        finally:
            self.set_resampling(saved_rules)
            self.resize(sizes=saved)

    def discretize(self):
        """A plain network at the current sizes: every integral layer becomes
        an ``nn.Conv2d``/``nn.Dense`` with fewer channels, every other Cell is
        copied with its own copy of its parameters. Parameters are named by
        their path (unique, as graph mode and checkpoints need). A plain
        ``nn.Conv2d`` left in the network (a layer on no continuous group)
        becomes the fast-on-CPU :class:`inn_ms.layers.plain.Conv2d`, like the
        discretized layers: the same function, exported as a standard
        ``Conv2D`` (:func:`inn_ms.export.export_mindir`)."""
        return name_parameters_by_path(copy_tree(
            self.network, lambda c: c.discretize() if hasattr(c, "discretize") and not isinstance(c, IntegralModel)
            else fast_convolution(c)))

    def select_channels(self, indices):
        """A plain network made of the *full-size* weights restricted to the
        channels ``indices[group]`` (index arrays; groups not named keep all
        channels). The baseline that INN resampling is compared with: naive
        truncation, L1-norm or random channel selection."""
        self._check_groups(indices, "select_channels")
        for name, idx in indices.items():
            idx = np.asarray(idx)
            full = self._groups[name].full_size
            if idx.ndim != 1 or len(idx) == 0 or idx.min() < 0 or idx.max() >= full or len(set(idx.tolist())) != len(idx):
                raise ValueError(f"select_channels: indices of group {name!r} must be distinct ints in [0, {full})")
        return self._full_size_plain({g: (i, i) for g, i in indices.items()}, "select_channels")

    def merge_channels(self, merges):
        """A plain network made of the *full-size* weights with the channels
        of each group merged: ``merges[group] = (P, Q)``, two ``n × N``
        matrices; producer output channel ``i`` becomes ``Σ_c P[i, c]·w_c``
        (a cluster's mean, say) and consumer input channel ``i`` becomes
        ``Σ_c Q[i, c]·w_c`` (the cluster's sum). The channel-folding
        baseline (:mod:`inn_ms.baselines`)."""
        self._check_groups(merges, "merge_channels")
        for name, pq in merges.items():
            full = self._groups[name].full_size
            shapes = [np.shape(m) for m in pq] if isinstance(pq, (tuple, list)) and len(pq) == 2 else None
            if shapes is None or len({s for s in shapes}) != 1 or len(shapes[0]) != 2 \
                    or shapes[0][1] != full or not 1 <= shapes[0][0] <= full:
                raise ValueError(f"merge_channels: group {name!r} needs (P, Q), two n x {full} matrices "
                                 f"with 1 <= n <= {full}")
        return self._full_size_plain(merges, "merge_channels")

    def _check_groups(self, by_group, what):
        unknown = [n for n in by_group if n not in self._groups]
        if unknown:
            raise ValueError(f"{what}: unknown group(s) {unknown}; groups are {list(self._groups)}")
        blocked = [n for n in by_group if size_step(self._groups[n]) > 1]
        if blocked:
            raise ValueError(f"{what}: group(s) {blocked} come in blocks (a grouped convolution's channels); "
                             f"choosing or merging their channels is not supported yet")

    def _full_size_plain(self, pairs, what):
        """The plain network of the full-size weights with each group's
        output axes taken by ``pairs[group][0]`` and input axes by
        ``pairs[group][1]`` (index arrays or matrices)."""
        by_id = {id(p): name for name, p in self._groups.items()}

        def pick(layer):
            if not isinstance(layer, IntegralLayer):
                return fast_convolution(layer)
            sel = {}
            for axis, p in layer.partitions.items():
                if isinstance(p, CompositePartition):
                    raise ValueError(f"{what}: channels after a concatenation are not supported")
                pair = pairs.get(by_id.get(id(p)))
                sel[axis] = None if pair is None else pair[0 if axis == "out" else 1]
            return layer.discretize(out_index=sel.get("out"), in_index=sel.get("in"))

        with self.at_sizes(self.full_sizes):
            return name_parameters_by_path(copy_tree(self.network, pick))

    def full_parameters(self):
        """Parameters of the discretized network at full size (computed once:
        the architecture does not change)."""
        if self._full_params is None:
            with self.at_sizes(self.full_sizes):
                self._full_params = count_parameters(self.discretize())
        return self._full_params

    def compression(self):
        """Parameters of the discretized network now (``params``) and at full
        size (``full_params``), and ``compression``: the fraction of them
        removed, ``1 - params / full_params`` (0 at full size), as every
        table's "compr." column and evaluation row report it."""
        now = count_parameters(self.discretize())
        full = self.full_parameters()
        return {"params": now, "full_params": full, "compression": 1 - now / full}

