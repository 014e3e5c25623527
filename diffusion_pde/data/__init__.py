"""Datasets: the embedded Cora (offline), PyG's node-classification benchmarks and a user's own
graph (a saved Data or a folder of CSV/NPY files), with splits."""

from ._embedded import load_cora
from .datasets import DATASETS, available_datasets, default_cache, load_dataset, row_normalise
from .splits import SPLIT_KINDS, Split, mask_split, random_split
from .user import load_graph, validate_graph_data, validate_split

__all__ = [
    "DATASETS",
    "SPLIT_KINDS",
    "Split",
    "available_datasets",
    "default_cache",
    "load_cora",
    "load_dataset",
    "load_graph",
    "mask_split",
    "random_split",
    "row_normalise",
    "validate_graph_data",
    "validate_split",
]
