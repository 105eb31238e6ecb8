"""Finding and replacing Cells in a network by their path (``layer1.0.conv1``)."""


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
    (``SequentialCell``/``CellList`` keep a list of their Cells beside the dict)."""
    if not path:
        raise ValueError("set_cell: cannot replace the root Cell")
    parent_path, _, name = path.rpartition(".")
    parent = get_cell(root, parent_path)
    if name not in parent._cells:
        raise ValueError(f"no Cell {path!r} to replace")
    parent._cells[name] = new
    if isinstance(getattr(parent, "cell_list", None), list):
        object.__setattr__(parent, "cell_list", list(parent._cells.values()))


def name_parameters_by_path(root):
    """Give every parameter its path in the Cell tree as its name, so names
    are unique (checkpoints and optimisers key on them) after Cells were
    replaced."""
    for path, p in root.parameters_and_names():
        p.name = path
