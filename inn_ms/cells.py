"""Cell-tree surgery: finding, replacing and copying Cells by their path.

The one module that reaches into MindSpore's Cell internals (``_cells``,
``_params``, ``cell_list``, the compile-cache identity), so the rest of the
library builds, converts and prunes networks through these functions only.
"""
import copy
import time
from collections import OrderedDict

import mindspore as ms
from mindspore import Tensor, nn


def get_cell(root, path):
    """The Cell at ``path`` under ``root`` (``''`` is ``root`` itself)."""
    cell = root
    for part in path.split(".") if path else []:
        cells = cell._cells
        if part not in cells:
            raise ValueError(f"no Cell {path!r} in {type(root).__name__} (stopped at {part!r})")
        cell = cells[part]
    return cell


def set_cell(root, path, new):
    """Put ``new`` at ``path`` under ``root``, in containers too
    (``SequentialCell``/``CellList`` keep a list of their Cells beside the
    dict), and wherever else under ``root`` the same Cell is held: one layer
    under two names (mindcv's SqueezeNet: ``final_conv`` is also
    ``classifier.1``, and only the second is called) is one layer."""
    if not path:
        raise ValueError("set_cell: cannot replace the root Cell")
    parent_path, _, name = path.rpartition(".")
    parent = get_cell(root, parent_path)
    if name not in parent._cells:
        raise ValueError(f"no Cell {path!r} to replace")
    old, seen, todo = parent._cells[name], set(), [root]
    while todo:
        cell = todo.pop()
        if id(cell) in seen:
            continue
        seen.add(id(cell))
        hit = [k for k, c in cell._cells.items() if c is old]
        for k in hit:
            cell._cells[k] = new
        if hit and isinstance(getattr(cell, "cell_list", None), list):
            object.__setattr__(cell, "cell_list", list(cell._cells.values()))
        todo.extend(c for c in cell._cells.values() if c is not None)


def remove_cell(parent, name):
    """Forget ``parent``'s sub-Cell ``name`` (nothing if it has none): its
    parameters stop being ``parent``'s, and the attribute may then hold a
    plain object."""
    parent._cells.pop(name, None)


def holds_parameters(cell):
    """Whether ``cell`` holds parameters itself (a convolution, a BatchNorm),
    not only through its sub-Cells."""
    return bool(getattr(cell, "_params", None))


def name_parameters_by_path(root):
    """Give every parameter its path in the Cell tree as its name, so names
    are unique (checkpoints and optimisers key on them) after Cells were
    replaced. Returns ``root``."""
    for path, p in root.parameters_and_names():
        p.name = path
    return root


def renew_graph_identity(cell):
    """Make MindSpore compile ``cell`` afresh at its next call. Compiled graphs
    are cached per Cell identity and call arguments; after a change that the
    size key does not see (a partition swapped for a trainable one of the same
    size), the cached graph would be stale."""
    object.__setattr__(cell, "_create_time", time.time_ns())


def copy_tree(cell, replace, share_parameters=False, _memo=None):
    """Copy of the Cell tree in which ``replace(cell)``, where not None,
    stands for a Cell; every other Cell is copied with its own parameters
    (or with the same Parameter objects, ``share_parameters=True``). A Cell
    or Parameter reached twice (registered under two names, as mindcv's
    SqueezeNet does with its last convolution) is copied once and shared by
    the copy the same way, so the copy counts and holds it once."""
    memo = {} if _memo is None else _memo
    if id(cell) in memo:
        return memo[id(cell)]
    new = replace(cell)
    if new is not None:
        memo[id(cell)] = new
        return new
    new = copy.copy(cell)
    memo[id(cell)] = new
    # Cell.__setstate__ adopts the original's __dict__ object: give the copy its own.
    new.__dict__ = dict(cell.__dict__)
    object.__setattr__(new, "_cells", OrderedDict((k, copy_tree(c, replace, share_parameters, memo))
                                                  for k, c in cell._cells.items()))

    def param(p):
        if p is None or share_parameters:
            return p
        if id(p) not in memo:
            memo[id(p)] = p.clone()
        return memo[id(p)]
    object.__setattr__(new, "_params", OrderedDict((k, param(p)) for k, p in cell._params.items()))
    if isinstance(cell, (nn.SequentialCell, nn.CellList)):  # containers keep a list beside the dict
        object.__setattr__(new, "cell_list", list(new._cells.values()))
    # A fresh identity for MindSpore's compile caches (shallow copy shares them).
    object.__setattr__(new, "_create_time", time.time_ns())
    object.__setattr__(new, "_compile_cache", None)
    object.__setattr__(new, "_phase_cache", None)
    return new


def drop_compiled_graphs(cell, phases):
    """Release the graphs ``cell`` compiled for ``phases`` (MindSpore phase
    names, as in ``cell.compile_cache``) and the memory they hold; calling
    ``cell`` again with those arguments compiles afresh. Unknown phases are
    ignored."""
    from mindspore.common.api import _cell_graph_executor
    cache = cell._compile_cache
    phases = {p for p in phases if cache and p in cache}
    if phases:
        _cell_graph_executor.del_net_res(cell, phases)
        cache.difference_update(phases)


def compiled_phases(cell):
    """The phase names of the graphs ``cell`` holds compiled (a new set)."""
    return set(cell._compile_cache or ())


def last_compiled_phase(cell):
    """The phase name of the graph ``cell``'s latest graph-mode call ran
    (None if it never compiled one)."""
    if not cell._compile_cache:
        return None
    return getattr(cell, "compile_phase", None)


class _Probe(nn.Cell):
    """Runs its cell, then hands ``(path, input, output)`` to ``record``
    (in PyNative mode, where ``construct`` runs as Python)."""

    def __init__(self, cell, path, record):
        super().__init__()
        self.cell, self.path, self.record = cell, path, record

    def construct(self, x):
        y = self.cell(x)
        self.record(self.path, x, y)
        return y


def run_probed(root, x, paths, record):
    """Run ``root`` once on the numpy input ``x`` in PyNative mode, whatever
    mode is set, calling ``record(path, input, output)`` each time a Cell at
    one of ``paths`` (each taking one tensor) has run. ``root`` itself is
    not changed (a copy sharing its parameters runs)."""
    wanted = set(paths)
    found = {id(c): p for p, c in root.cells_and_names() if p in wanted}
    net = copy_tree(root, lambda c: _Probe(c, found[id(c)], record) if id(c) in found else None,
                    share_parameters=True)
    net.set_train(False)
    mode = ms.get_context("mode")
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        net(Tensor(x))
    finally:
        ms.set_context(mode=mode)


def run_shapes(root, x, paths):
    """``{path: (input shape, output shape)}`` of the Cells of ``root`` at
    ``paths`` for the numpy input ``x``, in the order they run
    (:func:`run_probed`). A Cell that runs twice (shared weights) is
    refused."""
    shapes = OrderedDict()

    def record(path, a, b):
        if path in shapes:
            raise ValueError(f"layer {path!r} runs more than once per forward pass (shared weights)")
        shapes[path] = (tuple(int(v) for v in a.shape), tuple(int(v) for v in b.shape))

    run_probed(root, x, paths, record)
    return shapes


def clone(cell):
    """A copy of ``cell`` with its own parameters, named by path."""
    return name_parameters_by_path(copy_tree(cell, lambda c: None))


__all__ = ["clone", "compiled_phases", "copy_tree", "drop_compiled_graphs", "get_cell", "holds_parameters",
           "last_compiled_phase", "name_parameters_by_path", "remove_cell", "renew_graph_identity", "run_probed",
           "run_shapes", "set_cell"]
