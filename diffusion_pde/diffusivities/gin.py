r"""``gin``: the unnormalised adjacency plus a weighted self term (Xu et al., GIN).

$$ S = A + (1 + \varepsilon) I, \qquad (S V)_i = (1 + \varepsilon)\, v_i + \textstyle\sum_{(j, i) \in E} w_{ji}\, v_j $$

This is PyG's ``GINConv`` aggregation (before its ``nn``): a plain sum over the incoming edges,
duplicate edges counted once each and existing self-loops treated as ordinary edges, plus
(1 + ε) times the node's own state. One Euler step with τ = 1 is ``GINConv(nn=Identity(), eps=ε)``;
the MLP of a GIN layer is a node-wise map applied after the step. ``GINConv`` itself has no edge
weights; the ``edge_weight`` accepted here generalises it (A holds the weights, 1 by default).

ε is fixed by default; with ``train_eps=True`` it is an ``nn.Parameter`` (initialised to ``eps``)
and S carries its gradient.

Properties: NOT row-stochastic and not normalised at all (row i sums to deg_i + 1 + ε, so the
spectrum is not confined to [−1, 1] and the flow dZ/dt = (S − I)Z can grow without bound);
symmetric for an undirected graph (an instance reports ``symmetric`` from its own matrix);
non-negative when ε ≥ −1 (the class flags assume that; an instance built with a fixed ε < −1, or
with ``train_eps=True``, whose ε may be trained below −1, reports ``nonnegative=False``);
state-independent. Cost O(E d).

Node measure: none. S is not self-adjoint in any diagonal measure for a general directed graph,
and even for an undirected one I − S = −(A + εI) is indefinite, so ⟨Z, (I − S)Z⟩ is not a
Dirichlet energy (neither non-negative nor zero on constants).
"""

from __future__ import annotations

import dataclasses
import numbers

import torch
from torch import nn

from ..graph import Graph, spmm
from ._base import DiffusivityProperties, register_diffusivity
from ._linear_graph import LinearGraphDiffusivity


@register_diffusivity
class GIN(LinearGraphDiffusivity):
    name = "gin"
    properties = DiffusivityProperties(
        row_stochastic=False, symmetric=True, nonnegative=True, depends_on_state=False, cost="O(E d)"
    )

    def __init__(
        self,
        edge_index: torch.Tensor | None = None,
        *,
        num_nodes: int | None = None,
        edge_weight: torch.Tensor | None = None,
        graph: object | None = None,
        eps: float = 0.0,
        train_eps: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not torch.isfinite(torch.tensor(float(eps))):
            raise TypeError(f"eps must be a finite real number (S = A + (1 + eps) I), got {eps!r}")
        if not isinstance(train_eps, bool):
            raise TypeError(f"train_eps must be a bool, got {type(train_eps).__name__}")
        self._eps0 = float(eps)
        self.train_eps = train_eps
        super().__init__(edge_index, num_nodes=num_nodes, edge_weight=edge_weight, graph=graph, dtype=dtype)
        if train_eps:
            # The matrix holds A only; forward adds (1 + eps) V so that S carries eps's gradient.
            self.eps = nn.Parameter(torch.tensor(self._eps0, dtype=dtype))
        else:
            # Baked into the matrix (one SpMM per application); kept for inspection.
            self.register_buffer("eps", torch.tensor(self._eps0, dtype=dtype))
        if train_eps or self._eps0 < -1.0:
            # The diagonal 1 + ε is negative for ε < −1, and a trainable ε may go there.
            self.properties = dataclasses.replace(self.properties, nonnegative=False)

    def build(self, g: Graph) -> tuple[Graph, torch.Tensor, torch.Tensor]:
        measure = torch.ones(g.num_nodes, dtype=torch.float64)  # unused: node_measure() is None
        if self.train_eps:
            return g, g.edge_weight, measure
        nodes = torch.arange(g.num_nodes)
        loops = Graph(
            torch.cat([g.edge_index, torch.stack([nodes, nodes])], dim=1),
            torch.cat([g.edge_weight, torch.full((g.num_nodes,), 1.0 + self._eps0, dtype=torch.float64)]),
            g.num_nodes,
        )
        return loops, loops.edge_weight, measure

    def reset_parameters(self) -> None:
        """Reset a trainable ε to its initial value (as PyG's ``GINConv`` does)."""
        if self.train_eps:
            with torch.no_grad():
                self.eps.fill_(self._eps0)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        self._check(values)
        out = spmm(self.matrix, values, self.matrix_t)
        if self.train_eps:
            out = out + (1.0 + self.eps) * values
        return out

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        matrix = self.matrix.to_dense()
        if self.train_eps:
            matrix = matrix + (1.0 + self.eps) * torch.eye(self.num_nodes, dtype=matrix.dtype, device=matrix.device)
        return matrix

    def node_measure(self) -> None:
        return None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps.item():g}, train_eps={self.train_eps}"
