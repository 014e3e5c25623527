"""Datasets without a graph (digits, Fashion-MNIST, 20 Newsgroups), their kNN graphs and label-rate
splits.

Oracles: the kNN graph against brute-force distances (dense, small N); the loaders against the
files the tests write (IDX images with known pixels; 20 Newsgroups posts whose words, and so
whose TF-IDF rows, are computed here by hand) and against scikit-learn's own downloader, which
builds its cache from a miniature archive; the splits by counting.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.utils import is_undirected

from diffusion_pde.cli import main
from diffusion_pde.data import knn_graph, load_dataset
from diffusion_pde.data.instances import NEWSGROUPS_CACHE, NEWSGROUPS_CATEGORIES, read_idx
from diffusion_pde.models import ModelConfig
from diffusion_pde.training import TrainConfig, make_split, run_experiment

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# ---- the kNN graph ---------------------------------------------------------------------------

def brute_force_knn(x: np.ndarray, k: int, metric: str) -> set[tuple[int, int]]:
    """The undirected kNN edge set from the dense distance matrix (self excluded)."""
    if metric == "cosine":
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        dist = 1 - unit @ unit.T
    else:
        dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return {(i, int(j)) for i in range(len(x)) for j in nearest[i]} | \
        {(int(j), i) for i in range(len(x)) for j in nearest[i]}


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(("n", "f", "k"), [(40, 3, 1), (60, 8, 5), (25, 2, 24)])
def test_knn_graph_is_the_brute_force_graph(metric: str, n: int, f: int, k: int) -> None:
    x = np.random.default_rng(n * f + k).normal(size=(n, f))  # continuous: no ties
    edge_index = knn_graph(torch.from_numpy(x), k, metric)
    assert edge_index.dtype == torch.long and edge_index.shape[0] == 2
    assert edge_set(edge_index) == brute_force_knn(x, k, metric)
    assert edge_index.shape[1] == len(edge_set(edge_index))  # no duplicate edges
    assert not (edge_index[0] == edge_index[1]).any()
    assert is_undirected(edge_index)
    assert torch.bincount(edge_index[0], minlength=n).min() >= k


def test_knn_graph_with_duplicate_and_zero_rows() -> None:
    """Duplicated points (ties at distance 0) never make a self-loop, and all-zero rows have a
    cosine distance (1 to every row), not NaN."""
    x = np.vstack([np.zeros((3, 4)), np.ones((4, 4)), np.random.default_rng(0).normal(size=(10, 4))])
    for metric in ("euclidean", "cosine"):
        edge_index = knn_graph(x, 3, metric)
        assert not (edge_index[0] == edge_index[1]).any()
        assert torch.bincount(edge_index[0], minlength=17).min() >= 3
        assert is_undirected(edge_index)
    duplicates = edge_set(knn_graph(x, 3, "euclidean"))
    assert {(i, j) for i in range(3, 7) for j in range(3, 7) if i != j} <= duplicates  # 4 equal points: each other's


@pytest.mark.parametrize(("args", "match"), [
    ((np.ones((5, 2)), 5, "cosine"), r"knn=5 neighbours per node needs more than 5 nodes"),
    ((np.ones((5, 2)), 0, "cosine"), r"knn .* must be an int >= 1, got 0"),
    ((np.ones((5, 2)), 2, "manhattan"), r"knn_metric must be one of cosine, euclidean"),
    ((np.array([[0.0, np.nan], [1, 1], [2, 2]]), 1, "euclidean"), r"x holds NaN or Inf"),
    ((np.ones(5), 1, "euclidean"), r"x must be \[N, F\]"),
])
def test_knn_graph_refuses_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        knn_graph(*args)


# ---- digits ----------------------------------------------------------------------------------

def test_digits_is_scikit_learns_digits_without_edges() -> None:
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    digits = load_digits()
    assert data.x.shape == (1797, 64) and data.x.dtype == torch.float32
    assert data.edge_index.shape == (2, 0) and data.num_nodes == 1797 and data.num_classes == 10
    assert torch.equal(data.y, torch.from_numpy(digits.target).long())
    assert torch.allclose(data.x, torch.from_numpy(digits.data / 16).float())
    assert data.source == {"kind": "builtin", "name": "digits", "root": None,
                           "options": {"num_instances": 1797, "pca": None, "knn": None, "knn_metric": "euclidean"}}


def test_digits_subset_pca_and_knn_options() -> None:
    full = load_dataset("digits")
    data = load_dataset("digits", num_instances=300, pca=10, knn=4, knn_metric="cosine")
    again = load_dataset("digits", num_instances=300, pca=10, knn=4, knn_metric="cosine")
    assert torch.equal(data.x, again.x) and torch.equal(data.edge_index, again.edge_index)  # seeded
    subset = load_dataset("digits", num_instances=300)
    rows = {tuple(r) for r in full.x.tolist()}
    assert all(tuple(r) in rows for r in subset.x.tolist())
    assert torch.bincount(subset.y, minlength=10).min() > 0
    # PCA: 10 centred, uncorrelated components with decreasing variance, fitted on the subset
    assert data.x.shape == (300, 10)
    assert data.x.mean(0).abs().max() < 1e-4
    cov = torch.cov(data.x.double().t())
    assert (cov - torch.diag(torch.diag(cov))).abs().max() < 1e-4 * cov.diag().max()
    assert (cov.diag()[:-1] >= cov.diag()[1:]).all()
    assert edge_set(data.edge_index) == brute_force_knn(data.x.double().numpy(), 4, "cosine")
    assert data.source["options"] == {"num_instances": 300, "pca": 10, "knn": 4, "knn_metric": "cosine"}


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"num_instances": 5000}, ValueError, r"num_instances must be an int in \[1, 1797\]"),
    ({"pca": 65}, ValueError, r"pca must be an int in \[1, 64\]"),
    ({"knn": 1797}, ValueError, r"knn=1797 neighbours per node needs more than 1797 nodes"),
    ({"knn_metric": "cosine"}, ValueError, r"no graph is built without knn"),
    ({"root": "."}, ValueError, r"dataset 'digits' ships with scikit-learn: drop --root"),
])
def test_digits_refuses_bad_options(options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_dataset("digits", **options)


def test_graph_datasets_refuse_the_instance_options() -> None:
    with pytest.raises(ValueError, match=r"knn applies to the datasets without a graph \(digits, fashion-mnist, "):
        load_dataset("cora", knn=5)


# ---- label-rate splits -----------------------------------------------------------------------

@pytest.mark.parametrize("per_class", [10, 50, 100])
def test_label_rate_splits(per_class: int) -> None:
    data = load_dataset("digits")
    splits = [make_split(data, "random", s, per_class=per_class) for s in (0, 1)]
    for split in splits:
        assert torch.equal(torch.bincount(data.y[split.train], minlength=10), torch.full((10,), per_class))
        assert split.val.numel() == 300
        assert split.test.numel() == 1797 - 10 * per_class - 300  # every other instance tests
        every = torch.cat([split.train, split.val, split.test])
        assert torch.equal(every.sort().values, torch.arange(1797))  # disjoint and complete
    assert torch.equal(make_split(data, "random", 0, per_class=per_class).train, splits[0].train)  # seeded
    assert not torch.equal(splits[0].train, splits[1].train)


def test_label_rate_split_of_a_larger_dataset_validates_on_1000() -> None:
    data = load_dataset("digits")
    split = make_split(data, "random", 3, per_class=20, num_val=1000)
    assert (split.train.numel(), split.val.numel(), split.test.numel()) == (200, 1000, 597)


# ---- Fashion-MNIST ---------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fashion_root(tmp_path: Path, train: int = 30, test: int = 10) -> tuple[Path, np.ndarray, np.ndarray]:
    """A miniature Fashion-MNIST: ``train`` + ``test`` images of 28 x 28 random pixels."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(train + test, 28, 28))
    labels = np.arange(train + test) % 10
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte.gz", images[:train])
    write_idx(raw / "train-labels-idx1-ubyte.gz", labels[:train])
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images[train:])
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels[train:])
    return tmp_path, images, labels


