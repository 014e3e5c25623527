r"""Spatial-temporal signals: graphs whose nodes carry a time series, and the forecasting windows
cut from them.

A :class:`TemporalSignal` holds the values ``values`` [T, N] of N nodes at T time steps and its
graph: one graph for all steps (static) or one per step (dynamic). :func:`make_windows` turns it
into the samples of one-step-ahead forecasting with ``lags`` inputs, and :func:`temporal_split`
cuts them in time into training, validation and test windows.

The built-in datasets (:data:`TEMPORAL_DATASETS`) are read from the JSON files of PyTorch
Geometric Temporal (the files its loaders download; the library itself is not needed), laid out
as ``<root>/SpatioTemporal/<file>`` (the layout of ``../shared/data``):

* ``chickenpox`` (``chickenpox.json``): 521 weeks × 20 Hungarian counties, a static graph of 102
  directed unweighted edges, values ``FX`` (weekly cases, z-scored per county as stored), 4 lags.
* ``england-covid`` (``england_covid.json``): 61 days × 129 English regions, a weighted mobility
  graph per day (with self-loops), values ``y`` (daily cases, z-scored per region here), 8 lags.
* ``pedalme`` (``pedalme_london.json``): 35 weeks × 15 London localities, a static graph of 225
  weighted edges, values ``X`` (weekly deliveries, as stored), 4 lags.

The lags are the DIFFormer paper's defaults. England COVID's raw counts are z-scored per region
over all 61 days, (y − mean) / (std + 1e-10), as PyTorch Geometric Temporal's loader does (and so
the DIFFormer paper); Chickenpox is stored already z-scored over its whole series. Both statistics
therefore include the test period, a convention of these benchmarks that we keep so that MSEs
compare with published ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

TEMPORAL_FOLDER = "SpatioTemporal"
_UPSTREAM = "https://raw.githubusercontent.com/benedekrozemberczki/pytorch_geometric_temporal/master/dataset/"


@dataclass(frozen=True)
class TemporalSpec:
    """A built-in temporal dataset: its file under ``<root>/SpatioTemporal``, the key of its
    values, whether the graph changes per time step, the lags used in the DIFFormer paper, and
    whether the loader z-scores the values per node."""

    file: str
    values_key: str
    dynamic: bool
    lags: int
    standardise: bool = False


TEMPORAL_DATASETS: dict[str, TemporalSpec] = {
    "chickenpox": TemporalSpec("chickenpox.json", "FX", dynamic=False, lags=4),
    "england-covid": TemporalSpec("england_covid.json", "y", dynamic=True, lags=8, standardise=True),
    "pedalme": TemporalSpec("pedalme_london.json", "X", dynamic=False, lags=4),
}


def is_temporal(dataset: object) -> bool:
    """Whether ``dataset`` names a built-in temporal dataset."""
    return isinstance(dataset, str) and dataset in TEMPORAL_DATASETS


@dataclass
class TemporalSignal:
    """Values ``values`` [T, N] (float) on a graph: ``graphs`` holds one PyG ``Data``
    (``edge_index`` [2, E], optional ``edge_weight`` [E], ``num_nodes`` N) for a static graph,
    or T of them, graph t for time step t. ``source`` identifies the dataset (like
    :func:`~diffusion_pde.data.dataset_source`); ``node_names`` names the nodes when known."""

    name: str
    values: torch.Tensor
    graphs: list[Data]
    source: dict[str, Any] = field(default_factory=dict)
    node_names: list[str] | None = None

    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.values.shape[1])

    @property
    def dynamic(self) -> bool:
        """Whether the graph changes from one time step to the next (one graph per step)."""
        return len(self.graphs) > 1


@dataclass
class Windows:
    """The samples of one-step-ahead forecasting with ``lags`` inputs, W = T − lags of them.

    Window w: ``x[w]`` [N, lags] holds the values at steps w, ..., w + lags − 1 (oldest first)
    and ``y[w]`` [N] the value at step ``times[w]`` = w + lags, to be predicted. ``graphs``: one
    ``Data`` (static) or W, window w's graph being that of step w + lags − 1, the newest one
    observed when the forecast is made."""

    x: torch.Tensor
    y: torch.Tensor
    times: torch.Tensor
    graphs: list[Data]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def dynamic(self) -> bool:
        return len(self.graphs) > 1

    def graph(self, w: int) -> Data:
        """The graph window ``w`` is forecast on."""
        return self.graphs[w] if self.dynamic else self.graphs[0]

    def to(self, device: torch.device | str) -> "Windows":
        return Windows(self.x.to(device), self.y.to(device), self.times, [g.to(device) for g in self.graphs])


@dataclass(frozen=True)
class TemporalSplit:
    """Consecutive windows for training, validation and test, in time order (``range`` objects
    of window indices)."""

    train: range
    val: range
    test: range

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def check_signal(signal: TemporalSignal) -> TemporalSignal:
    """``signal`` checked (a TypeError/ValueError naming what is wrong and the fix): ``values`` a
    finite floating [T, N] tensor, one graph or T graphs, each a ``Data`` whose ``edge_index``
    [2, E] holds node indices in 0..N−1 and whose optional ``edge_weight`` has E finite entries."""
    if not isinstance(signal, TemporalSignal):
        raise TypeError(f"dataset must be a built-in temporal dataset's name or a TemporalSignal, got "
                        f"{type(signal).__name__}")
    values = signal.values
    if not isinstance(values, torch.Tensor) or values.dim() != 2 or not values.is_floating_point() or min(values.shape) < 1:
        raise ValueError("signal.values must be a floating [time steps, nodes] tensor, got "
                         f"{tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("signal.values holds non-finite values (NaN or Inf): clean them (e.g. torch.nan_to_num) first")
    steps, n = values.shape
    if len(signal.graphs) not in (1, steps):
        raise ValueError(f"signal.graphs must hold one graph (static) or one per time step ({steps}), got "
                         f"{len(signal.graphs)}")
    for t, graph in enumerate(signal.graphs):
        edge_index = getattr(graph, "edge_index", None)
        if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2 \
                or edge_index.is_floating_point():
            raise ValueError(f"signal.graphs[{t}] must be a Data with an integer edge_index of shape [2, E]")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"signal.graphs[{t}].edge_index holds node indices outside 0..{n - 1} (the signal has {n} "
                             "nodes)")
        weight = getattr(graph, "edge_weight", None)
        if weight is not None and (weight.shape != (edge_index.shape[1],) or not bool(torch.isfinite(weight).all())):
            raise ValueError(f"signal.graphs[{t}].edge_weight must hold one finite weight per edge "
                             f"({edge_index.shape[1]}), got shape {tuple(weight.shape)}")
    return signal


def make_windows(signal: TemporalSignal, lags: int) -> Windows:
    """The forecasting windows of ``signal`` with ``lags`` previous values as each node's
    features (see :class:`Windows`). Raises ValueError unless 1 <= lags <= T − 1."""
    if isinstance(lags, bool) or not isinstance(lags, int) or lags < 1:
        raise ValueError(f"lags must be a positive int (previous values per node), got {lags!r}")
    if lags >= signal.num_steps:
        raise ValueError(f"lags={lags} leaves no window to forecast: dataset {signal.name!r} has {signal.num_steps} time "
                         f"steps; choose lags <= {signal.num_steps - 1}")
    count = signal.num_steps - lags
    x = signal.values.unfold(0, lags, 1)[:count]          # [W, N, lags]: x[w, i, k] = values[w + k, i]
    graphs = signal.graphs[lags - 1:lags - 1 + count] if signal.dynamic else signal.graphs
    return Windows(x.contiguous(), signal.values[lags:].clone(), torch.arange(lags, signal.num_steps), list(graphs))


def temporal_split(num_windows: int, train: float = 0.2, val: float = 0.2) -> TemporalSplit:
    """The first ⌊train·W⌋ windows train, the next ⌊val/(1 − train) · (W − n_train)⌋ validate
    and the rest test: PyTorch Geometric Temporal's ``temporal_signal_split`` applied twice, as
    in the DIFFormer paper (20% / 20% / 60%). Raises ValueError when a part would be empty."""
    for name, value in (("train", train), ("val", val)):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise ValueError(f"{name} must be a fraction in (0, 1), got {value!r}")
    if train + val >= 1:
        raise ValueError(f"train + val = {train + val:g} leaves no test windows; make their sum < 1")
    n_train = int(train * num_windows)
    n_val = int(val / (1 - train) * (num_windows - n_train))
    if min(n_train, n_val, num_windows - n_train - n_val) < 1:
        raise ValueError(f"{num_windows} windows are too few to split {train:g} / {val:g} / {1 - train - val:g} in time "
                         f"(train {n_train}, validation {n_val}, test {num_windows - n_train - n_val}); use fewer lags "
                         "or a longer series")
    return TemporalSplit(range(n_train), range(n_train, n_train + n_val), range(n_train + n_val, num_windows))


# ---- reading the JSON files ---------------------------------------------------------------------

def temporal_file(name: str, root: str | Path | None, cache: str | Path | None = None) -> Path:
    """The JSON file of built-in temporal dataset ``name``: ``<root>/SpatioTemporal/<file>``
    (only read), or without ``root`` the copy in the cache (``<cache>/SpatioTemporal/<file>``,
    downloaded from PyTorch Geometric Temporal's repository the first time). A missing file
    raises FileNotFoundError naming it and the fix; nothing is downloaded when ``root`` is given."""
    from .datasets import default_cache

    spec = TEMPORAL_DATASETS[name]
    if root is not None:
        path = Path(root) / TEMPORAL_FOLDER / spec.file
        if not path.is_file():
            raise FileNotFoundError(f"dataset {name!r}: --root {root} lacks {path}; nothing is downloaded when --root is "
                                    f"given: put {spec.file} (from PyTorch Geometric Temporal's dataset/ folder) in "
                                    f"{Path(root) / TEMPORAL_FOLDER}, or omit --root to download it")
        return path
    folder = (Path(cache) if cache is not None else default_cache() / "datasets") / TEMPORAL_FOLDER
    path = folder / spec.file
    if not path.is_file():
        from torch_geometric.data import download_url
        try:
            download_url(_UPSTREAM + spec.file, str(folder), log=False)
        except Exception as err:  # network or server errors of any kind
            raise FileNotFoundError(
                f"dataset {name!r} could not be downloaded ({type(err).__name__}: {str(err)[:120]}); pass --root DIR "
                f"holding {TEMPORAL_FOLDER}/{spec.file} (e.g. ../shared/data)") from err
    return path


def _array(raw: Any, key: str, path: Path, dtype: torch.dtype) -> torch.Tensor:
    """``raw`` (nested lists from JSON) as a tensor, or a ValueError naming ``key`` in ``path``."""
    try:
        return torch.tensor(raw, dtype=dtype)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise ValueError(f"{path}: {key!r} is not a rectangular array of numbers ({err}); the file is damaged: copy "
                         "it again") from err


def _edges(raw: Any, key: str, path: Path, num_nodes: int) -> torch.Tensor:
    """An [E, 2] JSON edge list as a [2, E] long ``edge_index``, checked to lie in 0..N−1."""
    edges = _array(raw, key, path, torch.float64)
    if edges.dim() != 2 or edges.shape[1] != 2 or (edges.numel() and not bool((edges == edges.round()).all())):
        raise ValueError(f"{path}: {key!r} must be a list of [source, target] pairs of node indices, got shape "
                         f"{tuple(edges.shape)}; the file is damaged: copy it again")
    edge_index = edges.long().t().contiguous()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"{path}: {key!r} holds node indices outside 0..{num_nodes - 1} (the signal has {num_nodes} "
                         "nodes); the file is damaged: copy it again")
    return edge_index


def _weights(raw: Any, key: str, path: Path, num_edges: int) -> torch.Tensor:
    weights = _array(raw, key, path, torch.float64)
    if weights.shape != (num_edges,) or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{path}: {key!r} must hold one finite weight per edge ({num_edges}), got shape "
                         f"{tuple(weights.shape)}; the file is damaged: copy it again")
    return weights.float()


def _key(content: dict[str, Any], key: str, path: Path) -> Any:
    if key not in content:
        raise ValueError(f"{path} has no {key!r} entry (it holds {', '.join(map(repr, content)) or 'nothing'}); it is "
                         "not the file of this dataset, or it is damaged: copy it again")
    return content[key]


def read_temporal_json(path: str | Path, spec: TemporalSpec) -> tuple[torch.Tensor, list[Data], list[str] | None]:
    """(values [T, N] float32, graphs, node names) read from a PyTorch Geometric Temporal JSON
    file laid out as ``spec`` says. Every problem raises a ValueError naming the file and the
    entry (not valid JSON, a missing entry, a ragged or non-finite array, edges out of range)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it is truncated or damaged: copy it again") from err
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold a JSON object with the entry {spec.values_key!r}; copy it again")
    values = _array(_key(content, spec.values_key, path), spec.values_key, path, torch.float64)
    if values.dim() != 2 or min(values.shape) < 1:
        raise ValueError(f"{path}: {spec.values_key!r} must be a [time steps, nodes] array, got shape "
                         f"{tuple(values.shape)}; the file is damaged: copy it again")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{path}: {spec.values_key!r} holds non-finite values (NaN or Inf); the file is damaged: copy "
                         "it again")
    steps, n = values.shape
    if spec.dynamic:
        mapping = _key(content, "edge_mapping", path)
        graphs = []
        for t in range(steps):
            where = f"edge_mapping[...][{str(t)!r}]"
            try:
                edge_list, weight_list = mapping["edge_index"][str(t)], mapping["edge_weight"][str(t)]
            except (KeyError, TypeError) as err:
                raise ValueError(f"{path}: {where} is missing: a graph per time step (edge_index and edge_weight for "
                                 f"each of the {steps} steps) is expected; copy the file again") from err
            edge_index = _edges(edge_list, f"edge_mapping['edge_index'][{str(t)!r}]", path, n)
            weight = _weights(weight_list, f"edge_mapping['edge_weight'][{str(t)!r}]", path, edge_index.shape[1])
            graphs.append(Data(edge_index=edge_index, edge_weight=weight, num_nodes=n))
    else:
        edge_index = _edges(_key(content, "edges", path), "edges", path, n)
        weight = _weights(content["weights"], "weights", path, edge_index.shape[1]) if "weights" in content else None
        graphs = [Data(edge_index=edge_index, edge_weight=weight, num_nodes=n)]
    if spec.standardise:
        values = (values - values.mean(dim=0)) / (values.std(dim=0, unbiased=False) + 1e-10)
    ids = content.get("node_ids")
    names = sorted(ids, key=ids.get) if isinstance(ids, dict) and len(ids) == n else None
    return values.float(), graphs, names


def load_temporal(name: str, *, root: str | Path | None = None, cache: str | Path | None = None) -> TemporalSignal:
    """Built-in temporal dataset ``name`` (:data:`TEMPORAL_DATASETS`) from ``<root>/SpatioTemporal``
    (or the cache, see :func:`temporal_file`). Raises ValueError for an unknown name or a damaged
    file, FileNotFoundError for a missing one (naming it and the fix)."""
    if name not in TEMPORAL_DATASETS:
        raise ValueError(f"unknown temporal dataset {name!r}; valid: {', '.join(TEMPORAL_DATASETS)}")
    if root is not None and not Path(root).is_dir():
        raise FileNotFoundError(f"root (--root) {root} is not a folder; give the folder holding {TEMPORAL_FOLDER}/ "
                                "(e.g. ../shared/data)")
    path = temporal_file(name, root, cache)
    values, graphs, names = read_temporal_json(path, TEMPORAL_DATASETS[name])
    source = {"kind": "builtin", "name": name, "root": str(Path(root).resolve()) if root is not None else None}
    return TemporalSignal(name, values, graphs, source, names)

