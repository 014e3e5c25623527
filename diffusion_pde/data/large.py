"""Large node-classification graphs: ogbn-arxiv, ogbn-products and ogbn-proteins through OGB's
``PygNodePropPredDataset`` (the optional ``ogb`` package), and Pokec from LINKX's ``pokec.mat``.

Raw layout under ``root`` (only read: the files are copied into the cache and processed there):

* ``<root>/ogbn_arxiv/raw/{edge,node-feat,node-label,node_year,num-node-list,num-edge-list}.csv.gz``
  and ``<root>/ogbn_arxiv/split/time/{train,valid,test}.csv.gz`` — the folder that
  ``PygNodePropPredDataset(name="ogbn-arxiv", root=ROOT)`` creates (OGB's ``arxiv.zip`` unpacked
  and renamed). Likewise ``ogbn_products`` (no ``node_year``; split ``sales_ranking``) and
  ``ogbn_proteins`` (``edge-feat`` and ``node_species`` instead of ``node-feat``; split ``species``).
* ``<root>/pokec.mat`` or ``<root>/pokec/pokec.mat``: LINKX's file (``edge_index`` [2, E] or a
  sparse adjacency ``A``, ``node_feat`` [N, 65], ``label`` with −1 for unlabelled nodes).

Without ``root`` the OGB datasets are downloaded into the cache (an error naming the fix when
that fails); Pokec is never downloaded (LINKX keeps it on Google Drive).

Preparation, as the DIFFormer authors (and LINKX) do: every graph made undirected (ogbn-arxiv is
directed in OGB); ogbn-proteins, which has no node features, gets as features the mean of the 8
features of each node's incident edges (the authors' ``adj_t.mean(dim=1)``, also OGB's own
example) and keeps its 112 binary tasks as ``y`` [N, 112]; features are not normalised. The
official OGB split is the ``fixed`` split (one split, [N] masks). Pokec's unlabelled nodes (label
−1) get the label 0 and ``labeled`` False, and are in no split: its ``fixed`` splits are 5 random
50/25/25 splits of the labelled nodes (LINKX's protocol), split s drawn with seed s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import scatter, to_undirected

INSTALL_HINT = "pip install 'diffusion-pde[large]' (or: pip install ogb)"
OGB_URL = "http://snap.stanford.edu/ogb/data/nodeproppred/{}.zip"
OGB_VERSION = 1  # the version of these three datasets in OGB's master.csv: its RELEASE_v1.txt marker
POKEC_SPLITS = 5
POKEC_FRACTIONS = (0.5, 0.25)  # training, validation; test: the rest
LINKX = "https://github.com/CUAI/Non-Homophily-Large-Scale"


@dataclass(frozen=True)
class OGBSpec:
    download_name: str          # the folder inside OGB's zip
    split: str                  # the folder of the official split under split/
    raw: tuple[str, ...]        # raw/<name>.csv.gz files that processing reads

    def required(self) -> list[str]:
        return [f"raw/{name}.csv.gz" for name in self.raw] + \
            [f"split/{self.split}/{part}.csv.gz" for part in ("train", "valid", "test")]


_COMMON = ("edge", "node-label", "num-node-list", "num-edge-list")
OGB: dict[str, OGBSpec] = {
    "ogbn-arxiv": OGBSpec("arxiv", "time", (*_COMMON, "node-feat", "node_year")),
    "ogbn-products": OGBSpec("products", "sales_ranking", (*_COMMON, "node-feat")),
    "ogbn-proteins": OGBSpec("proteins", "species", (*_COMMON, "edge-feat", "node_species")),
}
# Older copies of ogbn-proteins name node_species.csv.gz species.csv.gz (OGB renames it when processing).
_ALIASES = {"raw/node_species.csv.gz": "raw/species.csv.gz"}


def ogb_folder(name: str) -> str:
    """The folder OGB keeps dataset ``name`` in: ``ogbn-arxiv`` → ``ogbn_arxiv``."""
    return name.replace("-", "_")


def copy_changed(source: Path, destination: Path) -> bool:
    """Copy ``source`` to ``destination`` unless it is there with the same size, atomically (a
    file is there complete or not at all); whether it copied."""
    if destination.is_file() and destination.stat().st_size == source.stat().st_size:
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, destination)
    return True


def _missing(folder: Path, spec: OGBSpec) -> list[str]:
    return [f for f in spec.required() if not (folder / f).is_file() and not (f in _ALIASES and (folder / _ALIASES[f]).is_file())]


def _shown(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")


def _stage_ogb(name: str, spec: OGBSpec, root: Path, target: Path) -> None:
    """Copy the raw and split files of ``name`` from ``root`` into ``target`` (the cache's
    dataset folder); a copy that changed a file drops the processed data made from the old one."""
    source = root / ogb_folder(name)
    if not source.is_dir():
        raise FileNotFoundError(
            f"no folder {source}: root must hold OGB's layout <root>/{ogb_folder(name)}/raw/*.csv.gz and "
            f"<root>/{ogb_folder(name)}/split/{spec.split}/ (what PygNodePropPredDataset(name='{name}', root=ROOT) "
            f"creates: OGB's {spec.download_name}.zip unpacked and renamed); omit --root to download into the cache")
    missing = _missing(source, spec)
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: --root {root} lacks {_shown([source / f for f in missing])}; nothing is downloaded "
            "when --root is given: add OGB's raw and split files there, or omit --root to download")
    files = [f for sub in ("raw", f"split/{spec.split}") for f in sorted((source / sub).rglob("*")) if f.is_file()]
    renamed = {old: new for new, old in _ALIASES.items()}  # stored under the name OGB would rename it to
    changed = [copy_changed(f, target / renamed.get(str(f.relative_to(source)), f.relative_to(source))) for f in files]
    if any(changed) and (target / "processed").is_dir():
        shutil.rmtree(target / "processed")


def _download_ogb(name: str, spec: OGBSpec, cache: Path, target: Path) -> None:
    from ogb.utils.url import download_url, extract_zip

    url = OGB_URL.format(spec.download_name)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            archive = download_url(url, str(cache))
            extract_zip(archive, str(cache))
        os.unlink(archive)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(cache / spec.download_name), str(target))
    except Exception as err:  # network or server errors of any kind, a damaged archive
        (cache / f"{spec.download_name}.zip").unlink(missing_ok=True)  # else OGB would take a partial one next time
        raise FileNotFoundError(
            f"dataset {name!r} could not be downloaded from {url} ({type(err).__name__}: {str(err)[:120]}); pass "
            f"--root DIR holding {ogb_folder(name)}/raw/... and {ogb_folder(name)}/split/{spec.split}/... (OGB's "
            "layout)") from err


def _ogb_class() -> type:
    """OGB's ``PygNodePropPredDataset``, imported without the check for a newer ogb release that
    importing ogb starts (an HTTP request to PyPI in a background thread): loading local files
    makes no network traffic."""
    absent = object()
    saved = sys.modules.get("outdated", absent)
    if "ogb" not in sys.modules:
        sys.modules["outdated"] = None  # type: ignore[assignment]  # ogb then skips its version check
    try:
        from ogb.nodeproppred import PygNodePropPredDataset
    except ImportError as err:
        raise ImportError(f"the OGB datasets need the ogb package ({err}): {INSTALL_HINT}") from err
    finally:
        if saved is absent:
            sys.modules.pop("outdated", None)
        else:
            sys.modules["outdated"] = saved  # type: ignore[assignment]
    return PygNodePropPredDataset


def load_ogb(name: str, root: Path | None, cache: Path) -> Data:
    """OGB node-property dataset ``name`` (a key of :data:`OGB`) prepared as described in the
    module docstring: ``x`` [N, F] float32, undirected ``edge_index``, ``y`` [N] (ogbn-proteins:
    [N, 112] of 0/1) and the official split as [N] masks."""
    spec = OGB[name]
    base = _ogb_class()
    target = cache / ogb_folder(name)
    if root is not None:
        _stage_ogb(name, spec, root, target)
    elif _missing(target, spec):
        _download_ogb(name, spec, cache, target)
    (target / f"RELEASE_v{OGB_VERSION}.txt").touch()  # without it OGB asks on stdin whether to delete the folder

    class Local(base):  # type: ignore[misc, valid-type]
        def download(self) -> None:  # the files were staged or downloaded above; never a second try here
            raise FileNotFoundError(f"dataset {name!r}: {self.raw_dir} lacks some of {', '.join(self.raw_file_names)}")

    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), \
            torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]):
        warnings.simplefilter("ignore")  # OGB's own (non-writable NumPy arrays, torch.load)
        dataset = Local(name=name, root=str(cache))
        raw, split = dataset[0], dataset.get_idx_split()
    n = int(raw.num_nodes)
    if name == "ogbn-proteins":
        x = scatter(raw.edge_attr.float(), raw.edge_index[0], dim=0, dim_size=n, reduce="mean")
        y = raw.y.long()
    else:
        x, y = raw.x.float(), raw.y.view(-1).long()
    data = Data(x=x, edge_index=to_undirected(raw.edge_index, num_nodes=n), y=y, num_nodes=n)
    for part, mask in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
        data[mask] = torch.zeros(n, dtype=torch.bool)
        data[mask][split[part]] = True
    if y.dim() == 2:
        data.num_tasks = int(y.shape[1])
    return data


def _pokec_array(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path} has no {key!r} (it holds {keys}); LINKX's pokec.mat holds edge_index (or A), "
                         f"node_feat and label: download it again ({LINKX})")
    value = mat[key]
    return value.toarray() if hasattr(value, "toarray") else np.asarray(value)


def load_pokec(root: Path | None, cache: Path) -> Data:
    """Pokec from LINKX's ``pokec.mat`` prepared as described in the module docstring: ``x``
    [N, 65] float32, undirected ``edge_index``, ``y`` [N] (0/1; 0 also for the unlabelled nodes),
    ``labeled`` [N] and the 5 LINKX-style splits as [N, 5] masks."""
    target = cache / "pokec" / "raw" / "pokec.mat"
    if root is not None:
        candidates = (root / "pokec.mat", root / "pokec" / "pokec.mat")
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"dataset 'pokec': --root {root} holds neither pokec.mat nor pokec/pokec.mat; put LINKX's pokec.mat "
                f"there (linked from {LINKX}); nothing is downloaded")
        copy_changed(found, target)
    elif not target.is_file():
        raise FileNotFoundError(
            f"dataset 'pokec' is not downloaded automatically (LINKX keeps pokec.mat on Google Drive): download "
            f"pokec.mat (linked from {LINKX}) and pass --root DIR holding it")
    import scipy.io
    import scipy.sparse

    path = target if root is None else found
    try:
        mat = scipy.io.loadmat(str(target))
    except Exception as err:  # truncated, not a MATLAB file, or MATLAB v7.3 (HDF5)
        raise ValueError(f"{path} could not be read by scipy.io.loadmat ({type(err).__name__}: {str(err)[:120]}); "
                         f"download LINKX's pokec.mat again ({LINKX})") from None
    x = torch.from_numpy(np.ascontiguousarray(_pokec_array(mat, "node_feat", path), dtype=np.float32))
    n = x.shape[0]
    label = _pokec_array(mat, "label", path).reshape(-1).astype(np.int64)
    if label.shape[0] != n:
        raise ValueError(f"{path}: label holds {label.shape[0]} labels for {n} nodes (rows of node_feat)")
    if "edge_index" in mat:
        edges = np.asarray(mat["edge_index"]).astype(np.int64)
        edges = edges.T if edges.ndim == 2 and edges.shape[0] != 2 and edges.shape[1] == 2 else edges
    elif "A" in mat:
        coo = scipy.sparse.coo_matrix(mat["A"])
        edges = np.stack([coo.row, coo.col]).astype(np.int64)
    else:
        _pokec_array(mat, "edge_index", path)  # the error naming what the file holds
    if edges.ndim != 2 or edges.shape[0] != 2 or (edges.size and (edges.min() < 0 or edges.max() >= n)):
        raise ValueError(f"{path}: the edges must be [2, E] node indices in [0, {n}), got shape {edges.shape}")
    y = torch.from_numpy(label)
    labeled = y >= 0
    data = Data(x=x, edge_index=to_undirected(torch.from_numpy(edges), num_nodes=n), y=torch.where(labeled, y, 0),
                num_nodes=n)
    data.labeled = labeled
    data.train_mask, data.val_mask, data.test_mask = pokec_splits(labeled, POKEC_SPLITS)
    return data


def pokec_splits(labeled: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, count] train/validation/test masks: split s takes 50% / 25% / the remaining 25% of the
    labelled nodes in a random order drawn with seed s (LINKX's random split)."""
    nodes = labeled.nonzero().view(-1)
    total = nodes.numel()
    n_train, n_val = int(total * POKEC_FRACTIONS[0]), int(total * POKEC_FRACTIONS[1])
    masks = [torch.zeros(labeled.numel(), count, dtype=torch.bool) for _ in range(3)]
    for s in range(count):
        order = nodes[torch.randperm(total, generator=torch.Generator().manual_seed(s))]
        for mask, part in zip(masks, (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])):
            mask[part, s] = True
    return masks[0], masks[1], masks[2]
