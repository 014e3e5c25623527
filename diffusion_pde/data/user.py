"""A researcher's own graph: a saved PyG ``Data`` or a folder of plain files, validated once.

Accepted forms of ``path`` (:func:`load_graph`):

* a file ``*.pt``/``*.pth`` written by ``torch.save`` holding a ``torch_geometric.data.Data`` or a
  dict with the same keys (loaded with ``weights_only=True``: no arbitrary code runs);
* a folder holding, each as ``NAME.csv`` or ``NAME.npy``:

  | name | shape | ``.csv`` form |
  |---|---|---|
  | ``edge_index`` (required) | [2, E] integers, row 0 sources, row 1 targets (PyG) | E lines ``source,target`` (a header alone: no edges) |
  | ``edge_weight`` (optional) | [E] finite weights >= 0, in the order of the edges | E lines, one weight each |
  | ``x`` (required) | [N, F] numbers | N lines of F comma-separated numbers |
  | ``y`` (required for training) | [N] integer labels 0..C−1 | N lines, one label each |
  | ``train_mask``, ``val_mask``, ``test_mask`` (optional, all or none) | [N] or [N, K] booleans (K splits) | N lines of 0/1 (K columns) |

  A first ``.csv`` line that is not numeric is taken as a header and skipped. An ``x.csv`` whose
  first line is ``0,1,...,F-1`` is refused: that is the header pandas writes for unnamed columns
  (``to_csv(index=False)``), which would be read as a node; write it with ``header=False``.

A saved ``Data`` may carry ``edge_weight`` [E] (used by the graph operators); ``edge_attr`` is
not used (a warning says so).

:func:`validate_graph_data` checks and converts any ``Data`` (whatever its origin) before work
starts; :func:`validate_split` checks a train/validation/test split against it. Every error
names the file or field and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from .splits import Split

FIELDS = ("edge_index", "x", "y")
MASKS = ("train_mask", "val_mask", "test_mask")
OPTIONAL = ("edge_weight", *MASKS)
SUFFIXES = (".npy", ".csv")


def load_graph(path: str | Path, *, dtype: torch.dtype = torch.float32, require_labels: bool = True) -> Data:
    """Read and validate a user graph from ``path`` (see the module docstring for the formats).

    Returns a ``Data`` with ``x`` [N, F] (``dtype``), ``edge_index`` [2, E] (long), ``y`` [N]
    (long), the masks when given (bool), ``name`` (the file or folder name), ``num_classes`` and
    ``source`` (the absolute path). ``require_labels=False`` (prediction) accepts a graph
    without ``y``.

    Raises:
        FileNotFoundError: ``path`` does not exist, or a required file is missing.
        ValueError / TypeError: a file cannot be parsed or its content is invalid (which file,
            what is wrong, how to fix it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist; pass a saved Data (.pt) or a folder with "
                                "edge_index, x and y as .csv or .npy files")
    if path.is_dir():
        data = _read_folder(path, require_labels)
    elif path.suffix in (".pt", ".pth"):
        data = _read_saved(path)
    else:
        raise ValueError(f"dataset path {path} is neither a folder nor a .pt/.pth file saved with torch.save")
    data = validate_graph_data(data, where=str(path), dtype=dtype, require_labels=require_labels)
    data.name = path.stem if path.is_file() else path.resolve().name
    data.source = {"kind": "file", "path": str(path.resolve())}
    return data


def _read_saved(path: Path) -> Data:
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    try:
        with torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a torch file
        raise ValueError(f"dataset file {path} could not be read by torch.load ({type(err).__name__}: "
                         f"{str(err).splitlines()[0].split('. ')[0][:200]}); save the graph with torch.save(Data(...), path)") from None
    if isinstance(loaded, dict):
        loaded = Data(**loaded)
    if not isinstance(loaded, Data):
        raise TypeError(f"dataset file {path} holds a {type(loaded).__name__}, not a torch_geometric Data or a dict "
                        "with x, edge_index and y")
    return loaded


def _read_folder(folder: Path, require_labels: bool) -> Data:
    tensors: dict[str, torch.Tensor] = {}
    required = FIELDS if require_labels else ("edge_index", "x")
    for name in FIELDS + OPTIONAL:
        found = [folder / f"{name}{suffix}" for suffix in SUFFIXES if (folder / f"{name}{suffix}").is_file()]
        if len(found) > 1:
            raise ValueError(f"dataset folder {folder} holds both {found[0].name} and {found[1].name}; keep one")
        if not found:
            if name in required:
                raise FileNotFoundError(f"dataset folder {folder} has no {name}.csv or {name}.npy (required: "
                                        f"{', '.join(FIELDS)}; optional: {', '.join(OPTIONAL)})")
            continue
        path = found[0]
        value = _read_array(path)
        if name == "x" and path.suffix == ".csv" and _pandas_header(path):
            raise ValueError(f"{path}: its first line {_first_csv_line(path)!r} looks like the column header pandas writes "
                             "for unnamed columns (to_csv(index=False)) and would be read as a node; write the file with "
                             "to_csv(path, index=False, header=False), or name the columns")
        if name == "edge_index" and path.suffix == ".csv":
            if value.size == 0:
                value = value.reshape(0, 2)  # a header alone: a graph without edges
            if value.ndim != 2 or value.shape[1] != 2:
                width = value.shape[1] if value.ndim == 2 else 1
                raise ValueError(f"{path} has {width} column(s) per line, but must have two (source,target)"
                                 + ("; put edge weights in edge_weight.csv (one per line, in the order of the edges)"
                                    if width == 3 else ""))
            value = value.T
        elif name not in ("edge_index", "x") and value.ndim == 2 and value.shape[1] <= 1:
            value = value.reshape(value.shape[0])  # a one-column file of labels, weights or one split's mask
        if name in ("edge_index", "y"):
            value = _integers(value, path)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
    given = [m for m in MASKS if m in tensors]
    if given and len(given) != len(MASKS):
        raise ValueError(f"dataset folder {folder} has {', '.join(given)} but not "
                         f"{', '.join(m for m in MASKS if m not in given)}: give all three masks or none "
                         "(then random splits are drawn)")
    return Data(**tensors, num_nodes=int(tensors["x"].shape[0]))


