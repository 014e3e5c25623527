"""The Cora citation graph, embedded in the package so that everything runs offline.

What it is: 2,708 machine-learning papers (nodes) in 7 classes, 5,278 undirected citation links
stored as 10,556 directed pairs (both directions, no self-loops, no duplicates, ordered by
target node, exactly as PyG gives them), 1,433 binary bag-of-words features per paper (a word
is present or not; about 18 words per paper), and the Planetoid public split: 140 training
nodes (20 per class), 500 validation and 1,000 test nodes; the other 1,068 nodes belong to no
split. The graph is not connected (78 components; the largest has 2,485 nodes).

Provenance: Sen et al., "Collective Classification in Network Data", AI Magazine 2008, in the
version distributed with Planetoid (Yang, Cohen & Salakhutdinov, ICML 2016; github.com/
kimiyoung/planetoid, MIT licence) as the raw files ``ind.cora.*``, processed by
``torch_geometric.datasets.Planetoid(root, "Cora")``. The file ``cora.npz`` next to this
module (about 96 KB) stores the features as a CSR pattern, the edges as uint16, the labels as
uint8 and the split as index arrays; its ``provenance`` entry records the exact source and PyG
version. It is rebuilt from the raw files with::

    .venv/bin/python tools/build_embedded_cora.py [--source ../shared/data/Planetoid]
"""

from __future__ import annotations

import functools
import io
from importlib import resources
from typing import cast

import numpy as np
import torch
from torch_geometric.data import Data

_PACKAGE = "diffusion_pde.data"
_FILE = "cora.npz"
_SPLITS = ("train", "val", "test")


@functools.lru_cache(maxsize=None)
def _decoded() -> dict[str, torch.Tensor | int]:
    """Read and decode ``cora.npz`` once. The tensors here are shared: callers must copy them."""
    blob = resources.files(_PACKAGE).joinpath(_FILE).read_bytes()
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        stored = {key: npz[key] for key in npz.files}

    num_nodes = int(stored["num_nodes"])
    num_features = int(stored["num_features"])
    num_classes = int(stored["num_classes"])
    indptr = stored["x_indptr"].astype(np.int64)
    indices = stored["x_indices"].astype(np.int64)
    if indptr.shape != (num_nodes + 1,) or indptr[0] != 0 or indptr[-1] != indices.size or (np.diff(indptr) < 0).any():
        raise ValueError(f"{_FILE}: inconsistent CSR row pointers (the file is damaged; rebuild it)")
    if indices.size and (indices.min() < 0 or indices.max() >= num_features):
        raise ValueError(f"{_FILE}: feature column index out of range (the file is damaged; rebuild it)")

    x = np.zeros((num_nodes, num_features), dtype=np.uint8)
    x[np.repeat(np.arange(num_nodes), np.diff(indptr)), indices] = 1
    decoded: dict[str, torch.Tensor | int] = {
        "x": torch.from_numpy(x),
        "edge_index": torch.from_numpy(stored["edge_index"].astype(np.int64)),
        "y": torch.from_numpy(stored["y"].astype(np.int64)),
        "num_nodes": num_nodes,
        "num_classes": num_classes,
    }
    for split in _SPLITS:
        mask = np.zeros(num_nodes, dtype=bool)
        mask[stored[f"{split}_index"].astype(np.int64)] = True
        decoded[f"{split}_mask"] = torch.from_numpy(mask)
    return decoded


def load_cora(*, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Data:
    """Return the embedded Cora graph as a PyG ``Data`` (offline; no download, no files written).

    Fields: ``x`` [2708, 1433] of ``dtype`` with the raw 0/1 bag-of-words features (not
    row-normalised; normalise in the caller if wanted), ``edge_index`` [2, 10556] int64,
    ``y`` [2708] int64 in 0..6, boolean ``train_mask`` / ``val_mask`` / ``test_mask`` [2708] of
    the Planetoid public split (140 / 500 / 1000 nodes), plus ``num_nodes`` = 2708,
    ``num_classes`` = 7 and ``name`` = "Cora".

    The file is decoded once per process; every call returns new tensors, so callers may modify
    them in place. ``dtype`` must be a floating-point torch dtype; ``device`` (default CPU) is
    where the tensors are created.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype such as torch.float32, got {dtype!r}")
    target = torch.device("cpu") if device is None else torch.device(device)
    cached = _decoded()

    def fresh(name: str, to_dtype: torch.dtype | None = None) -> torch.Tensor:
        tensor = cast(torch.Tensor, cached[name])
        return tensor.to(device=target, dtype=to_dtype or tensor.dtype, copy=True)

    data = Data(
        x=fresh("x", dtype),
        edge_index=fresh("edge_index"),
        y=fresh("y"),
        num_nodes=cached["num_nodes"],
        **{f"{split}_mask": fresh(f"{split}_mask") for split in _SPLITS},
    )
    data.num_classes = cached["num_classes"]
    data.name = "Cora"
    return data