def test_fashion_mnist_reads_the_idx_files(tmp_path: Path) -> None:
    root, images, labels = fashion_root(tmp_path)
    data = load_dataset("fashion-mnist", root=root)
    assert data.x.shape == (40, 784) and data.edge_index.shape == (2, 0)
    assert torch.allclose(data.x, torch.from_numpy(images.reshape(40, 784) / 255).float())  # training images first
    assert torch.equal(data.y, torch.from_numpy(labels))
    subset = load_dataset("fashion-mnist", root=root, num_instances=25, knn=3)
    assert subset.num_nodes == 25 and subset.source["root"] == str(root.resolve())
    assert edge_set(subset.edge_index) == brute_force_knn(subset.x.double().numpy(), 3, "euclidean")


@pytest.mark.parametrize(("damage", "error", "match"), [
    ("missing", FileNotFoundError, r"lacks .*FashionMNIST/raw/t10k-labels-idx1-ubyte\.gz .*nothing is downloaded"),
    ("truncated", ValueError, r"t10k-images-idx3-ubyte\.gz holds \d+ bytes of values, but its header announces"),
    ("not idx", ValueError, r"train-labels-idx1-ubyte\.gz is not an IDX file"),
    ("not gzip", ValueError, r"train-images-idx3-ubyte\.gz is not a readable IDX file"),
])
def test_fashion_mnist_damaged_files_are_named(tmp_path: Path, damage: str, error: type, match: str) -> None:
    root, _, _ = fashion_root(tmp_path)
    raw = root / "FashionMNIST" / "raw"
    if damage == "missing":
        (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    elif damage == "truncated":
        content = gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes())
        (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(content[:-5]))
    elif damage == "not idx":
        (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"hello world"))
    else:
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"plain text, not gzip")
    before = {p: p.read_bytes() for p in raw.iterdir()}
    with pytest.raises(error, match=match):
        load_dataset("fashion-mnist", root=root)
    assert {p: p.read_bytes() for p in raw.iterdir()} == before  # root is only read


