r"""``gcn``: the symmetrically normalised adjacency with self-loops (Kipf & Welling).

$$ S = \tilde D^{-1/2} \tilde A \tilde D^{-1/2}, \qquad \tilde A = A + I, \quad \tilde D_{ii} = \textstyle\sum_j \tilde A_{ij} $$

(self-loops are added only where missing, as in PyG's ``GCNConv``; a node with several
self-loops keeps their summed weight, where PyG keeps one of them). One Euler step with τ = 1
is a GCN layer; K steps without a channel map in between are SGC; with source weight α, APPNP.

Properties: symmetric for an undirected graph (an instance reports ``symmetric`` from its own
matrix, so False for a directed graph), non-negative, state-independent, NOT
row-stochastic (rows sum to Σ_j Ã_ij/√(d_i d_j)); spectrum in (−1, 1]. Cost O(E d).
Node measure m = 1: E(Z) = tr(Zᵀ(I − S)Z).
"""

from __future__ import annotations

import torch

from ..graph import Graph, has_unit_weights, in_degree, with_remaining_self_loops
from ._base import DiffusivityProperties, register_diffusivity
from ._linear_graph import LinearGraphDiffusivity


@register_diffusivity
class GCN(LinearGraphDiffusivity):
    name = "gcn"
    properties = DiffusivityProperties(
        row_stochastic=False, symmetric=True, nonnegative=True, depends_on_state=False, cost="O(E d)"
    )

    def build(self, g: Graph) -> tuple[Graph, torch.Tensor, torch.Tensor]:
        g = with_remaining_self_loops(g)
        degree = in_degree(g)
        # A node whose only incoming weight is a zero-weight self-loop has degree 0; like PyG's
        # gcn_norm, its row and column of S are then 0 (1/√0 is taken as 0, not inf).
        inv_sqrt = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
        src, dst = g.edge_index
        # (a·b)·w, not (a·w)·b: multiplication commutes exactly in floating point, so an undirected
        # graph gives an S that equals Sᵀ bit for bit (and is reported symmetric).
        entries = inv_sqrt.index_select(0, dst) * inv_sqrt.index_select(0, src)
        if not has_unit_weights(g.edge_weight):  # (x · 1 = x exactly: unit weights need no pass)
            entries *= g.edge_weight
        return g, entries, torch.ones(g.num_nodes, dtype=torch.float64)
