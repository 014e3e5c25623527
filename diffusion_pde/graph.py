"""Graph input (PyG conventions), its validation, and the sparse operator built from it once.

Conventions follow PyTorch Geometric: ``edge_index`` is a ``[2, E]`` long tensor whose column
``(j, i)`` is an edge from source j to target i; messages flow source → target, so the matrix
that propagates node states has entry S_ij on row i (target), column j (source):
(S Z)_i = Σ_{(j,i) ∈ E} S_ij z_j. Duplicate edges add up, as in PyG's scatter-sum.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Graph:
    """A validated graph: ``edge_index`` [2, E] int64, ``edge_weight`` [E] float64, ``num_nodes``."""

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    num_nodes: int

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def as_graph(
    edge_index: torch.Tensor | None = None,
    *,
    num_nodes: int | None = None,
    edge_weight: torch.Tensor | None = None,
    graph: object | None = None,
    owner: str = "this diffusivity",
) -> Graph:
    """Validate PyG-style graph input: ``edge_index`` (+ ``num_nodes``, ``edge_weight``) or a
    ``torch_geometric.data.Data`` passed as ``graph``. Errors name the argument and the fix."""
    if graph is not None:
        if edge_index is not None:
            raise ValueError(f"{owner}: pass either graph=Data or edge_index=..., not both")
        if not hasattr(graph, "edge_index"):
            raise TypeError(f"{owner}: graph must be a torch_geometric Data with an edge_index, got {type(graph).__name__}")
        edge_index = graph.edge_index
        num_nodes = graph.num_nodes if num_nodes is None else num_nodes
        if edge_weight is None:
            edge_weight = getattr(graph, "edge_weight", None)
    if edge_index is None:
        raise ValueError(f"{owner} needs a graph: pass edge_index=<[2, E] long tensor> (and num_nodes=N) or graph=<Data>")
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"edge_index must hold integer node indices (torch.long), got {edge_index.dtype}; use edge_index.long()")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(
            f"edge_index must have shape [2, E] (row 0 sources, row 1 targets), got {tuple(edge_index.shape)}; "
            "an [E, 2] edge list needs .t()"
        )
    edge_index = edge_index.long().cpu()
    num_edges = edge_index.shape[1]
    if num_nodes is None:
        if num_edges == 0:
            raise ValueError("num_nodes is required when edge_index has no edges")
        num_nodes = int(edge_index.max()) + 1
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise TypeError(f"num_nodes must be an int, got {type(num_nodes).__name__}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1 (an empty graph has nothing to diffuse), got {num_nodes}")
    if num_edges and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(
            f"edge_index holds node indices outside [0, num_nodes) = [0, {num_nodes}): "
            f"min {int(edge_index.min())}, max {int(edge_index.max())}; fix the edges or pass the right num_nodes"
        )
    if edge_weight is None:
        edge_weight = torch.ones(num_edges, dtype=torch.float64)
    else:
        if not isinstance(edge_weight, torch.Tensor) or not torch.is_floating_point(edge_weight):
            raise TypeError("edge_weight must be a floating torch.Tensor of shape [E]")
        if edge_weight.shape != (num_edges,):
            raise ValueError(f"edge_weight must have shape [E] = [{num_edges}], got {tuple(edge_weight.shape)}")
        edge_weight = edge_weight.detach().cpu().double()
        if not bool(torch.isfinite(edge_weight).all()) or bool((edge_weight < 0).any()):
            raise ValueError("edge_weight must be finite and non-negative")
    return Graph(edge_index, edge_weight, num_nodes)


def with_remaining_self_loops(g: Graph) -> Graph:
    """Ã = A plus a unit self-loop on every node that has none (PyG's ``add_remaining_self_loops``).

    A node's existing self-loops are kept with their weights; several are summed, like every
    other duplicate edge (PyG keeps only one of them)."""
    src, dst = g.edge_index
    has_loop = torch.zeros(g.num_nodes, dtype=torch.bool)
    has_loop[src[src == dst]] = True
    missing = torch.nonzero(~has_loop).flatten()
    loops = torch.stack([missing, missing])
    return Graph(
        torch.cat([g.edge_index, loops], dim=1),
        torch.cat([g.edge_weight, torch.ones(missing.numel(), dtype=torch.float64)]),
        g.num_nodes,
    )


def in_degree(g: Graph) -> torch.Tensor:
    """Weighted degree at the target: d_i = Σ_{(j,i) ∈ E} w_ji, i.e. the row sums of S's pattern."""
    return torch.zeros(g.num_nodes, dtype=torch.float64).index_add_(0, g.edge_index[1], g.edge_weight)


def csr_matrix(g: Graph, values: torch.Tensor) -> torch.Tensor:
    """The N×N sparse CSR matrix with entry ``values[e]`` at (target, source) of edge e
    (duplicates summed), sorted once so that every later product is a plain CSR SpMM."""
    n = g.num_nodes
    coo = torch.sparse_coo_tensor(g.edge_index.flip(0), values, (n, n), check_invariants=True).coalesce()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return coo.to_sparse_csr()


def csr_transpose(matrix: torch.Tensor) -> torch.Tensor:
    """Sᵀ as a sorted CSR matrix; S itself when S is symmetric (no second copy of the pattern)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        transposed = matrix.to_sparse_coo().t().coalesce().to_sparse_csr()
    same = (torch.equal(transposed.crow_indices(), matrix.crow_indices())
            and torch.equal(transposed.col_indices(), matrix.col_indices())
            and torch.equal(transposed.values(), matrix.values()))
    return matrix if same else transposed


class _CSRProduct(torch.autograd.Function):
    """S @ V with a fixed S whose transpose is prepared once: the backward pass is Sᵀ @ dL/dY,
    where autograd would otherwise transpose and re-sort S at every call."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return matrix @ values

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, ctx.transpose @ grad


def spmm(matrix: torch.Tensor, values: torch.Tensor, transpose: torch.Tensor | None = None) -> torch.Tensor:
    """S @ V for V of shape [N, d] or [B, N, d] (S acts on the node axis, the second to last).

    ``transpose`` (Sᵀ from :func:`csr_transpose`) makes the backward pass a plain SpMM; S itself
    gets no gradient then (it is a fixed operator).

    16-bit values (float16, bfloat16) are multiplied in float32 and rounded back to their dtype:
    the CPU sparse kernels have no 16-bit version, and the float32 sums keep the result within
    about one 16-bit rounding of S V for the stored (16-bit) S. float32/float64 go straight to
    the sparse kernel."""
    if values.dtype.itemsize < 4:
        wide = matrix.to(torch.float32)
        wide_t = None if transpose is None else wide if transpose is matrix else transpose.to(torch.float32)
        return spmm(wide, values.float(), wide_t).to(values.dtype)

    def product(flat: torch.Tensor) -> torch.Tensor:
        if transpose is not None and flat.requires_grad:
            return _CSRProduct.apply(matrix, transpose, flat)
        return matrix @ flat

    if values.dim() == 2:
        return product(values)
    batch, n, d = values.shape
    flat = values.transpose(0, 1).reshape(n, batch * d)
    return product(flat).reshape(n, batch, d).transpose(0, 1)
