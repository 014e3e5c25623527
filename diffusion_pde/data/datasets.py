"""Node-classification datasets through PyG's dataset classes, prepared as in the DIFFormer paper,
plus the large graphs of :mod:`.large` (OGB's ogbn-*, LINKX's Pokec), the generated
``synthetic`` benchmark of :mod:`.synthetic` and the datasets without a graph of :mod:`.instances`
(digits, fashion-mnist, 20newsgroups: instances as nodes, no edges or a kNN graph).

Preparation: features row-normalised (each row divided by its sum; all-zero rows stay zero) for
the bag-of-words datasets, kept as given for the heterophilous-graph ones (real-valued features);
the graph made undirected and coalesced (duplicate edges merged). Cora comes from the copy
embedded in the package (offline); every other dataset is read from ``root``, a folder laid out
as PyG expects (``<root>/Planetoid/CiteSeer/raw/...``, ``<root>/WikipediaNetwork/chameleon/
geom_gcn/raw/...``; the layout of ``../shared/data``). ``root`` is only read: the dataset's files
are copied to a cache folder first and PyG processes them there. Without ``root`` PyG downloads
the raw files into the cache (needs network); with ``root``, or for the embedded Cora, nothing is
ever downloaded: a missing file is an error naming it.

Every loaded graph carries ``source``, what identifies it for a checkpoint (:func:`dataset_source`):
a built-in dataset's name and root (and, for ``synthetic``, the generator's settings), a user
file's path, or nothing for a ``Data`` made in Python; ``"largest_component": True`` when it was
restricted to its largest connected component (:func:`~diffusion_pde.data.largest_component`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from ._embedded import load_cora
from .instances import INSTANCE_DATASETS, INSTANCE_OPTIONS, load_instances
from .large import load_ogb, load_pokec
from .splits import PAPER_SIZES, random_sizes
from .synthetic import SYNTHETIC_DEFAULTS, synthetic_graph


def default_cache() -> Path:
    """``$DIFFUSION_PDE_CACHE``, else ``$XDG_CACHE_HOME/diffusion-pde``, else ``~/.cache/diffusion-pde``."""
    if os.environ.get("DIFFUSION_PDE_CACHE"):
        return Path(os.environ["DIFFUSION_PDE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion-pde"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives under ``root`` and which PyG dataset class reads it from a (cache)
    root, or the ``loader`` that reads (or generates) it: ``loader(root, cache, **options)`` gives a
    prepared ``Data`` (float32 features, undirected graph, labels, masks)."""

    folder: str                                                  # relative to root, e.g. "Planetoid/CiteSeer"
    source: Callable[[Path, bool], tuple[type, dict[str, Any]]] | None  # (cache root, geom-gcn?) -> (class, kwargs)
    row_normalise: bool
    splits: tuple[str, ...]                                      # split kinds this dataset offers; the first: default
    loader: Callable[..., Data] | None = None
    random_sizes: Mapping[str, int | float] | None = None       # a random split's default sizes (None: the paper's)
    multilabel: bool = False                                     # y is [N, tasks] of 0/1: not trainable here
    generated: bool = False                                      # made from options, not read from a root
    options: tuple[str, ...] = ()                                # the options its loader takes (besides a generator's)


def _planetoid(name: str) -> Callable[[Path, bool], tuple[type, dict[str, Any]]]:
    def source(cache: Path, geom_gcn: bool) -> tuple[type, dict[str, Any]]:
        from torch_geometric.datasets import Planetoid
        return Planetoid, {"root": str(cache / "Planetoid"), "name": name, "split": "geom-gcn" if geom_gcn else "public"}
    return source


def _wikipedia(name: str) -> Callable[[Path, bool], tuple[type, dict[str, Any]]]:
    def source(cache: Path, geom_gcn: bool) -> tuple[type, dict[str, Any]]:
        from torch_geometric.datasets import WikipediaNetwork
        return WikipediaNetwork, {"root": str(cache / "WikipediaNetwork"), "name": name, "geom_gcn_preprocess": True}
    return source


