"""The k-nearest-neighbour graph of a set of feature vectors: the "partially observed" structure
for instances that come without a graph (the DIFFormer paper's GCN-kNN / GAT-kNN baselines and
the optional graph term of its attention models).

Node j is a neighbour of node i when it is one of the ``k`` nodes closest to x_i (i itself
excluded) under the ``metric``: ``euclidean`` ‖x_i − x_j‖ or ``cosine`` 1 − x_iᵀx_j / (‖x_i‖‖x_j‖)
(scikit-learn's cosine distance: an all-zero row is at distance 1 from every row). The graph is
made undirected, i — j when either is among the other's k nearest (so degrees are ≥ k, not = k),
with no self-loops and no duplicate edges; the models' normalisation adds the self-loops, as for
any other graph. The neighbours are found exactly by scikit-learn's ``NearestNeighbors``, whose
brute-force search computes the distances in row chunks bounded by its ``working_memory``
(1 GB by default) and never holds the N × N matrix. Ties at the k-th distance are broken by
scikit-learn (any of the tied nodes may be chosen).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .synthetic import undirected_edges

KNN_METRICS = ("cosine", "euclidean")


def check_knn(k: object, metric: object, num_nodes: int | None = None) -> None:
    """Refuse a ``k`` that is not an int ≥ 1 (or, given ``num_nodes``, not below it) and a
    ``metric`` outside :data:`KNN_METRICS`, naming ``knn`` / ``knn_metric`` and the fix."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"knn (the neighbours per node of the k-nearest-neighbour graph) must be an int >= 1, "
                         f"got {k!r}; e.g. knn=10 (the authors used 5)")
    if num_nodes is not None and k >= num_nodes:
        raise ValueError(f"knn={k} neighbours per node needs more than {k} nodes, but there are {num_nodes}: use "
                         f"knn {max(1, num_nodes - 1)} or less")
    if metric not in KNN_METRICS:
        raise ValueError(f"knn_metric must be one of {', '.join(KNN_METRICS)}, got {metric!r}")


def knn_graph(x: torch.Tensor | np.ndarray, k: int, metric: str = "cosine") -> torch.Tensor:
    """The undirected k-nearest-neighbour graph of the rows of ``x`` [N, F] as an ``edge_index``
    [2, E] (long): i — j whenever j is among the ``k`` nearest rows of i or i among those of j,
    each edge once in each direction, no self-loops (see the module docstring for the metric).

    Raises ValueError for ``k`` not an int in [1, N), an unknown ``metric``, an ``x`` that is not
    two-dimensional or holds NaN/Inf."""
    from sklearn.neighbors import NearestNeighbors

    features = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if features.ndim != 2:
        raise ValueError(f"knn_graph: x must be [N, F] feature vectors, got shape {tuple(features.shape)}")
    n = features.shape[0]
    check_knn(k, metric, n)
    if not np.isfinite(features).all():
        raise ValueError("knn_graph: x holds NaN or Inf, which have no distance; clean the features first")
    search = NearestNeighbors(n_neighbors=int(k), metric=metric, algorithm="brute").fit(features)
    neighbours = torch.from_numpy(search.kneighbors(return_distance=False)).long()  # no query: i is not its own neighbour
    rows = torch.arange(n).repeat_interleave(int(k))
    return undirected_edges(rows, neighbours.reshape(-1), n)
