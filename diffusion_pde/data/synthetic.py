"""A seeded synthetic node-classification benchmark that scales linearly to millions of nodes.

The generative model (a planted-partition graph with Gaussian features), for N nodes, C classes,
F features, average degree d, homophily p and feature noise σ:

* classes: the N nodes are split into C classes of sizes ⌊N/C⌋ or ⌈N/C⌉ (balanced), then the
  node ids are shuffled by a random permutation, so a node's id says nothing about its class;
* edges: M = round(N d / 2) undirected edges, each drawn independently: a source node uniformly
  at random, then with probability p a target uniformly among the nodes of the source's class,
  else uniformly among the nodes of the other classes. Self-loops are dropped, the graph is made
  undirected and duplicate edges are merged (as ``torch_geometric.utils.to_undirected`` does, by
  :func:`undirected_edges`), so the average degree E/N is d up to the few merged duplicates and
  self-loops (about d²C/(2N) + dC/N per node, negligible for large N);
* features: x_i = μ_{y_i} + σ ε_i with class means μ_c drawn from N(0, I_F) and scaled to unit
  norm, and ε_i ~ N(0, I_F). With σ = 1 the classes overlap: features alone classify well above
  chance but far from perfectly, and averaging over same-class neighbours helps.

Drawing the targets within or outside a class is O(1) per edge because, before the shuffle,
every class occupies a contiguous range of ids; nothing is quadratic in N. Time and memory are
O(N F + N d): docs/scale.md reports the measured cost up to 2M nodes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch_geometric.data import Data

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "num_nodes": 10_000,
    "num_classes": 10,
    "num_features": 64,
    "degree": 10.0,
    "homophily": 0.8,
    "feature_noise": 1.0,
    "seed": 0,
}

_CHUNK = 1 << 16  # rows per step when adding the class means (bounds the temporary memory)


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    return value


def _real(name: str, value: object, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def undirected_edges(a: torch.Tensor, b: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """The undirected graph of the edges a_k — b_k as a [2, E] ``edge_index``: every edge once in
    each direction, duplicates merged, self-loops dropped. The same edge set as
    ``torch_geometric.utils.to_undirected`` after removing self-loops (its columns in another
    order: all pairs (lo, hi), lo < hi, sorted, then their reverses), in a third of its time at
    millions of edges: one sort of the M canonical pairs instead of the 2M directed ones."""
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    key, order = (lo * num_nodes + hi).sort()
    first = torch.empty_like(key, dtype=torch.bool)
    first[:1] = True
    torch.ne(key[1:], key[:-1], out=first[1:])
    del key
    lo, hi = lo.index_select(0, order), hi.index_select(0, order)
    del order
    first &= lo != hi
    lo, hi = lo.masked_select(first), hi.masked_select(first)
    m = lo.numel()
    edge_index = torch.empty(2, 2 * m, dtype=lo.dtype)
    edge_index[0, :m], edge_index[0, m:], edge_index[1, :m], edge_index[1, m:] = lo, hi, hi, lo
    return edge_index


def synthetic_graph(num_nodes: int, num_classes: int = 10, num_features: int = 64, degree: float = 10.0,
                    homophily: float = 0.8, feature_noise: float = 1.0, seed: int = 0, *,
                    dtype: torch.dtype = torch.float32) -> Data:
    """A planted-partition graph with class-informative Gaussian features (see the module
    docstring for the generative model). The same arguments give the same graph (on the same
    torch version).

    Args:
        num_nodes: N >= 2 C.
        num_classes: C >= 2 balanced classes.
        num_features: F >= 1.
        degree: the average number of neighbours d, in (0, N - 1).
        homophily: p in [0, 1], the share of edges drawn within a class.
        feature_noise: σ >= 0, the per-feature noise around the unit-norm class means.
        seed: seeds the one generator that draws everything.

    Returns:
        ``Data`` with ``x`` [N, F] (``dtype``), ``edge_index`` [2, E] (undirected, coalesced, no
        self-loops; E ≈ N d), ``y`` [N] (long, 0..C-1), ``num_classes``, ``name`` ("synthetic")
        and ``source`` (the arguments, so that a checkpoint can generate the graph again).
    """
    num_classes = _count("num_classes", num_classes, 2)
    num_nodes = _count("num_nodes", num_nodes, 2 * num_classes)
    num_features = _count("num_features", num_features, 1)
    degree = _real("degree", degree, 0.0, num_nodes - 1, low_open=True, high_open=True)
    homophily = _real("homophily", homophily, 0.0, 1.0)
    feature_noise = _real("feature_noise", feature_noise, 0.0, math.inf, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")

    g = torch.Generator().manual_seed(seed)
    n, c = num_nodes, num_classes
    # Class ranges in "sorted" ids: class k holds ids [start[k], start[k] + size[k]).
    start = torch.arange(c + 1) * n // c
    size = start[1:] - start[:-1]
    start = start[:-1]
    sorted_class = torch.repeat_interleave(torch.arange(c), size)
    shuffle = torch.randperm(n, generator=g)  # sorted id i becomes node shuffle[i]

    m = round(n * degree / 2)
    source = torch.randint(0, n, (m,), generator=g)
    within = torch.rand(m, generator=g) < homophily
    u = torch.rand(m, generator=g, dtype=torch.float64)
    cls = sorted_class.index_select(0, source)
    first, width = start.index_select(0, cls), size.index_select(0, cls)
    del cls
    # target: uniform among the `width` ids of the class from `first` on, or among the n - width
    # others (an offset past the class's range skips it)
    span = torch.where(within, width, n - width)
    offset = u.mul_(span).long()
    del u
    offset = torch.minimum(offset, span.sub_(1), out=offset)
    target = offset.add_(torch.where(within, first, width.mul_(offset >= first)))
    del within, first, width, span
    edge_index = undirected_edges(shuffle.index_select(0, source), shuffle.index_select(0, target), n)
    del source, target

    y = torch.empty(n, dtype=torch.long).index_copy_(0, shuffle, sorted_class)
    means = torch.randn(c, num_features, generator=g)
    means /= means.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x = torch.randn(n, num_features, generator=g)
    if feature_noise != 1.0:
        x.mul_(feature_noise)
    for lo in range(0, n, _CHUNK):
        x[lo:lo + _CHUNK] += means.index_select(0, y[lo:lo + _CHUNK])
    data = Data(x=x.to(dtype), edge_index=edge_index, y=y, num_nodes=n)
    data.num_classes = c
    data.name = "synthetic"
    options = {"num_nodes": n, "num_classes": c, "num_features": num_features, "degree": degree,
               "homophily": homophily, "feature_noise": feature_noise, "seed": seed}
    data.source = {"kind": "builtin", "name": "synthetic", "root": None, "options": options}
    return data
