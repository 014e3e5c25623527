r"""``random_walk``: the row-normalised adjacency with self-loops (mean aggregation).

$$ S = \tilde D^{-1} \tilde A, \qquad \tilde A = A + I, \quad \tilde D_{ii} = \textstyle\sum_j \tilde A_{ij} $$

dZ/dt = (S − I)Z = −D̃⁻¹ L̃ Z is the random-walk graph heat equation (L̃ = D̃ − Ã).

Properties: row-stochastic, non-negative, state-independent; not symmetric, but self-adjoint
in the D̃-weighted inner product (node measure m = d̃), so the Dirichlet energy
Σ_i d̃_i ⟨z_i, z_i − (SZ)_i⟩ = ½ Σ_ij Ã_ij ‖z_i − z_j‖² (undirected graph) decreases along the flow.
Cost O(E d).
"""

from __future__ import annotations

import torch

from ..graph import Graph, in_degree, with_remaining_self_loops
from ._base import DiffusivityProperties, register_diffusivity
from ._linear_graph import LinearGraphDiffusivity


@register_diffusivity
class RandomWalk(LinearGraphDiffusivity):
    name = "random_walk"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=False, cost="O(E d)"
    )

    def build(self, g: Graph) -> tuple[Graph, torch.Tensor, torch.Tensor]:
        g = with_remaining_self_loops(g)
        degree = in_degree(g)
        empty = torch.nonzero(degree <= 0).flatten()
        if empty.numel():
            raise ValueError(
                f"random_walk: node(s) {empty[:5].tolist()} have weighted degree 0 (a zero-weight self-loop and no "
                "weighted in-edges), so S = D^-1 A cannot be row-normalised; give them positive edge_weight"
            )
        return g, g.edge_weight / degree[g.edge_index[1]], degree