def test_fashion_mnist_needs_a_root() -> None:
    with pytest.raises(ValueError, match=r"read from --root DIR holding FashionMNIST/raw.*never downloaded"):
        load_dataset("fashion-mnist")


def test_read_idx_reads_unzipped_files(tmp_path: Path) -> None:
    array = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    (tmp_path / "a").write_bytes(gzip.decompress((tmp_path / "a.gz").read_bytes()))
    assert np.array_equal(read_idx(tmp_path / "a"), array) and np.array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.skipif(not (SHARED / "FashionMNIST" / "raw").is_dir(), reason="../shared/data/FashionMNIST not present")
def test_fashion_mnist_from_the_shared_data() -> None:
    data = load_dataset("fashion-mnist", root=SHARED)
    assert data.x.shape == (15_000, 784) and data.num_classes == 10
    assert 0 <= float(data.x.min()) and float(data.x.max()) <= 1
    counts = torch.bincount(data.y, minlength=10)
    assert counts.sum() == 15_000 and counts.min() > 1300  # a random subset of the 7,000 per class
    split = make_split(data, "random", 0)  # the default label rate: 10 per class, 1,000 validation, the rest test
    assert torch.equal(torch.bincount(data.y[split.train], minlength=10), torch.full((10,), 10))
    assert (split.val.numel(), split.test.numel()) == (1000, 15_000 - 100 - 1000)


# ---- 20 Newsgroups ---------------------------------------------------------------------------

WORDS = ("apple", "banana", "cherry", "delta", "echo", "foxtrot")
OTHER = "comp.graphics"  # a newsgroup outside the 10 used: its posts are dropped


def newsgroups_posts() -> dict[tuple[str, str, int], np.ndarray]:
    """(part, newsgroup, post number) → the post's word counts over :data:`WORDS`; two posts per
    newsgroup and part, each with its own counts, plus posts of an 11th newsgroup."""
    posts = {}
    for g, group in enumerate((*NEWSGROUPS_CATEGORIES, OTHER)):
        for p, part in enumerate(("train", "test")):
            for i in range(2):
                counts = np.zeros(len(WORDS), dtype=int)
                counts[(g + p + i) % len(WORDS)] = 1 + i + p
                counts[(2 * g + 1) % len(WORDS)] += 1 + g % 3
                posts[(part, group, i)] = counts
    return posts


def write_newsgroups(folder: Path) -> None:
    """The unpacked archive's layout: 20news-bydate-{train,test}/<newsgroup>/<post number>. Each
    post also holds stop words and one word of its own (in a single post: under min_df)."""
    for (part, group, i), counts in newsgroups_posts().items():
        path = folder / f"20news-bydate-{part}" / group / str(1000 + i)
        path.parent.mkdir(parents=True, exist_ok=True)
        words = [w for w, c in zip(WORDS, counts) for _ in range(c)]
        path.write_text(f"the {' and '.join(words)} of unique{group.replace('.', '')}{part}{i}\n", encoding="latin1")


