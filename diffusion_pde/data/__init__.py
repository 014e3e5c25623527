"""Datasets: the embedded Cora (offline), PyG's node-classification benchmarks, the large graphs
(OGB's ogbn-arxiv/products/proteins, LINKX's Pokec), a seeded synthetic benchmark of any size and
a user's own graph (a saved Data or a folder of CSV/NPY files), with splits; a graph's largest
connected component (GRAND's protocol); datasets without a graph (digits, Fashion-MNIST, 20
Newsgroups: instances as nodes) and their k-nearest-neighbour graphs."""

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
from .instances import INSTANCE_DATASETS, INSTANCE_OPTIONS, load_instances
from .knn import KNN_METRICS, knn_graph
from .splits import GRAND_SIZES, PAPER_SIZES, SPLIT_KINDS, Split, grand_split, mask_split, random_sizes, random_split
from .synthetic import SYNTHETIC_DEFAULTS, synthetic_graph
from .temporal import TEMPORAL_DATASETS, TemporalSignal, load_temporal, make_windows, temporal_split
from .user import load_graph, validate_graph_data, validate_split

__all__ = [
    "DATASETS",
    "GRAND_SIZES",
    "INSTANCE_DATASETS",
    "INSTANCE_OPTIONS",
    "KNN_METRICS",
    "PAPER_SIZES",
    "SPLIT_KINDS",
    "SYNTHETIC_DEFAULTS",
    "Split",
    "TEMPORAL_DATASETS",
    "TemporalSignal",
    "available_datasets",
    "dataset_source",
    "default_cache",
    "default_split",
    "grand_split",
    "is_builtin",
    "is_connected",
    "knn_graph",
    "largest_component",
    "load_cora",
    "load_dataset",
    "load_graph",
    "load_instances",
    "load_temporal",
    "make_windows",
    "mask_split",
    "offered_splits",
    "open_dataset",
    "random_sizes",
    "random_split",
    "row_normalise",
    "split_sizes",
    "synthetic_graph",
    "temporal_split",
    "validate_graph_data",
    "validate_split",
]
