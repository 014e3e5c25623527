"""Build ``diffusion_pde/data/cora.npz``, the embedded offline copy of the Cora citation graph.

The Planetoid raw files (``Cora/raw/ind.cora.*``, from kimiyoung/planetoid) are read-only in
this repository's CI, so the script copies ``<source>/Cora`` into a temporary folder, lets
``torch_geometric.datasets.Planetoid(tmp, "Cora")`` process it there (public split) and stores
the result compactly with ``np.savez_compressed`` (about 95 KB):

    x_indptr     int32  [N + 1]   CSR row pointers of the binary bag-of-words features
    x_indices    uint16 [nnz]     CSR column indices (every stored feature value is exactly 1)
    edge_index   uint16 [2, E]    exactly as PyG gives it (both directions of every link)
    y            uint8  [N]       class labels
    train_index, val_index, test_index   uint16   sorted node indices of the public split
    num_nodes, num_features, num_classes  int64 scalars
    provenance   str              source files, PyG version, split

Nothing is written into the source folder. Rerun with:

    .venv/bin/python tools/build_embedded_cora.py [--source ../shared/data/Planetoid] [--output PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "Planetoid"
DEFAULT_OUTPUT = REPO / "diffusion_pde" / "data" / "cora.npz"
RAW_FILES = tuple(f"ind.cora.{suffix}" for suffix in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"))
UINT16_MAX = np.iinfo(np.uint16).max


def binary_to_csr(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr int32, indices uint16) of a dense 0/1 matrix; raises ValueError otherwise."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {x.shape}")
    bad = ~((x == 0) | (x == 1))
    if bad.any():
        examples = np.unique(x[bad])[:5].tolist()
        raise ValueError(
            f"features are not binary: {int(bad.sum())} entries are neither 0 nor 1 (e.g. {examples}); "
            "the CSR pattern format would lose them"
        )
    if x.shape[1] - 1 > UINT16_MAX:
        raise ValueError(f"{x.shape[1]} feature columns do not fit uint16 column indices")
    rows, cols = np.nonzero(x)  # row-major order: columns ascending within each row
    indptr = np.zeros(x.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=x.shape[0]), out=indptr[1:])
    if indptr[-1] > np.iinfo(np.int32).max:
        raise ValueError("too many non-zeros for int32 row pointers")
    return indptr.astype(np.int32), cols.astype(np.uint16)


def _as_uint16(name: str, values: np.ndarray) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > UINT16_MAX):
        raise ValueError(f"{name} has values outside uint16 range [0, {UINT16_MAX}]")
    return values.astype(np.uint16)


def build(source: Path, output: Path) -> dict[str, np.ndarray]:
    """Load Cora from a temporary copy of ``source/Cora`` and write the compact arrays to ``output``."""
    import torch_geometric
    from torch_geometric.datasets import Planetoid

    raw = source / "Cora" / "raw"
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{raw} lacks the Planetoid raw files {missing} (expected PyG's Planetoid layout)")
    source = source.resolve()
    output = output.resolve()
    if output.is_relative_to(source):
        raise ValueError(f"refusing to write {output} inside the read-only source {source}")

    with tempfile.TemporaryDirectory(prefix="cora-build-") as tmp:
        # Only the raw files travel: a processed/ cache next to them (from another PyG version)
        # must not be reused.
        shutil.copytree(raw, Path(tmp) / "Cora" / "raw")
        dataset = Planetoid(tmp, "Cora", split="public")
        data = dataset[0]
        num_classes = int(dataset.num_classes)

    x = data.x.numpy()
    indptr, indices = binary_to_csr(x)
    y = data.y.numpy()
    if y.min() < 0 or y.max() >= num_classes or num_classes > np.iinfo(np.uint8).max:
        raise ValueError(f"labels out of range for {num_classes} classes / uint8")
    arrays: dict[str, np.ndarray] = {
        "x_indptr": indptr,
        "x_indices": indices,
        "edge_index": _as_uint16("edge_index", data.edge_index.numpy()),
        "y": y.astype(np.uint8),
        "num_nodes": np.int64(data.num_nodes),
        "num_features": np.int64(x.shape[1]),
        "num_classes": np.int64(num_classes),
    }
    for split in ("train", "val", "test"):
        arrays[f"{split}_index"] = _as_uint16(split, np.flatnonzero(getattr(data, f"{split}_mask").numpy()))
    arrays["provenance"] = np.array(
        "Cora citation graph (Sen et al. 2008) as distributed in kimiyoung/planetoid (MIT): raw files "
        + ", ".join(RAW_FILES)
        + f"; processed by torch_geometric {torch_geometric.__version__} "
        "torch_geometric.datasets.Planetoid(root, 'Cora', split='public') (the Planetoid public split: "
        "20 labelled nodes per class, 500 validation, 1000 test); built by tools/build_embedded_cora.py"
    )

    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="folder holding Cora/raw/ind.cora.* in PyG's Planetoid layout; read, never written")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the .npz file to write")
    args = parser.parse_args(argv)
    try:
        arrays = build(args.source, args.output)
    except (FileNotFoundError, ValueError) as error:
        print(f"build_embedded_cora: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output} ({args.output.stat().st_size} bytes): {int(arrays['num_nodes'])} nodes, "
        f"{arrays['edge_index'].shape[1]} directed edges, {int(arrays['num_features'])} features "
        f"({arrays['x_indices'].size} non-zeros), {int(arrays['num_classes'])} classes, split "
        f"{arrays['train_index'].size}/{arrays['val_index'].size}/{arrays['test_index'].size}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
