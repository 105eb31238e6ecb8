"""Size-keyed compilation: the guard against stale graphs in graph mode.

MindSpore keys a compiled graph on a Cell's call arguments only; a size kept
in an attribute is baked into the graph and silently ignored after it
changes (measured on 2.10: the old graph keeps running, even reading a
reshaped parameter out of bounds). :class:`SizeKeyed` passes the current
sizes as an extra constant argument whenever a Cell is called from Python,
so each width gets its own graph, compiled once and cached by MindSpore.

Each compiled graph keeps its memory (weights, activations, the unfold
buffers of every convolution at its batch size) until it is released:
evaluating 11 widths of a 168 k-parameter CNN at batch 250 in one process
grew to 17.7 GB. A Cell whose ``max_graphs`` is set holds at most that many
compiled graphs: a call that needs a new graph (a new width, input shape or
train/eval phase) when the Cell already holds ``max_graphs`` releases all of
them and their memory first, and widths called again later compile again.
All, not the least recently used one: MindSpore 2.10 cannot release one
graph of a Cell alone (measured: after ``del_net_res`` of one phase, the
Cell's other graphs were compiled again at their next call, every call).
:class:`inn_ms.model.IntegralModel` holds 4; ``None`` (the default here)
holds them all, which training steps that cycle through a set of widths
need.
"""
import mindspore as ms

from inn_ms.cells import compiled_phases, drop_compiled_graphs, last_compiled_phase


def _signature(value):
    """What of a call argument selects a compiled graph: a tensor's shape
    and type, another value itself."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return ("tensor", tuple(value.shape), str(value.dtype))
    return repr(value)


class SizeKeyed:
    """Mixin for Cells whose graph depends on partition sizes.

    Subclasses implement :meth:`size_key` and give ``construct`` a trailing
    ``size_key=None`` parameter, which it ignores: the key's only job is to
    select the compiled graph.
    """

    max_graphs = None  # compiled graphs held at most (see the module's docs); None: all

    def size_key(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        key = self.size_key()
        if self.max_graphs is None or ms.get_context("mode") != ms.GRAPH_MODE:
            return super().__call__(*args, key, **kwargs)
        # What selects a graph: the sizes, train/eval, the arguments, and the
        # Cell's identity (renew_graph_identity makes every graph new).
        call = (key, getattr(self, "phase", None), getattr(self, "create_time", None),
                tuple(_signature(a) for a in args), tuple(sorted((k, _signature(v)) for k, v in kwargs.items())))
        seen = self._graph_calls()
        if call not in seen:
            held = compiled_phases(self)
            if len(held) >= max(int(self.max_graphs), 1):
                drop_compiled_graphs(self, held)
                seen.clear()
        out = super().__call__(*args, key, **kwargs)
        if last_compiled_phase(self) is not None:
            seen.add(call)
        return out

    def _graph_calls(self):
        """The calls this Cell holds a compiled graph for (its own set: a
        copy made by ``copy_tree`` shares ``__dict__`` values, so the set
        records the object it belongs to)."""
        owner, calls = self.__dict__.get("_graph_calls_seen", (None, None))
        if owner != id(self):
            calls = set()
            object.__setattr__(self, "_graph_calls_seen", (id(self), calls))
        return calls
