"""The embedded Cora: its statistics, the loader's contract, and equality with PyG's Planetoid.

The oracle tests need the Planetoid raw files at ``<repo>/../shared/data/Planetoid`` (present in
this repository's CI, absent from a user's clone) and skip cleanly without them. The shared
folder is read-only, so they always work on a temporary copy.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_pde.data import load_cora

REPO_ROOT = Path(__file__).resolve().parents[1]
PLANETOID = REPO_ROOT.parent / "shared" / "data" / "Planetoid"
BUILD_SCRIPT = REPO_ROOT / "tools" / "build_embedded_cora.py"
SPLITS = ("train_mask", "val_mask", "test_mask")


def _require_planetoid_raw() -> Path:
    if not (PLANETOID / "Cora" / "raw").is_dir():
        pytest.skip(f"{PLANETOID}/Cora/raw is not present (only CI and developers have ../shared)")
    return PLANETOID


def _build_module():
    spec = importlib.util.spec_from_file_location("build_embedded_cora", BUILD_SCRIPT)
    if spec is None or spec.loader is None or not BUILD_SCRIPT.is_file():
        pytest.skip("tools/build_embedded_cora.py is not available (installed package without the repository)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shapes_dtypes_and_counts() -> None:
    data = load_cora()
    assert data.name == "Cora"
    assert data.num_nodes == 2708 and data.num_classes == 7
    assert data.x.shape == (2708, 1433) and data.x.dtype == torch.float32
    assert data.num_node_features == 1433
    assert data.edge_index.shape == (2, 10556) and data.edge_index.dtype == torch.int64
    assert data.num_edges == 10556
    assert data.y.shape == (2708,) and data.y.dtype == torch.int64
    assert int(data.y.min()) == 0 and int(data.y.max()) == 6
    assert torch.bincount(data.y).tolist() == [351, 217, 418, 818, 426, 298, 180]
    for name in SPLITS:
        mask = getattr(data, name)
        assert mask.shape == (2708,) and mask.dtype == torch.bool
    assert [int(getattr(data, name).sum()) for name in SPLITS] == [140, 500, 1000]
    assert torch.bincount(data.y[data.train_mask], minlength=7).tolist() == [20] * 7
    assert all(tensor.device.type == "cpu" for tensor in (data.x, data.edge_index, data.y))


def test_masks_are_disjoint() -> None:
    data = load_cora()
    train, val, test = (getattr(data, name) for name in SPLITS)
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    assert int((train | val | test).sum()) == 1640


def test_features_are_raw_binary_not_normalised() -> None:
    x = load_cora().x
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert int(x.sum()) == 49216
    row_sums = x.sum(dim=1)
    assert float(row_sums.min()) >= 1.0 and float(row_sums.max()) == 30.0  # no empty rows; not row-normalised


def test_graph_is_undirected_without_self_loops_or_duplicates() -> None:
    edge_index = load_cora().edge_index
    row, col = edge_index
    assert int(edge_index.min()) >= 0 and int(edge_index.max()) < 2708
    assert not (row == col).any()
    keys = row * 2708 + col
    assert keys.unique().numel() == keys.numel()
    assert torch.equal(keys.sort().values, (col * 2708 + row).sort().values)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_asked_floating_dtype(dtype: torch.dtype) -> None:
    data = load_cora(dtype=dtype)
    assert data.x.dtype == dtype
    assert torch.equal(data.x.float(), load_cora().x)
    assert data.edge_index.dtype == torch.int64 and data.y.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, "float32", np.float32, None])
def test_bad_dtype_raises_type_error_naming_dtype(dtype) -> None:
    with pytest.raises(TypeError, match="dtype"):
        load_cora(dtype=dtype)


def test_explicit_cpu_device() -> None:
    data = load_cora(device="cpu")
    assert all(getattr(data, key).device.type == "cpu" for key in ("x", "edge_index", "y", *SPLITS))


def test_each_call_returns_fresh_tensors() -> None:
    first = load_cora()
    first.x.zero_()
    first.edge_index.zero_()
    first.y.fill_(-1)
    first.train_mask.fill_(False)
    second = load_cora()
    assert int(second.x.sum()) == 49216
    assert int(second.edge_index.max()) == 2707
    assert int(second.y.min()) == 0
    assert int(second.train_mask.sum()) == 140


def test_npz_is_a_small_package_resource_with_provenance() -> None:
    resource = resources.files("diffusion_pde.data").joinpath("cora.npz")
    blob = resource.read_bytes()
    assert len(blob) < 150_000
    with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
        provenance = str(npz["provenance"])
        assert npz["x_indices"].dtype == np.uint16 and npz["x_indptr"].dtype == np.int32
        assert npz["edge_index"].dtype == np.uint16 and npz["y"].dtype == np.uint8
    assert "planetoid" in provenance.lower() and "public split" in provenance
    assert "ind.cora.graph" in provenance and "torch_geometric" in provenance


def test_build_script_rejects_non_binary_features() -> None:
    build = _build_module()
    indptr, indices = build.binary_to_csr(np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert indptr.dtype == np.int32 and indices.dtype == np.uint16
    assert indptr.tolist() == [0, 2, 2, 3] and indices.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="binary"):
        build.binary_to_csr(np.array([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="binary"):
        build.binary_to_csr(np.array([[0.0, 2.0]]))


def test_build_script_checks_its_source_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = _build_module()
    assert build.main(["--source", str(tmp_path / "absent"), "--output", str(tmp_path / "out.npz")]) == 1
    assert "raw files" in capsys.readouterr().err
    raw = tmp_path / "Planetoid" / "Cora" / "raw"
    raw.mkdir(parents=True)
    for name in build.RAW_FILES:
        (raw / name).write_bytes(b"")
    inside = tmp_path / "Planetoid" / "cora.npz"
    assert build.main(["--source", str(tmp_path / "Planetoid"), "--output", str(inside)]) == 1
    assert "refusing" in capsys.readouterr().err and not inside.exists()
    assert not (tmp_path / "out.npz").exists()


def test_embedded_cora_equals_pyg_planetoid(tmp_path: Path) -> None:
    source = _require_planetoid_raw()
    from torch_geometric.datasets import Planetoid

    shutil.copytree(source / "Cora" / "raw", tmp_path / "Cora" / "raw")
    reference = Planetoid(str(tmp_path), "Cora")[0]
    ours = load_cora()
    assert ours.num_nodes == reference.num_nodes
    for key in ("x", "edge_index", "y", *SPLITS):
        expected = getattr(reference, key)
        actual = getattr(ours, key)
        assert actual.dtype == expected.dtype, key
        assert torch.equal(actual, expected), key


def test_build_script_reproduces_the_shipped_arrays(tmp_path: Path) -> None:
    source = _require_planetoid_raw()
    build = _build_module()
    output = tmp_path / "cora.npz"
    assert build.main(["--source", str(source), "--output", str(output)]) == 0
    shipped_bytes = resources.files("diffusion_pde.data").joinpath("cora.npz").read_bytes()
    with np.load(output) as rebuilt, np.load(io.BytesIO(shipped_bytes)) as shipped:
        assert sorted(rebuilt.files) == sorted(shipped.files)
        for key in rebuilt.files:
            if key != "provenance":  # names the PyG version, which may differ
                assert rebuilt[key].dtype == shipped[key].dtype, key
                assert np.array_equal(rebuilt[key], shipped[key]), key
