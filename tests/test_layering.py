"""The import graph of the library and the zoo: dependencies flow one way,
with no loop.

Read from the source with ``ast`` (nothing is imported), counting imports
inside functions too. Layers, lowest first: math (and the base registries)
→ layers → graph/convert → deploy → run → cli; the zoo sits on deploy and
registers its networks in :mod:`inn_ms.builders`. A module may import its
own layer and the ones below; a package facade (``inn_ms/__init__.py``,
``model_zoo/__init__.py``) may import its package's modules, and nothing
inside the package imports it. The library never imports ``model_zoo`` or
``scripts``. Two more rules of where code lives, read the same way: only
``inn_ms/cells.py`` touches MindSpore's Cell internals, and only
``inn_ms/fileio.py`` writes a file by a temporary name and a rename.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "inn_ms"
ZOO = "model_zoo"
LAYERS = {
    "math": ["_version", "_backend", "fileio", "builders", "quadrature", "cubic", "resampling", "partition",
             "sampler", "keyed", "functional", "cells"],
    "layers": ["layers", "model"],
    "graph/convert": ["graph", "convert"],
    "deploy": ["artifact", "prune", "export", "elastic", "repair", "synthesis", "baselines", "latency"],
    "zoo": [],
    "run": ["metrics", "train", "partition_tuning", "checkpoint", "config", "data", "tasks",
            "runner", "search"],
    "cli": ["cli"],
}
RANK = {f"{PACKAGE}.{name}": rank for rank, names in enumerate(LAYERS.values()) for name in names}
RANK[ZOO] = list(LAYERS).index("zoo")
FACADES = (PACKAGE, ZOO)
LAYER_NAMES = list(LAYERS)


def modules():
    """``{module: path}`` of every module of the package."""
    found = {}
    for folder, _, files in [w for package in FACADES for w in os.walk(os.path.join(ROOT, package))]:
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def _is_package(name, mods):
    return mods.get(name, "").endswith("__init__.py")


def _targets(importer, imported, mods):
    """The modules an ``import imported`` in ``importer`` runs: the module
    (or the package, for a name it defines) and the packages on its path
    that ``importer`` is not inside (their ``__init__`` runs too)."""
    name = imported
    while name and name not in mods:
        name = name.rpartition(".")[0]
    out = [name] if name else []
    parent = name.rpartition(".")[0]
    while parent and parent not in FACADES:
        if not (importer == parent or importer.startswith(parent + ".")):
            out.append(parent)
        parent = parent.rpartition(".")[0]
    return out


def import_graph():
    """``{module: {imported module: line}}`` over both packages."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        edges = graph.setdefault(name, {})
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module + "." + a.name if _is_package(node.module, mods) else node.module
                         for a in node.names]
            else:
                continue
            for imported in names:
                top = imported.split(".")[0]
                if top == "scripts" or (top == ZOO and name.split(".")[0] == PACKAGE):
                    edges[top] = node.lineno
                elif top in FACADES:
                    for target in _targets(name, imported, mods):
                        if target != name:
                            edges.setdefault(target, node.lineno)
    return graph


def rank(module):
    name = module
    while name and name not in RANK:
        name = name.rpartition(".")[0]
    if not name:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return RANK[name]


GRAPH = import_graph()


def test_every_module_has_a_layer():
    for module in GRAPH:
        if module not in FACADES:
            rank(module)


def test_the_library_never_imports_the_zoo_or_the_scripts():
    bad = [(m, t, line) for m, edges in GRAPH.items() for t, line in edges.items()
           if t == "scripts" or (t == ZOO and m.split(".")[0] == PACKAGE)]
    assert not bad, bad


def test_imports_go_down_the_layers():
    bad = []
    for module, edges in GRAPH.items():
        if module in FACADES:
            continue
        for target, line in edges.items():
            if target in FACADES and target == module.split(".")[0]:
                bad.append(f"{module}:{line} imports its package facade {target}")
            elif target in GRAPH and rank(target) > rank(module):
                bad.append(f"{module}:{line} ({LAYER_NAMES[rank(module)]}) imports {target} "
                           f"({LAYER_NAMES[rank(target)]})")
    assert not bad, "\n".join(bad)


def test_the_facade_does_not_import_the_cli():
    assert f"{PACKAGE}.cli" not in GRAPH[PACKAGE]


def find_cycle(graph):
    """One import loop as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, {}):
            if t not in graph:
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_loop():
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("graph, loop", [({"a": {"b": 1}, "b": {"a": 2}}, True),
                                         ({"a": {"b": 1}, "b": {"c": 2}, "c": {}}, False)])
def test_the_loop_finder_finds_loops(graph, loop):
    assert (find_cycle(graph) is not None) == loop


# MindSpore's Cell internals (and its graph executor's), which only
# inn_ms/cells.py may touch: everything else goes through its functions.
CELL_INTERNALS = {"_cells", "_params", "cell_list", "_compile_cache", "_phase_cache", "_create_time",
                  "_cell_graph_executor", "_CellGraphExecutor"}


def internal_uses(path):
    """``[(line, name)]``: attributes, imported names and strings of
    :data:`CELL_INTERNALS` in the source at ``path``."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CELL_INTERNALS:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Constant) and node.value in CELL_INTERNALS:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if a.name in CELL_INTERNALS]
    return found


def test_cell_surgery_on_mindspore_internals_is_in_one_module():
    bad = [f"{name}:{line} uses {what}" for name, path in modules().items() if name != f"{PACKAGE}.cells"
           for line, what in internal_uses(path)]
    assert not bad, "\n".join(bad)
    assert internal_uses(os.path.join(ROOT, PACKAGE, "cells.py"))  # the check sees them where they are


def test_the_internals_finder_finds_attributes_strings_and_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from mindspore.common.api import _cell_graph_executor\n"
                    "x = cell._cells\ny = getattr(cell, '_params', None)\nz = cell.cells()\n")
    assert internal_uses(str(path)) == [(1, "_cell_graph_executor"), (2, "_cells"), (3, "_params")]


# Calls that write a file by a temporary name and a rename: only the one
# atomic writer (inn_ms/fileio.py) makes them. inn_ms/checkpoint.py renames
# a damaged checkpoint aside (a move, not a write).
RENAMING_WRITES = {("os", "replace"), ("os", "rename"), ("tempfile", "mkstemp"), ("tempfile", "NamedTemporaryFile")}
MAY_RENAME = {os.path.join(PACKAGE, "fileio.py"): RENAMING_WRITES,
              os.path.join(PACKAGE, "checkpoint.py"): {("os", "replace")}}


def renaming_writes(path):
    """``[(line, "module.function")]`` of the calls of :data:`RENAMING_WRITES` in ``path``."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    return [(node.lineno, f"{node.func.value.id}.{node.func.attr}") for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in RENAMING_WRITES]


def test_atomic_writes_go_through_the_one_writer():
    bad = []
    for top in (PACKAGE, ZOO, "scripts"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(folder, f), ROOT)
                allowed = {".".join(a) for a in MAY_RENAME.get(rel, ())}
                bad += [f"{rel}:{line} calls {call}" for line, call in renaming_writes(os.path.join(ROOT, rel))
                        if call not in allowed]
    assert not bad, "write through inn_ms.fileio (atomic_write, write_bytes/text/json):\n" + "\n".join(bad)
    assert renaming_writes(os.path.join(ROOT, PACKAGE, "fileio.py"))  # the check sees the writer's own calls