def _webkb(name: str) -> Callable[[Path, bool], tuple[type, dict[str, Any]]]:
    def source(cache: Path, geom_gcn: bool) -> tuple[type, dict[str, Any]]:
        from torch_geometric.datasets import WebKB
        return WebKB, {"root": str(cache / "WebKB"), "name": name}
    return source


def _actor(cache: Path, geom_gcn: bool) -> tuple[type, dict[str, Any]]:
    from torch_geometric.datasets import Actor
    return Actor, {"root": str(cache / "Actor")}


def _heterophilous(name: str) -> Callable[[Path, bool], tuple[type, dict[str, Any]]]:
    def source(cache: Path, geom_gcn: bool) -> tuple[type, dict[str, Any]]:
        from torch_geometric.datasets import HeterophilousGraphDataset
        return HeterophilousGraphDataset, {"root": str(cache / "HeterophilousGraphDataset"), "name": name}
    return source


def _synthetic(root: Path | None, cache: Path, **options: Any) -> Data:
    unknown = sorted(set(options) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for the synthetic dataset; its options: "
                         f"{', '.join(SYNTHETIC_DEFAULTS)}")
    return synthetic_graph(**{**SYNTHETIC_DEFAULTS, **options})


PLANETOID_SPLITS = ("random", "public", "geom-gcn", "grand")
GEOM_SPLITS = ("geom-gcn", "random")
# Random splits of the large graphs: 50% of each class for training, then half of the rest each
# for validation and test (50/25/25, the LINKX/DIFFormer proportions for large graphs).
LARGE_SIZES = {"per_class": 0.5, "num_val": 0.5, "num_test": 0.5}
# Label rates of the datasets without a graph (the DIFFormer paper's image and text protocol): L
# training instances per class, 1,000 validation, every other instance tests (num_test None);
# digits (1,797 instances) validates on 300, so that 100 per class still leaves ~500 to test.
INSTANCE_SIZES = {"digits": {"per_class": 10, "num_val": 300, "num_test": None},
                  "fashion-mnist": {"per_class": 10, "num_val": 1000, "num_test": None},
                  "20newsgroups": {"per_class": 100, "num_val": 1000, "num_test": None}}
INSTANCE_FOLDERS = {"digits": "", "fashion-mnist": "FashionMNIST/raw", "20newsgroups": "20newsgroups"}
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
    "ogbn-arxiv": DatasetSpec("ogbn_arxiv", None, False, ("fixed", "random"), partial(load_ogb, "ogbn-arxiv"),
                              LARGE_SIZES),
    "ogbn-products": DatasetSpec("ogbn_products", None, False, ("fixed", "random"), partial(load_ogb, "ogbn-products"),
                                 LARGE_SIZES),
    "ogbn-proteins": DatasetSpec("ogbn_proteins", None, False, ("fixed",), partial(load_ogb, "ogbn-proteins"),
                                 multilabel=True),
    "pokec": DatasetSpec("pokec", None, False, ("fixed",), load_pokec),
    "synthetic": DatasetSpec("", None, False, ("random",), _synthetic, LARGE_SIZES, generated=True),
    **{name: DatasetSpec(INSTANCE_FOLDERS[name], None, False, ("random",), partial(load_instances, name),
                         INSTANCE_SIZES[name], options=tuple(INSTANCE_OPTIONS)) for name in INSTANCE_DATASETS},
}


def available_datasets() -> tuple[str, ...]:
    return tuple(DATASETS)


