"""Datasets: the embedded Cora (offline), PyG's node-classification benchmarks and a user's own
graph (a saved Data or a folder of CSV/NPY files), with splits."""

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
)
from .splits import PAPER_SIZES, SPLIT_KINDS, Split, mask_split, random_sizes, random_split
from .user import load_graph, validate_graph_data, validate_split

__all__ = [
    "DATASETS",
    "PAPER_SIZES",
    "SPLIT_KINDS",
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
    "validate_graph_data",
    "validate_split",
]