def _read_array(path: Path) -> np.ndarray:
    """The numbers in ``path`` (.npy or .csv)."""
    try:
        value = np.load(path, allow_pickle=False) if path.suffix == ".npy" else _read_csv(path)
    except ValueError as err:
        raise ValueError(f"{path} could not be parsed: {err}") from None
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise TypeError(f"{path} must hold numbers, got dtype {value.dtype}")
    return value


def _integers(value: np.ndarray, path: Path) -> np.ndarray:
    """``value`` as int64 when it holds integer values (node indices or class labels)."""
    if np.issubdtype(value.dtype, np.floating):
        if not np.all(np.isfinite(value)) or not np.all(value == np.round(value)):
            raise ValueError(f"{path} must hold integers (node indices or class labels), found non-integer values")
        value = value.astype(np.int64)
    return value


def _first_csv_line(path: Path) -> str:
    with path.open() as handle:
        return next((line.strip() for line in handle if line.strip()), "")


def _pandas_header(path: Path) -> bool:
    """Whether the first line of ``path`` is ``0,1,...,F-1`` (F >= 2): pandas' header for unnamed columns."""
    cells = [cell.strip() for cell in _first_csv_line(path).split(",")]
    return len(cells) >= 2 and cells == [str(i) for i in range(len(cells))]


def _read_csv(path: Path) -> np.ndarray:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines and not _is_numeric(lines[0]):
        lines = lines[1:]  # a header
    rows = [[float(cell) for cell in line.split(",")] for line in lines]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"lines have different numbers of columns {sorted(widths)}")
    return np.array(rows, dtype=np.float64).reshape(len(rows), widths.pop() if widths else 0)


def _is_numeric(line: str) -> bool:
    try:
        [float(cell) for cell in line.split(",")]
    except ValueError:
        return False
    return True


def validate_graph_data(data: object, *, where: str = "data", dtype: torch.dtype | None = None,
                        require_labels: bool = True) -> Data:
    """Check a node-classification graph and return a converted copy.

    Requirements: ``x`` a finite [N, F] numeric matrix (converted to ``dtype``, default: float32
    unless already floating), ``edge_index`` [2, E] integers in [0, N), optional ``edge_weight``
    [E] finite and >= 0 (kept, converted like ``x``), ``y`` [N] integer labels 0..C−1 (optional
    with ``require_labels=False``), optional masks [N] or [N, K] of booleans (or 0/1), all of one
    shape. ``edge_attr`` is dropped with a warning (no model reads it). The result carries
    ``num_classes`` (when labelled), ``name`` and ``source``.

    Raises:
        TypeError / ValueError: naming ``where``, the field and the fix.
    """
    if not isinstance(data, Data):
        raise TypeError(f"{where} must be a torch_geometric.data.Data with x, edge_index and y, got {type(data).__name__}")
    for name in FIELDS:
        if name == "y" and not require_labels and getattr(data, "y", None) is None:
            continue
        if getattr(data, name, None) is None:
            raise ValueError(f"{where} has no {name}: a node-classification graph needs x [N, F], edge_index [2, E] "
                             "and y [N]")
        if not isinstance(data[name], torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(data[name]).__name__}")
    x, edge_index, y = data.x, data.edge_index, data.y
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{where}: x must be a [N, F] feature matrix with N, F >= 1, got shape {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{where}: x must hold real numbers, got {x.dtype}")
    n = x.shape[0]
    target = dtype if dtype is not None else (x.dtype if x.is_floating_point() else torch.float32)
    x = x.to(target)
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0])
        raise ValueError(f"{where}: x holds NaN or Inf (first at node {bad}); impute or drop those features first")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{where}: edge_index must have shape [2, E] (row 0 sources, row 1 targets), got "
                         f"{tuple(edge_index.shape)}; an [E, 2] edge list needs .t()")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise TypeError(f"{where}: edge_index must hold integer node indices, got {edge_index.dtype}; use .long()")
    edge_index = edge_index.long()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise ValueError(f"{where}: edge_index holds node indices outside [0, N) = [0, {n}) (min {int(edge_index.min())}, "
                         f"max {int(edge_index.max())}); N is the number of rows of x")
    out = Data(x=x, edge_index=edge_index, num_nodes=n)
    if getattr(data, "edge_weight", None) is not None:
        out.edge_weight = _edge_weight(data.edge_weight, edge_index.shape[1], where, x.dtype)
    if getattr(data, "edge_attr", None) is not None:
        warnings.warn(f"{where}: edge_attr is not used (no model reads edge features); to weight the edges give "
                      "edge_weight [E] instead", UserWarning, stacklevel=2)
    if y is not None:
        out.y = _labels(y, n, where)
        out.num_classes = int(out.y.max()) + 1
    for mask in MASKS:
        value = getattr(data, mask, None)
        if value is not None:
            out[mask] = _mask(value, n, f"{where}: {mask}")
    shapes = {mask: tuple(out[mask].shape) for mask in MASKS if getattr(out, mask, None) is not None}
    if len(set(shapes.values())) > 1:
        shown = ", ".join(f"{mask} {list(shape)}" for mask, shape in shapes.items())
        raise ValueError(f"{where}: the masks have different shapes ({shown}); give all of them as [N] (one split) "
                         "or all as [N, K] (K splits)")
    out.name = getattr(data, "name", None) or "data"
    if getattr(data, "source", None) is not None:
        out.source = data.source
    return out


