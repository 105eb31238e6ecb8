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
