"""The embedded Cora citation graph, loadable offline.

2,708 papers (nodes) in 7 classes, 10,556 directed citation pairs (each undirected link stored
both ways, as PyG gives it), 1,433 binary bag-of-words features, and the Planetoid public split
(140 train / 500 validation / 1000 test). Source: Sen et al. 2008, as distributed in
kimiyoung/planetoid (MIT) and loaded by ``torch_geometric.datasets.Planetoid``. Stored in
``cora.npz`` (about 95 KB); rebuild it with ``python tools/build_embedded_cora.py``.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch
from torch_geometric.data import Data


@functools.lru_cache(maxsize=1)
def _arrays() -> dict[str, np.ndarray]:
    with resources.files("diffusion_pde.data").joinpath("cora.npz").open("rb") as handle:
        with np.load(handle) as npz:
            return {key: npz[key] for key in npz.files}


def load_cora(*, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Data:
    """Cora as a PyG ``Data``: x [2708, 1433] (raw 0/1 features, not normalised), edge_index
    [2, 10556] int64, y [2708] int64 and boolean train/val/test masks of the public split."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype such as torch.float32, got {dtype!r}")
    a = _arrays()
    num_nodes, num_features, num_classes = (int(v) for v in a["shape"])
    x = torch.zeros(num_nodes, num_features, dtype=dtype)
    rows = np.repeat(np.arange(num_nodes), np.diff(a["x_indptr"]))
    x[torch.from_numpy(rows), torch.from_numpy(a["x_indices"].astype(np.int64))] = 1.0
    masks = {}
    for split in ("train", "val", "test"):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[torch.from_numpy(a[f"{split}_index"].astype(np.int64))] = True
        masks[f"{split}_mask"] = mask
    data = Data(
        x=x,
        edge_index=torch.from_numpy(a["edge_index"].astype(np.int64)),
        y=torch.from_numpy(a["y"].astype(np.int64)),
        num_nodes=num_nodes,
        **masks,
    )
    data.name = "Cora"
    data.num_classes = num_classes
    return data.to(device) if device is not None else data