def _edge_weight(weight: object, num_edges: int, where: str, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.is_complex() or weight.dtype == torch.bool:
        raise TypeError(f"{where}: edge_weight must be a tensor of real numbers [E], got "
                        f"{weight.dtype if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    if weight.dim() == 2 and weight.shape[1] == 1:
        weight = weight.view(-1)
    if weight.shape != (num_edges,):
        raise ValueError(f"{where}: edge_weight must hold one weight per edge, shape [E] = [{num_edges}] (the columns of "
                         f"edge_index), got {tuple(weight.shape)}")
    weight = weight.to(dtype)
    if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        edge = int((~torch.isfinite(weight) | (weight < 0)).nonzero()[0])
        raise ValueError(f"{where}: edge_weight must be finite and >= 0, but edge {edge} has weight {float(weight[edge])}; "
                         "fix or drop that edge")
    return weight


def _labels(y: torch.Tensor, n: int, where: str) -> torch.Tensor:
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.view(-1)
    if y.shape != (n,):
        raise ValueError(f"{where}: y must hold one label per node, shape [N] = [{n}], got {tuple(y.shape)}")
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise ValueError(f"{where}: y must hold integer class labels 0..C-1, found non-integer values "
                             "(this is a classification task; regression targets are not supported)")
    elif y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{where}: y must hold integer class labels, got {y.dtype}")
    y = y.long()
    if int(y.min()) < 0:
        node = int((y < 0).nonzero()[0])
        raise ValueError(f"{where}: y holds the label {int(y[node])} at node {node}: labels must be 0..C-1. Give "
                         "unlabelled nodes any valid label and leave them out of the split masks")
    return y


def _mask(mask: object, n: int, where: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{where} must be a tensor of booleans, got {type(mask).__name__}")
    if mask.dim() not in (1, 2) or mask.shape[0] != n:
        raise ValueError(f"{where} must have shape [N] or [N, K] with N = {n}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{where} must hold booleans or 0/1")
        mask = mask != 0
    return mask


def validate_split(split: object, data: Data, *, where: str = "split") -> None:
    """Check that ``split`` fits ``data``: non-empty, in-range, duplicate-free and disjoint index
    sets. Warns (``UserWarning``) when a class has no training node.

    Raises:
        TypeError / ValueError: naming the node set and the fix.
    """
    if not isinstance(split, Split):
        raise TypeError(f"{where} must be a diffusion_pde.data.Split, got {type(split).__name__}")
    n = data.num_nodes
    sets = {"train": split.train, "val": split.val, "test": split.test}
    for part, index in sets.items():
        if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
            raise TypeError(f"{where}: {part} must be a 1-D tensor of node indices (torch.long)")
        if index.numel() == 0:
            raise ValueError(f"{where}: {part} is empty: training needs training nodes, the best epoch is chosen on the "
                             "validation nodes and reported on the test nodes; give each set at least one node")
        if int(index.min()) < 0 or int(index.max()) >= n:
            raise ValueError(f"{where}: {part} holds node indices outside [0, {n})")
        if index.unique().numel() != index.numel():
            raise ValueError(f"{where}: {part} lists a node more than once")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        common = np.intersect1d(sets[a].cpu().numpy(), sets[b].cpu().numpy())
        if common.size:
            raise ValueError(f"{where}: {a} and {b} share {common.size} node(s) (e.g. node {int(common[0])}); "
                             "the sets must be disjoint")
    missing = sorted(set(range(int(data.y.max()) + 1)) - set(data.y[split.train.cpu()].tolist()))
    if missing:
        warnings.warn(f"{where}: class(es) {missing} have no training node, so the model never sees them labelled",
                      UserWarning, stacklevel=2)
