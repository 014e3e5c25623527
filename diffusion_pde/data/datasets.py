"""Node-classification datasets through PyG's dataset classes, prepared as in the DIFFormer paper.

Preparation: features row-normalised (each row divided by its sum; all-zero rows stay zero) for
the bag-of-words datasets, kept as given for the heterophilous-graph ones (real-valued features);
the graph made undirected and coalesced (duplicate edges merged). Cora comes from the copy
embedded in the package (offline); every other dataset is read from ``root``, a folder laid out
as PyG expects (``<root>/Planetoid/CiteSeer/raw/...``, ``<root>/WikipediaNetwork/chameleon/
geom_gcn/raw/...``; the layout of ``../shared/data``). ``root`` is only read: the dataset's files
are copied to a cache folder first and PyG processes them there. Without raw files PyG downloads
them into the cache (needs network).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from ._embedded import load_cora


def default_cache() -> Path:
    """``$DIFFUSION_PDE_CACHE``, else ``$XDG_CACHE_HOME/diffusion-pde``, else ``~/.cache/diffusion-pde``."""
    if os.environ.get("DIFFUSION_PDE_CACHE"):
        return Path(os.environ["DIFFUSION_PDE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion-pde"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives under ``root`` and how PyG loads it from a (cache) root."""

    folder: str                                  # relative to root, e.g. "Planetoid/CiteSeer"
    load: Callable[[Path, bool], Data]           # (cache root, geom-gcn splits?) -> PyG Data
    row_normalise: bool
    splits: tuple[str, ...]                      # split kinds this dataset offers


def _planetoid(name: str) -> Callable[[Path, bool], Data]:
    def load(cache: Path, geom_gcn: bool) -> Data:
        from torch_geometric.datasets import Planetoid
        return Planetoid(str(cache / "Planetoid"), name, split="geom-gcn" if geom_gcn else "public")[0]
    return load


def _wikipedia(name: str) -> Callable[[Path, bool], Data]:
    def load(cache: Path, geom_gcn: bool) -> Data:
        from torch_geometric.datasets import WikipediaNetwork
        return WikipediaNetwork(str(cache / "WikipediaNetwork"), name, geom_gcn_preprocess=True)[0]
    return load


def _webkb(name: str) -> Callable[[Path, bool], Data]:
    def load(cache: Path, geom_gcn: bool) -> Data:
        from torch_geometric.datasets import WebKB
        return WebKB(str(cache / "WebKB"), name)[0]
    return load


def _actor(cache: Path, geom_gcn: bool) -> Data:
    from torch_geometric.datasets import Actor
    return Actor(str(cache / "Actor"))[0]


def _heterophilous(name: str) -> Callable[[Path, bool], Data]:
    def load(cache: Path, geom_gcn: bool) -> Data:
        from torch_geometric.datasets import HeterophilousGraphDataset
        return HeterophilousGraphDataset(str(cache / "HeterophilousGraphDataset"), name)[0]
    return load


PLANETOID_SPLITS = ("random", "public", "geom-gcn")
GEOM_SPLITS = ("geom-gcn", "random")
DATASETS: dict[str, DatasetSpec] = {
    "cora": DatasetSpec("Planetoid/Cora", _planetoid("Cora"), True, PLANETOID_SPLITS),
    "citeseer": DatasetSpec("Planetoid/CiteSeer", _planetoid("CiteSeer"), True, PLANETOID_SPLITS),
    "pubmed": DatasetSpec("Planetoid/PubMed", _planetoid("PubMed"), True, PLANETOID_SPLITS),
    "chameleon": DatasetSpec("WikipediaNetwork/chameleon", _wikipedia("chameleon"), True, GEOM_SPLITS),
    "squirrel": DatasetSpec("WikipediaNetwork/squirrel", _wikipedia("squirrel"), True, GEOM_SPLITS),
    "actor": DatasetSpec("Actor", _actor, True, GEOM_SPLITS),
    "cornell": DatasetSpec("WebKB/cornell", _webkb("Cornell"), True, GEOM_SPLITS),
    "texas": DatasetSpec("WebKB/texas", _webkb("Texas"), True, GEOM_SPLITS),
    "wisconsin": DatasetSpec("WebKB/wisconsin", _webkb("Wisconsin"), True, GEOM_SPLITS),
    "minesweeper": DatasetSpec("HeterophilousGraphDataset/minesweeper", _heterophilous("Minesweeper"), False,
                               ("fixed", "random")),
    "tolokers": DatasetSpec("HeterophilousGraphDataset/tolokers", _heterophilous("Tolokers"), False,
                            ("fixed", "random")),
}


def available_datasets() -> tuple[str, ...]:
    return tuple(DATASETS)


def _stage(spec: DatasetSpec, root: Path | None, cache: Path) -> None:
    """Copy the dataset's raw files from ``root`` into ``cache`` (never writing under root)."""
    if root is None:
        return
    source = root / spec.folder
    if not source.is_dir():
        raise FileNotFoundError(
            f"no folder {source}: root must hold the PyG layout <root>/{spec.folder}/... (like ../shared/data); "
            "omit --root to download into the cache"
        )
    target = cache / spec.folder
    for raw in sorted(p for p in source.rglob("raw") if p.is_dir()):
        destination = target / raw.relative_to(source)
        if not destination.exists():
            shutil.copytree(raw, destination.with_name(destination.name + ".partial"), dirs_exist_ok=True)
            os.replace(destination.with_name(destination.name + ".partial"), destination)


def row_normalise(x: torch.Tensor) -> torch.Tensor:
    """x_i / Σ_j x_ij per row; rows that sum to 0 stay 0 (nothing is divided by zero)."""
    total = x.sum(dim=1, keepdim=True)
    return torch.where(total != 0, x / torch.where(total != 0, total, torch.ones_like(total)), torch.zeros_like(x))


def load_dataset(name: str, *, root: str | Path | None = None, cache: str | Path | None = None,
                 geom_gcn: bool = False, dtype: torch.dtype = torch.float32) -> Data:
    """Load and prepare dataset ``name`` (see :data:`DATASETS`) as a PyG ``Data``.

    ``geom_gcn=True`` also loads the 10 geom-gcn split masks (``[N, 10]``) for the Planetoid
    datasets; the other geom-gcn datasets always carry theirs. Returns ``Data`` with ``x``
    (prepared features, ``dtype``), undirected ``edge_index``, ``y``, the masks PyG provides, and
    ``name`` / ``num_classes``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if name == "cora" and not geom_gcn:
        raw = load_cora(dtype=torch.float64)
    else:
        cache_root = Path(cache) if cache is not None else default_cache() / "datasets"
        _stage(spec, Path(root) if root is not None else None, cache_root)
        raw = spec.load(cache_root, geom_gcn)
    x = raw.x.to(torch.float64)
    if spec.row_normalise:
        x = row_normalise(x)
    data = Data(x=x.to(dtype), edge_index=to_undirected(raw.edge_index, num_nodes=raw.num_nodes), y=raw.y.long(),
                num_nodes=raw.num_nodes)
    for mask in ("train_mask", "val_mask", "test_mask"):
        if getattr(raw, mask, None) is not None:
            data[mask] = raw[mask].bool()
    data.name = name
    data.num_classes = int(data.y.max()) + 1
    return data