def _stage(spec: DatasetSpec, root: Path | None, cache: Path) -> None:
    """Copy the dataset's raw files from ``root`` into ``cache`` (never writing under root), each
    file that the cache lacks or holds with another size, atomically."""
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
        for file in sorted(f for f in raw.rglob("*") if f.is_file()):
            destination = target / file.relative_to(source)
            if not destination.exists() or destination.stat().st_size != file.stat().st_size:
                destination.parent.mkdir(parents=True, exist_ok=True)
                partial = destination.with_name(destination.name + ".partial")
                shutil.copyfile(file, partial)
                os.replace(partial, destination)  # a file is there complete or not at all


def _without_surprise_downloads(cls: type, name: str, root: Path | None, cache: Path) -> type:
    """``cls`` whose download, when raw files are missing, is an error naming them (with ``root``:
    no download is tried at all) instead of a network error from deep inside PyG."""

    class Guarded(cls):  # type: ignore[misc, valid-type]
        def download(self) -> None:
            missing = [Path(p) for p in self.raw_paths if not Path(p).exists()]
            if root is not None:
                shown = ", ".join(str(root / p.relative_to(cache)) for p in missing[:3])
                raise FileNotFoundError(
                    f"dataset {name!r}: --root {root} lacks {shown}{' ...' if len(missing) > 3 else ''}; nothing is "
                    "downloaded when --root is given: add the PyG raw files there, or omit --root to download")
            try:
                super().download()
            except Exception as err:  # network or server errors of any kind
                raise FileNotFoundError(
                    f"dataset {name!r} could not be downloaded ({type(err).__name__}: {str(err)[:120]}); pass "
                    "--root DIR holding its PyG raw files (e.g. ../shared/data)") from err

    Guarded.__name__ = Guarded.__qualname__ = cls.__name__
    return Guarded


def row_normalise(x: torch.Tensor) -> torch.Tensor:
    """x_i / Σ_j x_ij per row; rows that sum to 0 stay 0 (nothing is divided by zero)."""
    total = x.sum(dim=1, keepdim=True)
    return torch.where(total != 0, x / torch.where(total != 0, total, torch.ones_like(total)), torch.zeros_like(x))


def _foreign_options(options: list[str], dataset: str) -> str:
    """The error for ``options`` given to ``dataset`` (a quoted name, or what else it is), which
    takes none of them: the instance datasets' options (:data:`INSTANCE_OPTIONS`) first, else the
    synthetic generator's."""
    them = "it" if len(options) == 1 else "them"
    instance = [option for option in options if option in INSTANCE_OPTIONS]
    if instance:
        return (f"{', '.join(instance)} appl{'ies' if len(instance) == 1 else 'y'} to the datasets without a graph "
                f"({', '.join(INSTANCE_DATASETS)}); dataset {dataset} is read as it is: drop "
                f"{'it' if len(instance) == 1 else 'them'}")
    return (f"{', '.join(options)} set{'s' if len(options) == 1 else ''} the generator of the synthetic dataset; "
            f"dataset {dataset} is read as it is: drop {them}")


