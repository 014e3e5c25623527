"""Datasets: the embedded Cora (offline), PyG's node-classification benchmarks, the large graphs
(OGB's ogbn-arxiv/products/proteins, LINKX's Pokec), a seeded synthetic benchmark of any size and
a user's own graph (a saved Data or a folder of CSV/NPY files), with splits; a graph's largest
connected component (GRAND's protocol)."""

from ._embedded import load_cora
from .components import is_connected, largest_component
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
from .splits import GRAND_SIZES, PAPER_SIZES, SPLIT_KINDS, Split, grand_split, mask_split, random_sizes, random_split
from .synthetic import SYNTHETIC_DEFAULTS, synthetic_graph
from .user import load_graph, validate_graph_data, validate_split

__all__ = [
    "DATASETS",
    "GRAND_SIZES",
    "PAPER_SIZES",
    "SPLIT_KINDS",
    "SYNTHETIC_DEFAULTS",
    "Split",
    "available_datasets",
    "dataset_source",
    "default_cache",
    "default_split",
    "grand_split",
    "is_builtin",
    "is_connected",
    "largest_component",
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
