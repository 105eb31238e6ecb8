"""Size-keyed compilation: the guard against stale graphs in graph mode.

MindSpore keys a compiled graph on a Cell's call arguments only; a size kept
in an attribute is baked into the graph and silently ignored after it
changes (measured on 2.10: the old graph keeps running, even reading a
reshaped parameter out of bounds). :class:`SizeKeyed` passes the current
sizes as an extra constant argument whenever a Cell is called from Python,
so each width gets its own graph, compiled once and cached by MindSpore.
"""


class SizeKeyed:
    """Mixin for Cells whose graph depends on partition sizes.

    Subclasses implement :meth:`size_key` and give ``construct`` a trailing
    ``size_key=None`` parameter, which it ignores: the key's only job is to
    select the compiled graph.
    """

    def size_key(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return super().__call__(*args, self.size_key(), **kwargs)




def renew_graph_identity(cell):
    """Make MindSpore compile ``cell`` afresh at its next call. Compiled graphs
    are cached per Cell identity and call arguments; after a change that the
    size key does not see (a partition swapped for a trainable one of the same
    size), the cached graph would be stale."""
    import time
    object.__setattr__(cell, "_create_time", time.time_ns())
