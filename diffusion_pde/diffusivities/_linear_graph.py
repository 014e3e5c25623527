"""Shared machinery of the fixed (state-independent) graph diffusivities.

The graph is validated and S is assembled once at construction as a sorted sparse CSR matrix
(a non-persistent buffer, so ``.to(device)``/``.double()`` move it with the module), together
with Sᵀ for the backward pass (the same tensor when S is symmetric); applying S is then a
single pass over the edges, O(E d), never densifying the graph (:func:`diffusion_pde.graph.spmm`).
"""

from __future__ import annotations

import dataclasses

import torch

from ..graph import Graph, as_graph, coalesce, csr_pair, spmm, spmm_add_
from ._base import GraphDiffusivity


class LinearGraphDiffusivity(GraphDiffusivity):
    """S built from a graph by :meth:`build`; subclasses return (graph, entries, node measure)."""

    fresh_output = True  # S V is a new tensor (spmm), saved by no autograd node

    def __init__(
        self,
        edge_index: torch.Tensor | None = None,
        *,
        num_nodes: int | None = None,
        edge_weight: torch.Tensor | None = None,
        graph: object | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.register_buffer("measure", torch.ones(0, dtype=dtype), persistent=False)  # dtype/device holder
        self.attach(as_graph(edge_index, num_nodes=num_nodes, edge_weight=edge_weight, graph=graph,
                             owner=f"diffusivity {self.name!r}"))

    def attach(self, graph: object) -> None:
        g = graph if isinstance(graph, Graph) else as_graph(graph=graph, owner=f"diffusivity {self.name!r}")
        dtype, device = self.measure.dtype, self.measure.device
        self.num_nodes = g.num_nodes
        # Sorted by (source, target) with duplicates merged first: build() then works in the order
        # of Sᵀ's CSR, and csr_pair needs no second sort of the edges.
        graph_with_loops, entries, measure = self.build(coalesce(g))
        matrix, matrix_t = csr_pair(graph_with_loops, entries, dtype)
        self.register_buffer("matrix", matrix.to(device=device), persistent=False)
        # Sᵀ for the backward pass; S itself (one copy) when S = Sᵀ.
        self.register_buffer("matrix_t", self.matrix if matrix_t is matrix else matrix_t.to(device=device),
                             persistent=False)
        self.register_buffer("measure", measure.to(device=device, dtype=dtype), persistent=False)
        # The class flags describe the operator in general (gcn: symmetric for an undirected graph);
        # an instance reports its own matrix: csr_pair returns S itself exactly when S = Sᵀ.
        self.properties = dataclasses.replace(self.properties, symmetric=self.matrix_t is self.matrix)

    def _apply(self, fn, recurse: bool = True):
        # .to()/.double() convert each buffer on its own: keep one copy of a symmetric S.
        shared = self.matrix_t is self.matrix
        out = super()._apply(fn, recurse)
        if shared:
            self._buffers["matrix_t"] = self.matrix
        return out

    def build(self, g: Graph) -> tuple[Graph, torch.Tensor, torch.Tensor]:
        """Return the edge set of S, its float64 entries per edge, and the node measure m."""
        raise NotImplementedError

    def _check(self, z: torch.Tensor) -> None:
        if z.dim() not in (2, 3) or z.shape[-2] != self.num_nodes:
            raise ValueError(
                f"z must have shape [N, d] or [B, N, d] with N = num_nodes = {self.num_nodes}, "
                f"got {tuple(z.shape)}"
            )
        if z.dtype != self.matrix.dtype or z.device != self.matrix.device:
            raise TypeError(
                f"z is {z.dtype} on {z.device} but diffusivity {self.name!r} holds {self.matrix.dtype} on "
                f"{self.matrix.device}; move it with diffusivity.to(z) (or build it with dtype=z.dtype)"
            )

    def set_initial_state(self, z0: torch.Tensor) -> None:
        """S does not depend on Z⁰; only check Z⁰'s shape, dtype and device before a solve."""
        self._check(z0)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        self._check(values)
        return spmm(self.matrix, values, self.matrix_t)

    def add_to(self, out: torch.Tensor, z: torch.Tensor, values: torch.Tensor | None = None,
               t: torch.Tensor | None = None, *, alpha: float = 1.0) -> torch.Tensor:
        """``out += alpha · S V`` in place, by row blocks of S: no N×d temporary for S V."""
        values = z if values is None else values
        self._check(values)
        return spmm_add_(out, self.matrix, values, self.matrix_t, alpha)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.matrix.to_dense()

    def node_measure(self) -> torch.Tensor:
        return self.measure

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_nodes={self.num_nodes}, nnz={self.matrix.values().numel()}"