def load_dataset(name: str, *, root: str | Path | None = None, cache: str | Path | None = None,
                 geom_gcn: bool = False, dtype: torch.dtype = torch.float32, **options: Any) -> Data:
    """Load and prepare dataset ``name`` (see :data:`DATASETS`) as a PyG ``Data``.

    ``geom_gcn=True`` also loads the 10 geom-gcn split masks (``[N, 10]``) for the Planetoid
    datasets; the other geom-gcn datasets always carry theirs. Returns ``Data`` with ``x``
    (prepared features, ``dtype``), undirected ``edge_index``, ``y``, the masks the dataset
    provides, and ``name`` / ``num_classes`` / ``source``. Nothing is downloaded with ``root`` or
    for the embedded Cora (its geom-gcn splits need ``root``): a missing file raises
    FileNotFoundError. ``options`` are the generator settings of ``synthetic``
    (:func:`~diffusion_pde.data.synthetic_graph`; unset ones take :data:`SYNTHETIC_DEFAULTS`),
    which is generated, never read from ``root``, or the options of the datasets without a graph
    (``digits``, ``fashion-mnist``, ``20newsgroups``: ``num_instances``, ``pca``, ``knn``,
    ``knn_metric``; :mod:`~diffusion_pde.data.instances`); any other option is a ValueError.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    foreign = [option for option in options if option not in spec.options] if not spec.generated else []
    if foreign:
        raise ValueError(_foreign_options(foreign, repr(name)))
    if spec.generated and root is not None:
        raise ValueError(f"root (--root) is for the datasets read from files; dataset {name!r} is generated: drop --root")
    root_dir = Path(root) if root is not None else None
    if root_dir is not None and not root_dir.is_dir():
        raise FileNotFoundError(f"root (--root) {root_dir} is not a folder; give the folder holding the PyG raw files "
                                "(e.g. ../shared/data)")
    cache_root = Path(cache) if cache is not None else default_cache() / "datasets"
    if spec.loader is not None:
        data = spec.loader(root_dir, cache_root, **options)
        data.x = data.x.to(dtype)
    else:
        data = _load_pyg(name, spec, root_dir, cache_root, geom_gcn, dtype)
    data.name = name
    data.num_classes = int(data.y.max()) + 1
    if getattr(data, "source", None) is None:
        data.source = {"kind": "builtin", "name": name, "root": str(root_dir.resolve()) if root_dir is not None else None}
    return data


def _load_pyg(name: str, spec: DatasetSpec, root_dir: Path | None, cache_root: Path, geom_gcn: bool,
              dtype: torch.dtype) -> Data:
    if name == "cora" and not geom_gcn:
        raw = load_cora(dtype=torch.float64)
    elif name == "cora" and root_dir is None:
        raise FileNotFoundError("the embedded Cora holds the public split only, not the 10 geom-gcn splits, and nothing "
                                "is downloaded for it: pass --root DIR with Planetoid/Cora/geom-gcn/raw (e.g. "
                                "../shared/data), or use --split random or public")
    else:
        _stage(spec, root_dir, cache_root)
        cls, kwargs = spec.source(cache_root, geom_gcn)
        raw = _without_surprise_downloads(cls, name, root_dir, cache_root)(**kwargs)[0]
    x = raw.x.to(torch.float64)
    if spec.row_normalise:
        x = row_normalise(x)
    data = Data(x=x.to(dtype), edge_index=to_undirected(raw.edge_index, num_nodes=raw.num_nodes), y=raw.y.long(),
                num_nodes=raw.num_nodes)
    for mask in ("train_mask", "val_mask", "test_mask"):
        if getattr(raw, mask, None) is not None:
            data[mask] = raw[mask].bool()
    return data


def dataset_source(data: Data) -> dict[str, Any]:
    """What identifies ``data`` in a checkpoint, so that the run's dataset can be loaded again:
    ``{"kind": "builtin", "name", "root"}`` (for ``synthetic`` also ``"options"``, the generator's
    settings: ``load_dataset(name, root=root, **options)`` gives the same graph),
    ``{"kind": "file", "path"}`` or, for a ``Data`` made in Python, ``{"kind": "python", "name"}``
    (then predicting needs the graph passed again); each with ``"largest_component": True`` when
    the graph is that component of the dataset (:func:`~diffusion_pde.data.largest_component`)."""
    source = getattr(data, "source", None)
    return dict(source) if isinstance(source, dict) else {"kind": "python", "name": getattr(data, "name", None) or "data"}


def is_builtin(data: Data) -> bool:
    return dataset_source(data)["kind"] == "builtin"


def offered_splits(data: Data) -> tuple[str, ...]:
    """The split kinds ``data`` offers: a built-in dataset's (:data:`DATASETS`; ``grand`` on
    Cora, CiteSeer and PubMed, the graphs of GRAND's protocol); a user's graph ``fixed`` (its stored
    masks, [N] one split or [N, K] K splits) when it has masks, ``random`` and ``grand`` (any
    labelled graph has a largest connected component)."""
    if is_builtin(data):
        return DATASETS[dataset_source(data)["name"]].splits
    return ("fixed", "random", "grand") if getattr(data, "train_mask", None) is not None else ("random", "grand")


def default_split(dataset: str | Data) -> str:
    """The split kind used when none is asked for: a built-in dataset's first (the paper's:
    random on Cora/CiteSeer/PubMed, geom-gcn on the geom-gcn datasets; the fixed splits shipped
    with minesweeper/tolokers, OGB's official split, Pokec's LINKX splits; random on synthetic);
    a user's graph's masks (``fixed``) when it has them, else ``random``."""
    if isinstance(dataset, str) and dataset in DATASETS:
        return DATASETS[dataset].splits[0]
    return offered_splits(dataset)[0]


def split_sizes(data: Data) -> dict[str, int | float]:
    """The default sizes of a random split of ``data``: the built-in dataset's own (50/25/25 on
    the large graphs and synthetic, the paper's 20 per class / 500 / 1000 on the others), else
    sizes that fit a user's graph (:func:`~diffusion_pde.data.random_sizes`)."""
    if is_builtin(data) and DATASETS[dataset_source(data)["name"]].random_sizes is not None:
        return dict(DATASETS[dataset_source(data)["name"]].random_sizes)
    return dict(PAPER_SIZES) if is_builtin(data) else random_sizes(data.y, builtin=False)


