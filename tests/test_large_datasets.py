"""The large-graph datasets on miniatures in their real raw layouts (OGB's csv.gz files read by
``PygNodePropPredDataset``, LINKX's ``pokec.mat``), and the synthetic benchmark generator.

Nothing is downloaded: the OGB and Pokec loaders read miniature copies written to ``tmp_path``
(``--root``, which must stay untouched), the one download test replaces OGB's downloader by one
that fails, and the cache is a temporary folder.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch
from torch_geometric.utils import is_undirected, remove_self_loops, to_undirected

from diffusion_pde.cli import main
from diffusion_pde.data import (
    DATASETS,
    SYNTHETIC_DEFAULTS,
    dataset_source,
    default_split,
    load_dataset,
    offered_splits,
    open_dataset,
    random_split,
    split_sizes,
    synthetic_graph,
)
from diffusion_pde.data.synthetic import undirected_edges
from diffusion_pde.training.experiment import make_split

# Not pytest.importorskip: importing ogb directly starts its check for a newer release on PyPI.
needs_ogb = pytest.mark.skipif(importlib.util.find_spec("ogb") is None,
                               reason="the OGB loaders need the optional ogb package (pip install diffusion-pde[large])")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFUSION_PDE_CACHE", str(cache))
    return cache


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def write_csv_gz(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.asarray(rows)
    rows = rows.reshape(len(rows), -1)
    with gzip.open(path, "wt") as handle:
        for row in rows:
            handle.write(",".join(str(v) for v in row) + "\n")


# ---- OGB miniatures --------------------------------------------------------------------------

N = 12
ARXIV_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 4], [7, 8], [8, 9], [9, 10], [10, 11],
                        [11, 7], [0, 6], [2, 9]])  # directed, as in OGB: every edge stored once, one way
SPLIT = {"train": [0, 1, 2, 3, 4, 5], "valid": [6, 7, 8], "test": [9, 10, 11]}


def write_ogb(root: Path, name: str, *, release: bool = True) -> Path:
    """A miniature of OGB dataset ``name`` laid out as PygNodePropPredDataset leaves it under its root."""
    rng = np.random.default_rng(0)
    folder = root / name.replace("-", "_")
    raw = folder / "raw"
    split = {"ogbn-arxiv": "time", "ogbn-products": "sales_ranking", "ogbn-proteins": "species"}[name]
    write_csv_gz(raw / "edge.csv.gz", ARXIV_EDGES)
    write_csv_gz(raw / "num-node-list.csv.gz", np.array([N]))
    write_csv_gz(raw / "num-edge-list.csv.gz", np.array([len(ARXIV_EDGES)]))
    if name == "ogbn-proteins":
        write_csv_gz(raw / "edge-feat.csv.gz", rng.random((len(ARXIV_EDGES), 8)).round(3))
        write_csv_gz(raw / "node-label.csv.gz", rng.integers(0, 2, (N, 112)))
        write_csv_gz(raw / "node_species.csv.gz", np.full(N, 3702))
    else:
        write_csv_gz(raw / "node-feat.csv.gz", rng.standard_normal((N, 5)).round(4))
        write_csv_gz(raw / "node-label.csv.gz", np.arange(N) % 3)
        if name == "ogbn-arxiv":
            write_csv_gz(raw / "node_year.csv.gz", np.full(N, 2015))
    for part, nodes in SPLIT.items():
        write_csv_gz(folder / "split" / split / f"{part}.csv.gz", np.array(nodes))
    if release:
        (folder / "RELEASE_v1.txt").write_text("")
    return folder


@needs_ogb
@pytest.mark.parametrize("name", ["ogbn-arxiv", "ogbn-products"])
def test_ogb_single_label_dataset(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    write_ogb(root, name, release=name == "ogbn-arxiv")  # a copy without OGB's RELEASE marker works too
    before = snapshot(root)
    data = load_dataset(name, root=root)
    assert capsys.readouterr().out == ""  # OGB's progress messages go to stderr, never into --json output
    assert snapshot(root) == before  # --root is only read
    assert data.x.shape == (N, 5) and data.x.dtype == torch.float32
    assert data.y.shape == (N,) and data.y.dtype == torch.long and data.num_classes == 3
    assert torch.bincount(data.y).tolist() == [4, 4, 4]
    assert is_undirected(data.edge_index) and data.edge_index.shape[1] == 2 * len(ARXIV_EDGES)
    expected = to_undirected(torch.from_numpy(ARXIV_EDGES.T.copy()), num_nodes=N)
    assert torch.equal(data.edge_index, expected)
    for mask, part in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        assert data[mask].shape == (N,) and data[mask].nonzero().view(-1).tolist() == SPLIT[part]
    assert data.source == {"kind": "builtin", "name": name, "root": str(root.resolve())}
    assert default_split(name) == default_split(data) == "fixed" and offered_splits(data) == ("fixed", "random")
    fixed = make_split(data, "fixed", 0)
    assert fixed.train.tolist() == SPLIT["train"]
    assert split_sizes(data) == {"per_class": 0.5, "num_val": 0.5, "num_test": 0.5}
    random = make_split(data, "random", 0)
    assert [s.numel() for s in (random.train, random.val, random.test)] == [6, 3, 3]  # 50/25/25
    again = load_dataset(name, root=root)  # from the cache's processed file
    assert torch.equal(again.x, data.x) and torch.equal(again.edge_index, data.edge_index)


@needs_ogb
def test_ogb_proteins_features_are_mean_edge_features_and_labels_multilabel(tmp_path: Path) -> None:
    root = tmp_path / "root"
    folder = write_ogb(root, "ogbn-proteins")
    before = snapshot(root)
    data = load_dataset("ogbn-proteins", root=root)
    assert snapshot(root) == before
    assert data.y.shape == (N, 112) and set(data.y.unique().tolist()) <= {0, 1} and data.num_tasks == 112
    with gzip.open(folder / "raw" / "edge-feat.csv.gz", "rt") as handle:
        features = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    expected = np.zeros((N, 8), dtype=np.float32)
    count = np.zeros(N)
    for (a, b), f in zip(ARXIV_EDGES, features):  # every edge counts once for each of its two ends
        expected[a] += f
        expected[b] += f
        count[a] += 1
        count[b] += 1
    expected /= np.maximum(count, 1)[:, None]
    assert data.x.shape == (N, 8)
    assert np.allclose(data.x.numpy(), expected, atol=1e-6)
    assert is_undirected(data.edge_index) and data.edge_index.shape[1] == 2 * len(ARXIV_EDGES)
    assert offered_splits(data) == ("fixed",) and make_split(data, "fixed", 0).test.tolist() == SPLIT["test"]
    with pytest.raises(ValueError, match=r"multi-label .*112 binary tasks.*load_dataset\('ogbn-proteins'"):
        open_dataset("ogbn-proteins", root=root)  # training refuses it, before loading anything
    assert open_dataset("ogbn-proteins", root=root, require_labels=False).y.shape == (N, 112)


@needs_ogb
def test_ogb_proteins_with_the_older_species_file_name(tmp_path: Path, _private_cache: Path) -> None:
    root = tmp_path / "root"
    folder = write_ogb(root, "ogbn-proteins")
    (folder / "raw" / "node_species.csv.gz").rename(folder / "raw" / "species.csv.gz")
    before = snapshot(root)
    first = load_dataset("ogbn-proteins", root=root)
    processed = _private_cache / "datasets" / "ogbn_proteins" / "processed" / "geometric_data_processed.pt"
    stamp = processed.stat().st_mtime_ns
    second = load_dataset("ogbn-proteins", root=root)
    assert processed.stat().st_mtime_ns == stamp and torch.equal(first.x, second.x)  # not processed again
    assert snapshot(root) == before  # OGB renames the file, but only in the cache


@needs_ogb
def test_ogb_root_without_the_files_names_them_and_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no folder .*ogbn_arxiv: root must hold OGB's layout .*omit --root"):
        load_dataset("ogbn-arxiv", root=root)
    folder = write_ogb(root, "ogbn-arxiv")
    (folder / "raw" / "node_year.csv.gz").unlink()
    (folder / "split" / "time" / "valid.csv.gz").unlink()
    before = snapshot(root)
    with pytest.raises(FileNotFoundError, match=r"lacks .*raw/node_year\.csv\.gz, .*split/time/valid\.csv\.gz; nothing is "
                                                r"downloaded when --root is given"):
        load_dataset("ogbn-arxiv", root=root)
    assert snapshot(root) == before


@needs_ogb
def test_changed_raw_files_are_processed_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    folder = write_ogb(root, "ogbn-arxiv")
    assert load_dataset("ogbn-arxiv", root=root).num_classes == 3
    write_csv_gz(folder / "raw" / "node-label.csv.gz", np.arange(N) % 4)  # another size: copied and processed anew
    assert load_dataset("ogbn-arxiv", root=root).num_classes == 4


@needs_ogb
def test_ogb_download_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusion_pde.data.large import _ogb_class

    _ogb_class()  # imports ogb without its version check
    import ogb.utils.url

    def offline(url: str, folder: str, log: bool = True) -> str:
        raise URLError("no network")

    monkeypatch.setattr(ogb.utils.url, "download_url", offline)
    with pytest.raises(FileNotFoundError, match=r"'ogbn-arxiv' could not be downloaded from http://snap\.stanford\.edu/"
                                                r"ogb/data/nodeproppred/arxiv\.zip \(URLError.*pass --root DIR holding "
                                                r"ogbn_arxiv/raw"):
        load_dataset("ogbn-arxiv")


def test_missing_ogb_package_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m == "ogb" or m.startswith("ogb.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "ogb", None)
    with pytest.raises(ImportError, match=r"need the ogb package .*pip install 'diffusion-pde\[large\]' \(or: pip "
                                          r"install ogb\)"):
        load_dataset("ogbn-arxiv", root=write_ogb(tmp_path / "root", "ogbn-arxiv").parent)


# ---- Pokec -----------------------------------------------------------------------------------

def pokec_arrays(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    edges = rng.integers(0, n, (2, 120))
    edges = edges[:, edges[0] != edges[1]]
    label = rng.integers(0, 2, n)
    label[[3, 17, 25, 31]] = -1  # unlabelled
    return edges, rng.standard_normal((n, 65)).astype(np.float32), label


def write_pokec(path: Path, *, adjacency: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    edges, features, label = pokec_arrays()
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"node_feat": features, "label": label, "num_nodes": len(label)}  # label saved [1, N], as in LINKX's file
    if adjacency:
        fields["A"] = scipy.sparse.csr_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(len(label),) * 2)
    else:
        fields["edge_index"] = edges
    scipy.io.savemat(path, fields)
    return edges, features, label


@pytest.mark.parametrize("layout", ["pokec.mat", "pokec/pokec.mat", "adjacency"])
def test_pokec(layout: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    edges, features, label = write_pokec(root / ("pokec.mat" if layout == "adjacency" else layout),
                                         adjacency=layout == "adjacency")
    before = snapshot(root)
    data = load_dataset("pokec", root=root)
    assert snapshot(root) == before
    n = len(label)
    assert data.x.shape == (n, 65) and torch.allclose(data.x, torch.from_numpy(features))
    assert data.y.shape == (n,) and data.num_classes == 2
    labeled = torch.from_numpy(label >= 0)
    assert torch.equal(data.labeled, labeled) and int(labeled.sum()) == n - 4
    assert torch.equal(data.y[labeled], torch.from_numpy(label)[labeled]) and int(data.y[~labeled].abs().sum()) == 0
    assert is_undirected(data.edge_index)
    assert torch.equal(data.edge_index, to_undirected(torch.from_numpy(edges).long(), num_nodes=n))
    assert default_split(data) == "fixed" and offered_splits(data) == ("fixed",)
    assert data.train_mask.shape == (n, 5)
    for s in range(5):
        split = make_split(data, "fixed", s)
        assert [p.numel() for p in (split.train, split.val, split.test)] == [18, 9, 9]  # 50/25/25 of 36 labelled
        nodes = torch.cat([split.train, split.val, split.test])
        assert nodes.unique().numel() == 36 and bool(labeled[nodes].all())  # disjoint, the labelled nodes only
    assert not torch.equal(data.train_mask[:, 0], data.train_mask[:, 1])
    assert torch.equal(load_dataset("pokec", root=root).train_mask, data.train_mask)  # seeded


def test_pokec_errors(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds neither pokec\.mat nor pokec/pokec\.mat; put LINKX's pokec\.mat"):
        load_dataset("pokec", root=root)
    with pytest.raises(FileNotFoundError, match=r"'pokec' is not downloaded automatically .*pass --root DIR"):
        load_dataset("pokec")
    (root / "pokec.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(ValueError, match=r"pokec\.mat could not be read by scipy\.io\.loadmat"):
        load_dataset("pokec", root=root)
    scipy.io.savemat(root / "pokec.mat", {"node_feat": np.zeros((3, 2)), "label": np.zeros(3)})
    with pytest.raises(ValueError, match=r"has no 'edge_index' \(it holds node_feat, label\)"):
        load_dataset("pokec", root=root)


# ---- the synthetic benchmark -----------------------------------------------------------------

def test_synthetic_shapes_balance_degree_and_homophily() -> None:
    data = synthetic_graph(20_000, num_classes=5, num_features=16, degree=10, homophily=0.7, seed=3)
    assert data.x.shape == (20_000, 16) and data.x.dtype == torch.float32
    assert data.y.shape == (20_000,) and data.y.dtype == torch.long and data.num_classes == 5
    assert torch.bincount(data.y).tolist() == [4000] * 5
    row, col = data.edge_index
    assert is_undirected(data.edge_index) and not bool((row == col).any())
    keys = row * 20_000 + col
    assert keys.unique().numel() == keys.numel()  # no duplicates
    assert 9.8 < data.edge_index.shape[1] / 20_000 <= 10.0  # average degree ≈ 10 (a few duplicates merged)
    assert abs(float((data.y[row] == data.y[col]).float().mean()) - 0.7) < 0.01
    assert torch.bincount(data.y[:1000], minlength=5).min() > 150  # ids are shuffled: they do not reveal the class


def test_synthetic_features_are_class_informative() -> None:
    data = synthetic_graph(6000, seed=1)  # 10 classes, 64 features
    train = torch.arange(6000) < 3000
    means = torch.stack([data.x[train & (data.y == c)].mean(0) for c in range(10)])
    predicted = torch.cdist(data.x[~train], means).argmin(1)
    accuracy = float((predicted == data.y[~train]).float().mean())
    assert accuracy > 0.25  # chance is 0.1 (about 1/3 at large N)
    smoothed = torch.zeros_like(data.x).index_add_(0, data.edge_index[0], data.x[data.edge_index[1]])
    predicted = torch.cdist(smoothed[~train], means).argmin(1)  # neighbours (80% of the same class) help
    assert float((predicted == data.y[~train]).float().mean()) > accuracy + 0.2


def test_synthetic_extremes_of_homophily() -> None:
    for homophily, same in ((0.0, 0.0), (1.0, 1.0)):
        data = synthetic_graph(500, num_classes=4, homophily=homophily)
        row, col = data.edge_index
        assert float((data.y[row] == data.y[col]).float().mean()) == same


def test_synthetic_is_seeded_and_reloads_from_its_source() -> None:
    a, b, c = synthetic_graph(3000, seed=5), synthetic_graph(3000, seed=5), synthetic_graph(3000, seed=6)
    assert all(torch.equal(a[k], b[k]) for k in ("x", "edge_index", "y"))
    assert not torch.equal(a.y, c.y) and not torch.equal(a.x, c.x)
    source = dataset_source(a)
    assert source["options"] == {**SYNTHETIC_DEFAULTS, "num_nodes": 3000, "seed": 5}
    again = open_dataset(source["name"], root=source["root"], **source["options"])
    assert all(torch.equal(a[k], again[k]) for k in ("x", "edge_index", "y"))
    assert default_split("synthetic") == "random" and offered_splits(a) == ("random",) and "synthetic" in DATASETS
    split = make_split(a, "random", 0)
    assert [p.numel() for p in (split.train, split.val, split.test)] == [1500, 750, 750]  # 50/25/25


def test_undirected_edges_equal_pyg_to_undirected() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 50, (400,), generator=g), torch.randint(0, 50, (400,), generator=g)
    assert bool((a == b).any())  # self-loops among them, dropped
    ours = undirected_edges(a, b, 50)
    pyg = remove_self_loops(to_undirected(torch.stack([a, b]), num_nodes=50))[0]
    assert ours.shape == pyg.shape
    assert torch.equal(torch.sort(ours[0] * 50 + ours[1]).values, pyg[0] * 50 + pyg[1])


@pytest.mark.parametrize("kwargs, match", [
    ({"num_nodes": 15}, r"num_nodes must be an int >= 20, got 15"),
    ({"num_nodes": 100, "num_classes": 1}, r"num_classes must be an int >= 2"),
    ({"num_nodes": 100, "homophily": 1.5}, r"homophily must be a number in \[0, 1\], got 1\.5"),
    ({"num_nodes": 100, "degree": 0}, r"degree must be a number in \(0, 99\)"),
    ({"num_nodes": 100, "feature_noise": -1.0}, r"feature_noise must be a number in \[0, inf\)"),
    ({"num_nodes": 100.0}, r"num_nodes must be an int"),
])
def test_synthetic_refuses_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        synthetic_graph(**kwargs)


def test_options_only_for_the_synthetic_dataset() -> None:
    with pytest.raises(ValueError, match=r"num_nodes sets the generator of the synthetic dataset; dataset 'cora' is read"):
        load_dataset("cora", num_nodes=10)
    with pytest.raises(ValueError, match=r"dataset 'synthetic' is generated: drop --root"):
        load_dataset("synthetic", root=".")
    with pytest.raises(ValueError, match=r"unknown option\(s\) nodes for the synthetic dataset"):
        load_dataset("synthetic", nodes=10)


def test_random_split_per_class_fraction() -> None:
    y = torch.arange(40) % 4
    split = random_split(y, 0, per_class=0.5, num_val=0.5, num_test=0.5)
    assert torch.bincount(y[split.train]).tolist() == [5] * 4 and split.val.numel() == split.test.numel() == 10
    with pytest.raises(ValueError, match=r"per_class .* must be an int >= 1 or a fraction in \(0, 1\)"):
        random_split(y, 0, per_class=1.5)


# ---- the command line ------------------------------------------------------------------------

def test_cli_trains_on_a_synthetic_graph_and_predicts_from_its_checkpoint(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from diffusion_pde.training import load_model

    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--num-nodes", "2000", "--model", "gcn", "--epochs", "3",
                 "--out", str(out), "--quiet", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["num_nodes"] == 2000 and payload["split"] == "random"
    assert payload["split_sizes"]["0"] == [1000, 500, 500]
    assert payload["source"]["options"]["num_nodes"] == 2000
    model = load_model(out)  # the graph is generated again from the checkpoint's source
    assert model is not None
    assert main(["predict", str(out), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 2001


@pytest.mark.parametrize("args, match", [
    ("train --num-nodes 100", r"--num-nodes sets the size of the generated graph of --dataset synthetic, but dataset "
                              r"'cora' has its own size: drop --num-nodes"),
    ("train --dataset synthetic --num-nodes 5", r"num_nodes must be an int >= 20, got 5 \(set by --num-nodes\)"),
    ("train --dataset ogbn-proteins", r"multi-label"),
    ("train --dataset synthetic --root .", r"dataset 'synthetic' is generated: drop --root"),
])
def test_cli_usage_errors(args: str, match: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args.split())
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err)


@needs_ogb
def test_cli_missing_ogb_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_ogb(tmp_path / "root", "ogbn-arxiv")
    for module in [m for m in sys.modules if m == "ogb" or m.startswith("ogb.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "ogb", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "ogbn-arxiv", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'diffusion-pde[large]'" in err
