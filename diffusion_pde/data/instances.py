"""Instances without a graph: classification datasets of feature vectors, each instance a node.

The DIFFormer paper classifies images and texts with no input graph: its attention diffuses over
all N instances (the latent structure), and a k-nearest-neighbour graph of the features
(:func:`~diffusion_pde.data.knn.knn_graph`) is the "partially observed" structure for the graph
term and for the GCN-kNN / GAT-kNN baselines. Each dataset here becomes a PyG ``Data`` with
``x`` [N, F], ``y`` [N] and an empty ``edge_index`` [2, 0], or the kNN graph with ``knn=K``.

* ``digits``: scikit-learn's ``load_digits`` (ships in its wheel, offline): 1,797 grey images of
  8 × 8 pixels, 10 classes; features the 64 pixel values divided by 16 (in [0, 1]).
* ``fashion-mnist``: the IDX files of Fashion-MNIST under ``<root>/FashionMNIST/raw``
  (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``, gzipped or not; the layout torchvision reads): 60,000 + 10,000
  images of 28 × 28 pixels, 10 classes, training images first; features the 784 pixel values
  divided by 255. Never downloaded: ``root`` is required.
* ``20newsgroups``: the 20 Newsgroups posts (train and test, headers kept) of the authors' 10
  categories (:data:`NEWSGROUPS_CATEGORIES`), labels 0..9 in the sorted order of their names;
  features as the authors compute them: word counts of ``CountVectorizer(stop_words="english",
  min_df=0.05)`` (words in at least 5% of the posts), then ``TfidfTransformer(smooth_idf=False)``
  (rows of unit L2 norm; a post without any kept word is a zero row). Read by scikit-learn's
  ``fetch_20newsgroups`` from ``<root>/20newsgroups`` holding either scikit-learn's cache file
  ``20news-bydate_py3.pkz`` (what ``fetch_20newsgroups`` leaves in its ``data_home``, by default
  ``~/scikit_learn_data``) or the folders ``20news-bydate-train`` and ``20news-bydate-test`` (the
  official archive ``20news-bydate.tar.gz`` unpacked: one folder per newsgroup, one file per
  post), which are turned into that cache file in the cache folder exactly as scikit-learn's
  downloader does. Without ``root`` scikit-learn downloads the archive (14 MB) into the cache.
  The cache file is a pickle: load only one you trust.

Options (``load_dataset(name, **options)``, recorded in ``data.source`` so that a checkpoint
loads the same data again): ``num_instances`` keeps a seeded random subset of that many instances
(generator seed 0, kept in their original order; default: all, 15,000 on ``fashion-mnist`` as
the paper's CIFAR-10 subset); ``pca`` reduces the features to that many principal components
(scikit-learn's ``PCA``, ``random_state=0``, fitted on all kept instances: no labels are used);
``knn`` builds the k-nearest-neighbour graph of the final features under ``knn_metric``
(``euclidean``, the authors' ``kneighbors_graph``, or ``cosine``). ``root`` is only read.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import numbers
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch_geometric.data import Data

from .knn import check_knn, knn_graph
from .large import copy_changed

INSTANCE_DATASETS = ("digits", "fashion-mnist", "20newsgroups")
INSTANCE_OPTIONS: dict[str, Any] = {"num_instances": None, "pca": None, "knn": None, "knn_metric": "euclidean"}
DEFAULT_INSTANCES = {"fashion-mnist": 15_000}

NEWSGROUPS_CATEGORIES = ("alt.atheism", "comp.sys.ibm.pc.hardware", "misc.forsale", "rec.autos", "rec.sport.hockey",
                         "sci.crypt", "sci.electronics", "sci.med", "sci.space", "talk.politics.guns")
NEWSGROUPS_CACHE = "20news-bydate_py3.pkz"  # scikit-learn's cache file of fetch_20newsgroups
NEWSGROUPS_FOLDERS = ("20news-bydate-train", "20news-bydate-test")
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _digits(root: Path | None, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    if root is not None:
        raise ValueError("root (--root) is for the datasets read from files; dataset 'digits' ships with scikit-learn: "
                         "drop --root")
    digits = load_digits()
    return digits.data / 16.0, digits.target


def read_idx(path: Path) -> np.ndarray:
    """The array of an IDX file (the MNIST format: two zero bytes, a type code, the number of
    dimensions, each dimension as a big-endian uint32, then the values), gzipped when its name
    ends in ``.gz``. Raises ValueError naming the file when it is not a complete IDX file."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a damaged gzip stream
        raise ValueError(f"{path} is not a readable IDX file ({err}); replace it with the original file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (its first bytes are not 0, 0, a type code); replace it with the "
                         "original Fashion-MNIST file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    body = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - body != expected:
        raise ValueError(f"{path} holds {len(raw) - body} bytes of values, but its header announces {shape} "
                         f"({expected} bytes): the file is truncated or damaged; replace it with the original file")
    return np.frombuffer(raw, dtype=dtype, offset=body).reshape(shape)


def _fashion_mnist(root: Path | None, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    if root is None:
        raise ValueError("dataset 'fashion-mnist' is read from --root DIR holding FashionMNIST/raw/*-idx?-ubyte.gz (e.g. "
                         "../shared/data); it is never downloaded")
    folder = root / "FashionMNIST" / "raw"
    images, labels = [], []
    for part, names in FASHION_FILES.items():
        for name, out in zip(names, (images, labels)):
            path = next((folder / (name + suffix) for suffix in (".gz", "") if (folder / (name + suffix)).is_file()), None)
            if path is None:
                raise FileNotFoundError(f"dataset 'fashion-mnist': --root {root} lacks {folder / name}.gz (or {name} "
                                        "unzipped); add the four Fashion-MNIST IDX files there (the layout torchvision "
                                        "reads, as in ../shared/data), nothing is downloaded")
            out.append(read_idx(path))
        if images[-1].ndim != 3 or labels[-1].ndim != 1 or images[-1].shape[0] != labels[-1].shape[0]:
            raise ValueError(f"dataset 'fashion-mnist': the {part} files in {folder} hold images of shape "
                             f"{images[-1].shape} and labels of shape {labels[-1].shape}; expected [n, 28, 28] images "
                             "and n labels: replace them with the original files")
    x = np.concatenate([im.reshape(im.shape[0], -1) for im in images]).astype(np.float32) / 255.0
    return x, np.concatenate(labels).astype(np.int64)


def _newsgroups_home(root: Path | None, cache: Path) -> Path:
    """The scikit-learn ``data_home`` to read 20 Newsgroups from: under the cache, holding the
    cache file copied from ``root`` (or made from the unpacked archive's folders there)."""
    home = cache / "20newsgroups"
    if root is None:
        return home
    source = root / "20newsgroups"
    if (source / NEWSGROUPS_CACHE).is_file():
        copy_changed(source / NEWSGROUPS_CACHE, home / NEWSGROUPS_CACHE)
        return home
    folders = [source / name for name in NEWSGROUPS_FOLDERS]
    if all(folder.is_dir() for folder in folders):
        _write_newsgroups_cache(folders, home / NEWSGROUPS_CACHE)
        return home
    raise FileNotFoundError(
        f"dataset '20newsgroups': --root {root} lacks {source / NEWSGROUPS_CACHE} (scikit-learn's cache, as "
        f"fetch_20newsgroups leaves it in ~/scikit_learn_data) and the folders {folders[0]} and {folders[1]} (the "
        "archive 20news-bydate.tar.gz unpacked); nothing is downloaded when --root is given: add either there, or omit "
        "--root to download")


def _write_newsgroups_cache(folders: list[Path], path: Path) -> None:
    """scikit-learn's cache file of 20 Newsgroups made from the unpacked archive's train and test
    folders, as its downloader makes it (``load_files`` of each with latin-1 decoding, pickled and
    zlib-compressed), written atomically; kept when it is already there and no post is newer."""
    from sklearn.datasets import load_files

    posts = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    if not posts:
        raise FileNotFoundError(f"dataset '20newsgroups': {folders[0]} and {folders[1]} hold no posts; they must hold "
                                "one folder per newsgroup with one file per post (20news-bydate.tar.gz unpacked)")
    if path.is_file() and path.stat().st_mtime >= max(p.stat().st_mtime for p in posts):
        return
    contents = dict(zip(("train", "test"), (load_files(str(folder), encoding="latin1") for folder in folders)))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(codecs.encode(pickle.dumps(contents), "zlib_codec"))
    partial.replace(path)


def _newsgroups(root: Path | None, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import fetch_20newsgroups
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    home = _newsgroups_home(root, cache)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # scikit-learn prints when its cache file is damaged
            posts = fetch_20newsgroups(data_home=str(home), subset="all", shuffle=False, download_if_missing=root is None)
    except Exception as err:  # network errors of any kind, or a cache file scikit-learn cannot read
        where = f"{root / '20newsgroups' / NEWSGROUPS_CACHE} could not be read" if root is not None else \
            "could not be downloaded"
        raise FileNotFoundError(
            f"dataset '20newsgroups': {where} ({type(err).__name__}: {str(err)[:120]}); pass --root DIR holding "
            f"20newsgroups/{NEWSGROUPS_CACHE} (scikit-learn's cache) or 20newsgroups/{NEWSGROUPS_FOLDERS[0]} and "
            f"{NEWSGROUPS_FOLDERS[1]} (20news-bydate.tar.gz unpacked)") from err
    names = list(posts.target_names)
    missing = [c for c in NEWSGROUPS_CATEGORIES if c not in names]
    if missing:
        raise ValueError(f"dataset '20newsgroups': the posts under {home} have no newsgroup {', '.join(missing)} (of the "
                         f"10 used: {', '.join(NEWSGROUPS_CATEGORIES)}); give the complete dataset")
    kept = np.array(sorted(names.index(c) for c in NEWSGROUPS_CATEGORIES))
    mask = np.isin(posts.target, kept)
    texts = [text for text, keep in zip(posts.data, mask) if keep]
    counts = CountVectorizer(stop_words="english", min_df=0.05).fit_transform(texts)
    x = TfidfTransformer(smooth_idf=False).fit_transform(counts).toarray().astype(np.float32)
    return x, np.searchsorted(kept, posts.target[mask]).astype(np.int64)


READERS: dict[str, Callable[[Path | None, Path], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _digits, "fashion-mnist": _fashion_mnist, "20newsgroups": _newsgroups}


def _count_option(name: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}] ({what}), got {value!r}")
    return int(value)


def check_instance_options(num_instances: object = None, pca: object = None, knn: object = None,
                           knn_metric: object = "euclidean") -> None:
    """The checks of the options that need no data (types, ranges that hold for any N), so that
    they fail before a dataset is read: ``num_instances`` and ``pca`` ints ≥ 1 (or None),
    ``knn`` an int ≥ 1 (or None) and ``knn_metric`` one of :data:`~diffusion_pde.data.knn.KNN_METRICS`."""
    for name, value in (("num_instances", num_instances), ("pca", pca)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 or None (all), got {value!r}")
    if knn is None and knn_metric != INSTANCE_OPTIONS["knn_metric"]:
        raise ValueError(f"knn_metric={knn_metric!r} chooses the distance of the k-nearest-neighbour graph, but no graph "
                         "is built without knn: add knn=K (--knn K) or drop knn_metric")
    if knn is not None:
        check_knn(knn, knn_metric)


def load_instances(name: str, root: Path | None, cache: Path, *, num_instances: int | None = None,
                   pca: int | None = None, knn: int | None = None, knn_metric: str = "euclidean") -> Data:
    """Dataset ``name`` (:data:`INSTANCE_DATASETS`) as a ``Data``: ``x`` [N, F] float32, ``y``
    [N], ``edge_index`` [2, 0] or the kNN graph, ``source`` with the effective options (see the
    module docstring for the files, features and options).

    Raises ValueError for an option out of range (naming it and its range), FileNotFoundError
    naming the missing file and the fix when ``root`` lacks the dataset's files."""
    check_instance_options(num_instances, pca, knn, knn_metric)
    x, y = READERS[name](root, cache)
    total = x.shape[0]
    n = min(DEFAULT_INSTANCES.get(name, total), total) if num_instances is None else num_instances
    n = _count_option("num_instances", n, 1, total, f"the instances to keep of the {total} of {name}")
    if n < total:
        keep = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n].sort().values.numpy()
        x, y = x[keep], y[keep]
    if pca is not None:
        from sklearn.decomposition import PCA

        components = _count_option("pca", pca, 1, min(x.shape), f"principal components of the {x.shape[0]} x "
                                                                  f"{x.shape[1]} features")
        x = PCA(n_components=components, random_state=0).fit_transform(x).astype(np.float32)
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    edge_index = knn_graph(features, knn, knn_metric) if knn is not None else torch.zeros(2, 0, dtype=torch.long)
    data = Data(x=features, edge_index=edge_index, y=torch.from_numpy(np.asarray(y, dtype=np.int64)), num_nodes=n)
    data.source = {"kind": "builtin", "name": name, "root": str(root.resolve()) if root is not None else None,
                   "options": {"num_instances": n, "pca": pca, "knn": knn, "knn_metric": knn_metric}}
    return data
