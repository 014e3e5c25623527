"""The embedded Cora against its statistics and against PyG's own Planetoid loader."""

from __future__ import annotations

import shutil

import pytest
import torch

from diffusion_pde.data import load_cora

from conftest import SHARED_DATA


def test_embedded_cora_statistics() -> None:
    data = load_cora()
    assert data.x.shape == (2708, 1433) and data.x.dtype == torch.float32
    assert data.edge_index.shape == (2, 10556) and data.edge_index.dtype == torch.int64
    assert int(data.y.max()) + 1 == 7 == data.num_classes
    assert set(data.x.unique().tolist()) == {0.0, 1.0}
    sizes = [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)]
    assert sizes == [140, 500, 1000]
    assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()
    assert not (data.train_mask & data.test_mask).any()


def test_load_returns_fresh_tensors_in_the_asked_dtype() -> None:
    first = load_cora(dtype=torch.float64)
    first.x.zero_()
    second = load_cora(dtype=torch.float64)
    assert second.x.dtype == torch.float64 and second.x.sum() > 0


def test_bad_dtype_is_named() -> None:
    with pytest.raises(TypeError, match="dtype"):
        load_cora(dtype=torch.int64)


def test_embedded_cora_equals_pyg_planetoid(tmp_path) -> None:
    source = SHARED_DATA / "Planetoid" / "Cora"
    if not source.is_dir():
        pytest.skip("../shared/data/Planetoid/Cora is not present (only CI and developers have it)")
    from torch_geometric.datasets import Planetoid

    shutil.copytree(source, tmp_path / "Cora")
    reference = Planetoid(str(tmp_path), "Cora")[0]
    ours = load_cora()
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(ours, key), getattr(reference, key)), key
