"""Datasets: the embedded Cora (offline) and PyG's node-classification benchmarks, with splits."""

from ._embedded import load_cora
from .datasets import DATASETS, available_datasets, default_cache, load_dataset, row_normalise
from .splits import SPLIT_KINDS, Split, mask_split, random_split

__all__ = [
    "DATASETS",
    "SPLIT_KINDS",
    "Split",
    "available_datasets",
    "default_cache",
    "load_cora",
    "load_dataset",
    "mask_split",
    "random_split",
    "row_normalise",
]