def expected_newsgroups() -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF by hand: idf = ln(n / df) + 1 (no smoothing), rows scaled to unit norm; words in
    fewer than 5% of the posts (the unique ones) dropped; labels in sorted newsgroup order."""
    kept = {k: v for k, v in newsgroups_posts().items() if k[1] != OTHER}
    counts = np.array(list(kept.values()), dtype=float)
    df = (counts > 0).sum(0)
    tfidf = counts * (np.log(len(counts) / df) + 1)
    order = sorted(NEWSGROUPS_CATEGORIES)
    return tfidf / np.linalg.norm(tfidf, axis=1, keepdims=True), np.array([order.index(k[1]) for k in kept])


def as_rows(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> list[tuple]:
    return sorted((int(label), *np.round(np.asarray(row, dtype=float), 6)) for row, label in zip(x, y))


def test_newsgroups_from_the_unpacked_archive(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_newsgroups(root / "20newsgroups")
    before = sorted(p for p in root.rglob("*"))
    data = load_dataset("20newsgroups", root=root, cache=tmp_path / "cache")
    x, y = expected_newsgroups()
    assert data.x.shape == (40, len(WORDS)) and data.edge_index.shape == (2, 0) and data.num_classes == 10
    assert as_rows(data.x, data.y) == as_rows(x, y)
    assert sorted(p for p in root.rglob("*")) == before  # the cache file is made in the cache, not under root
    assert (tmp_path / "cache" / "20newsgroups" / NEWSGROUPS_CACHE).is_file()


def test_newsgroups_cache_matches_scikit_learns_own_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn's downloader, given the miniature as its archive, writes the cache file that
    --root may hold; reading it gives the same data, in the same order, as the unpacked folders."""
    from sklearn.datasets import _twenty_newsgroups, fetch_20newsgroups

    write_newsgroups(tmp_path / "posts")
    archive = tmp_path / "20news-bydate.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for part in ("train", "test"):
            tar.add(tmp_path / "posts" / f"20news-bydate-{part}", arcname=f"20news-bydate-{part}")

    def fetch_remote(remote, dirname=None, **_):  # instead of the network: the miniature archive
        return shutil.copy(archive, Path(dirname) / remote.filename)

    monkeypatch.setattr(_twenty_newsgroups, "_fetch_remote", fetch_remote)
    fetch_20newsgroups(data_home=str(tmp_path / "sklearn" / "20newsgroups"), subset="all")
    assert (tmp_path / "sklearn" / "20newsgroups" / NEWSGROUPS_CACHE).is_file()
    from_sklearn = load_dataset("20newsgroups", root=tmp_path / "sklearn", cache=tmp_path / "cache1")
    shutil.copytree(tmp_path / "posts", tmp_path / "unpacked" / "20newsgroups")
    from_folders = load_dataset("20newsgroups", root=tmp_path / "unpacked", cache=tmp_path / "cache2")
    assert torch.equal(from_sklearn.x, from_folders.x) and torch.equal(from_sklearn.y, from_folders.y)
    x, y = expected_newsgroups()
    assert as_rows(from_sklearn.x, from_sklearn.y) == as_rows(x, y)


def test_newsgroups_missing_files_and_newsgroups_are_named(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--root .*root lacks .*20newsgroups/20news-bydate_py3\.pkz "
                                                r"\(scikit-learn's cache.*20news-bydate-train and .*nothing is downloaded"):
        load_dataset("20newsgroups", root=tmp_path / "root", cache=tmp_path / "cache")
    write_newsgroups(tmp_path / "root" / "20newsgroups")
    shutil.rmtree(tmp_path / "root" / "20newsgroups" / "20news-bydate-train" / "sci.med")
    shutil.rmtree(tmp_path / "root" / "20newsgroups" / "20news-bydate-test" / "sci.med")
    with pytest.raises(ValueError, match=r"have no newsgroup sci\.med \(of the 10 used"):
        load_dataset("20newsgroups", root=tmp_path / "root", cache=tmp_path / "cache")


def test_newsgroups_damaged_cache_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "root" / "20newsgroups").mkdir(parents=True)
    (tmp_path / "root" / "20newsgroups" / NEWSGROUPS_CACHE).write_bytes(b"not a cache")
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(FileNotFoundError, match=r"20news-bydate_py3\.pkz could not be read"):
        load_dataset("20newsgroups", root=tmp_path / "root", cache=tmp_path / "cache")
    assert out.getvalue() == ""


# ---- training --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gcn", "gat", "sgc", "appnp", "difformer_s"])
def test_models_that_need_a_graph_are_refused_without_one(model: str) -> None:
    with pytest.raises(ValueError, match=rf"model {model} .* dataset 'digits' has no edges: build a k-nearest-neighbour "
                                         r"graph with --knn K"):
        run_experiment("digits", ModelConfig(model=model), TrainConfig(epochs=1))


@pytest.mark.parametrize(("flags", "edges", "use_graph"), [([], 0, False), (["--knn", "3"], None, True)])
def test_train_without_a_graph_and_with_the_knn_graph(tmp_path: Path, flags: list[str], edges: int | None,
                                                      use_graph: bool) -> None:
    args = ["train", "--dataset", "digits", "--num-instances", "300", "--labels-per-class", "5", "--val-size", "50",
            "--layers", "1", "--hidden", "8", "--epochs", "2", "--out", str(tmp_path / "run"), "--json", *flags]
    with redirect_stdout(io.StringIO()) as out:
        assert main(args) == 0
    payload = json.loads(out.getvalue())
    assert payload["model"]["use_graph"] is use_graph
    assert payload["split_sizes"]["0"] == [50, 50, 200]
    expected = edges if edges is not None else knn_graph(load_dataset("digits", num_instances=300).x, 3).shape[1]
    assert payload["num_edges"] == expected
    assert payload["source"]["options"]["knn"] == (3 if flags else None)
