"""Datasets: the embedded Cora (offline), PyG's node-classification benchmarks, the large graphs
(OGB's ogbn-arxiv/products/proteins, LINKX's Pokec), a seeded synthetic benchmark of any size and
a user's own graph (a saved Data or a folder of CSV/NPY files), with splits."""

from ._embedded import load_cora
from .datasets import (
    DATASETS,
    available_datasets,
    dataset_source,
    default_cache,
    default_split,
    is_builtin,
    load_dataset,
    offered_splits,
    open_dataset,
    row_normalise,
    split_sizes,
)
from .splits import PAPER_SIZES, SPLIT_KINDS, Split, mask_split, random_sizes, random_split
from .synthetic import SYNTHETIC_DEFAULTS, synthetic_graph
from .user import load_graph, validate_graph_data, validate_split

__all__ = [
    "DATASETS",
    "PAPER_SIZES",
    "SPLIT_KINDS",
    "SYNTHETIC_DEFAULTS",
    "Split",
    "available_datasets",
    "dataset_source",
    "default_cache",
    "default_split",
    "is_builtin",
    "load_cora",
    "load_dataset",
    "load_graph",
    "mask_split",
    "offered_splits",
    "open_dataset",
    "random_sizes",
    "random_split",
    "row_normalise",
    "split_sizes",
    "synthetic_graph",
    "validate_graph_data",
    "validate_split",
]