def open_dataset(dataset: str | Path | Data, *, root: str | Path | None = None, geom_gcn: bool = False,
                 require_labels: bool = True, dtype: torch.dtype = torch.float32, **options: Any) -> Data:
    """Any dataset, checked, with ``dtype`` features: a built-in name (:func:`load_dataset`, which
    takes the ``options`` of ``synthetic`` and of the datasets without a graph), the path of a user's graph
    (:func:`~diffusion_pde.data.load_graph`: a saved ``Data`` or a folder of CSV/NPY files) or a
    ``Data`` (:func:`~diffusion_pde.data.validate_graph_data`). A name wins over a folder of the
    same name; write ``./cora`` for the folder. ``require_labels`` (training) refuses the
    multi-label ogbn-proteins, which training cannot handle (load it with :func:`load_dataset`)."""
    from .user import load_graph, validate_graph_data

    if options and not (isinstance(dataset, str) and dataset in DATASETS):
        raise ValueError(_foreign_options(list(options), "a Data" if isinstance(dataset, Data) else repr(str(dataset))))
    if isinstance(dataset, Data):
        return validate_graph_data(dataset, where="dataset", require_labels=require_labels, dtype=dtype)
    if isinstance(dataset, str) and dataset in DATASETS:
        if require_labels and DATASETS[dataset].multilabel:
            raise ValueError(
                f"dataset {dataset!r} is multi-label (y is [N, 112]: 112 binary tasks, scored by ROC-AUC), but training "
                "here is single-label classification (one class per node, cross-entropy); load it with "
                f"diffusion_pde.data.load_dataset({dataset!r}, root=...) for your own multi-label training code")
        return load_dataset(dataset, root=root, geom_gcn=geom_gcn, dtype=dtype, **options)
    if not isinstance(dataset, (str, Path)):
        raise TypeError(f"dataset must be a built-in name, a path or a torch_geometric Data, got {type(dataset).__name__}")
    if not Path(dataset).exists():
        raise FileNotFoundError(f"dataset (--dataset) {str(dataset)!r} is neither a built-in dataset "
                                f"({', '.join(DATASETS)}) nor an existing file or folder; give a name, a saved Data "
                                "(.pt) or a folder with edge_index, x and y as .csv or .npy files")
    if root is not None:
        raise ValueError(f"root (--root) is for the built-in datasets; dataset {str(dataset)!r} is a path, which is read "
                         "as it is: drop --root")
    return load_graph(dataset, require_labels=require_labels, dtype=dtype)
