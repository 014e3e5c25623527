"""Graph input (PyG conventions), its validation, and the sparse operator built from it once.

Conventions follow PyTorch Geometric: ``edge_index`` is a ``[2, E]`` long tensor whose column
``(j, i)`` is an edge from source j to target i; messages flow source → target, so the matrix
that propagates node states has entry S_ij on row i (target), column j (source):
(S Z)_i = Σ_{(j,i) ∈ E} S_ij z_j. Duplicate edges add up, as in PyG's scatter-sum.

Cost of preparing an operator (done once per graph, see ``docs/scale.md``): validation and the
self-loops are O(E) passes; S and Sᵀ are built as sorted CSR matrices with at most one sort of
the E edge keys plus one stable sort of E column indices (int32 where they fit): the edges are
first put in source-major order (PyG's coalesced order, so for a coalesced ``edge_index``, also
with self-loops appended, this is a merge of sorted runs in O(E)), which is the CSR of Sᵀ; S is
its transpose, and when the two are equal (an undirected graph) one copy serves both. Products
S V are gathered row by row (``embedding_bag``: one pass over the edges, no sparse-format
conversion per call).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

# Indices fit in int32 (half the memory and traffic of int64) below this many nodes and edges.
_INT32_LIMIT = 2**31 - 1
# An edge key sequence with at most this many descents is a few sorted runs (a coalesced graph
# plus appended edges): a stable merge sort (numpy's timsort) orders it in O(E log runs).
_MERGE_RUNS = 64


@dataclass(frozen=True)
class Graph:
    """A validated graph: ``edge_index`` [2, E] int64, ``edge_weight`` [E] float64, ``num_nodes``.

    Unit weights (no ``edge_weight`` given) are a stride-0 view of a single 1.0, so they take no
    memory (:func:`unit_weights`); they read like any [E] tensor. ``coalesced``: the edges are
    known to be sorted by (source, target) without duplicates (:func:`coalesce`)."""

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    num_nodes: int
    coalesced: bool = False

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def unit_weights(num_edges: int) -> torch.Tensor:
    """E float64 ones as an expanded view of one element (no E-sized allocation)."""
    return torch.ones(1, dtype=torch.float64).expand(num_edges)


def has_unit_weights(weight: torch.Tensor) -> bool:
    """Whether ``weight`` is the memory-free ones of :func:`unit_weights` (or empty)."""
    return weight.numel() == 0 or (weight.stride() == (0,) and bool(weight[0] == 1.0))


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
    low, high = (int(v) for v in torch.aminmax(edge_index)) if num_edges else (0, -1)  # one pass
    if num_nodes is None:
        if num_edges == 0:
            raise ValueError("num_nodes is required when edge_index has no edges")
        num_nodes = high + 1
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise TypeError(f"num_nodes must be an int, got {type(num_nodes).__name__}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1 (an empty graph has nothing to diffuse), got {num_nodes}")
    if num_edges and (low < 0 or high >= num_nodes):
        raise ValueError(
            f"edge_index holds node indices outside [0, num_nodes) = [0, {num_nodes}): "
            f"min {low}, max {high}; fix the edges or pass the right num_nodes"
        )
    if edge_weight is None:
        edge_weight = unit_weights(num_edges)
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
    other duplicate edge (PyG keeps only one of them). A graph with a loop on every node is
    returned as it is (no copy)."""
    src, dst = g.edge_index
    has_loop = torch.zeros(g.num_nodes, dtype=torch.bool)
    has_loop[dst.index_select(0, torch.nonzero(src == dst).flatten())] = True
    missing = torch.nonzero(~has_loop).flatten()
    if missing.numel() == 0:
        return g
    loops = torch.stack([missing, missing])
    weight = g.edge_weight
    if has_unit_weights(weight):
        weight = unit_weights(g.num_edges + missing.numel())
    else:
        weight = torch.cat([weight, torch.ones(missing.numel(), dtype=torch.float64)])
    return Graph(torch.cat([g.edge_index, loops], dim=1), weight, g.num_nodes)


def coalesce(g: Graph) -> Graph:
    """``g`` with its edges sorted by (source, target), PyG's order, and duplicate edges merged
    into one with their summed weight (the operators sum duplicates anyway). O(E) for a graph in
    that order already, also with edges appended to it (a merge of sorted runs); one sort of
    the E edge keys otherwise."""
    if g.coalesced:
        return g
    src, dst = g.edge_index
    _, _, weight, edges = _coalesced(src, dst, g.edge_weight, g.num_nodes)
    return Graph(g.edge_index if edges is None else edges, weight, g.num_nodes, coalesced=True)


def in_degree(g: Graph) -> torch.Tensor:
    """Weighted degree at the target: d_i = Σ_{(j,i) ∈ E} w_ji, i.e. the row sums of S's pattern."""
    if has_unit_weights(g.edge_weight):
        return torch.bincount(g.edge_index[1], minlength=g.num_nodes).to(torch.float64)
    return torch.bincount(g.edge_index[1], weights=g.edge_weight, minlength=g.num_nodes).to(torch.float64)


def _index_dtype(num_nodes: int, num_edges: int) -> torch.dtype:
    return torch.int32 if max(num_nodes, num_edges) <= _INT32_LIMIT else torch.int64


def _sorted_order(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sorted keys, the stable permutation that sorts them, or None when they already are)."""
    if keys.numel() < 2:
        return keys, None
    descents = int((keys[1:] < keys[:-1]).sum())
    if descents == 0:
        return keys, None
    if descents <= _MERGE_RUNS:  # a few sorted runs: a stable merge sort is O(E log runs)
        order = torch.from_numpy(np.argsort(keys.numpy(), kind="stable"))
        return keys.index_select(0, order), order
    return torch.sort(keys, stable=True)


def _gather(values: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    if order is None:
        return values
    # index_select: about three times faster than values[order] (advanced indexing) on CPU
    return unit_weights(order.numel()).to(values.dtype) if values.stride() == (0,) else values.index_select(0, order)


def _coalesced(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, num_cols: int):
    """Entries (rows, cols, values) sorted by (row, col) with duplicates summed, and the [2, E']
    tensor holding the new rows and cols (None when nothing changed): one sort of the int64 keys row·num_cols + col at most (none when sorted already, a
    merge for a few sorted runs)."""
    keys, order = _sorted_order(torch.add(cols, rows, alpha=num_cols))
    values = _gather(values, order)
    changed, edges = order is not None, None
    if keys.numel() > 1 and bool((keys[1:] == keys[:-1]).any()):
        if has_unit_weights(values):  # the merged weight is the count (no inverse map needed)
            keys, counts = torch.unique_consecutive(keys, return_counts=True)
            values = counts.to(values.dtype)
        else:
            keys, inverse = torch.unique_consecutive(keys, return_inverse=True)
            values = torch.bincount(inverse, weights=values, minlength=keys.numel()).to(values.dtype)
        changed = True
    if changed:
        edges = torch.empty(2, keys.numel(), dtype=torch.int64)
        rows = torch.div(keys, num_cols, rounding_mode="floor", out=edges[0])
        cols = torch.sub(keys, rows, alpha=num_cols, out=edges[1])
    return rows, cols, values, edges


def _crow(rows: torch.Tensor, num_rows: int, dtype: torch.dtype) -> torch.Tensor:
    """CSR row pointers of row indices ``rows`` (sorted)."""
    crow = torch.zeros(num_rows + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(rows, minlength=num_rows), 0, out=crow[1:])
    return crow.to(dtype)


def _csr(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols, values.contiguous(), shape)


def _transposed(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int],
                index_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crow, col, values) of the transpose of the sorted, coalesced entries (rows, cols, values):
    a stable sort by column keeps the rows ascending within each column."""
    new_rows, order = torch.sort(cols.to(index_dtype), stable=True)  # (no copy when cols are index_dtype)
    return _crow(new_rows, shape[1], index_dtype), rows.to(index_dtype).index_select(0, order), _gather(values, order)


def csr_pair(g: Graph, values: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, Sᵀ): the N×N sorted CSR matrix with entry ``values[e]`` at (target, source) of edge e
    (duplicates summed), and its transpose, which is S itself (the same object) when S = Sᵀ bit
    for bit. ``dtype`` (default: that of ``values``) is the entries' dtype, in which S = Sᵀ is
    decided. Indices are int32 when N and E allow.

    The source-major order (PyG's) gives Sᵀ with one sort at most, and S is its transpose (a
    stable int32 sort of the column indices)."""
    n = g.num_nodes
    dtype = values.dtype if dtype is None else dtype
    index_dtype = _index_dtype(n, g.num_edges)
    src, dst = g.edge_index
    if g.coalesced:
        rows, cols, entries = src, dst, values                          # Sᵀ: rows = sources
    else:
        rows, cols, entries, _ = _coalesced(src, dst, values, n)
    entries = entries.to(dtype)
    crow_t, col_t = _crow(rows, n, index_dtype), cols.to(index_dtype)
    crow, col, entries_s = _transposed(rows, col_t, entries, (n, n), index_dtype)
    matrix = _csr(crow, col, entries_s, (n, n))
    if torch.equal(crow, crow_t) and torch.equal(col, col_t) and torch.equal(entries_s, entries):
        return matrix, matrix
    return matrix, _csr(crow_t, col_t, entries, (n, n))


def csr_matrix(g: Graph, values: torch.Tensor) -> torch.Tensor:
    """The N×N sparse CSR matrix with entry ``values[e]`` at (target, source) of edge e
    (duplicates summed), sorted once so that every later product is a plain row gather."""
    n = g.num_nodes
    src, dst = g.edge_index
    rows, cols, entries, _ = _coalesced(dst, src, values, n)
    index_dtype = _index_dtype(n, g.num_edges)
    return _csr(_crow(rows, n, index_dtype), cols.to(index_dtype), entries, (n, n))


def csr_transpose_pattern(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crow, col, order) of Sᵀ for a sorted CSR ``matrix`` S [m, n]: Sᵀ's row pointers [n + 1] and
    column indices, and the permutation of S's stored entries into Sᵀ's order, so that
    ``S.values()[order]`` are Sᵀ's values (for any values on the same pattern)."""
    crow, col = matrix.crow_indices(), matrix.col_indices()
    rows = torch.repeat_interleave(torch.arange(matrix.shape[0], dtype=crow.dtype, device=crow.device),
                                   crow.diff().long())
    new_rows, order = torch.sort(col, stable=True)  # stable: rows stay ascending within each column
    return _crow(new_rows, matrix.shape[1], crow.dtype), rows.index_select(0, order), order


def csr_transpose(matrix: torch.Tensor) -> torch.Tensor:
    """Sᵀ as a sorted CSR matrix; S itself when S is symmetric (no second copy of the pattern).
    ``matrix`` must be sorted and coalesced (as built here)."""
    crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    crow_t, col_t, order = csr_transpose_pattern(matrix)
    values_t = _gather(values, order)
    if matrix.shape[0] == matrix.shape[1] and torch.equal(crow_t, crow) and torch.equal(col_t, col) \
            and torch.equal(values_t, values):
        return matrix
    return _csr(crow_t, col_t, values_t, (matrix.shape[1], matrix.shape[0]))


def _gather_rows(matrix: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``matrix @ values`` for a CSR ``matrix`` [m, n] and dense ``values`` [n, d]: each output row
    is the weighted sum of the value rows its entries point at (``embedding_bag`` in sum mode:
    one pass over the entries, about three times faster on CPU than the sparse-dense kernel)."""
    return F.embedding_bag(matrix.col_indices(), values.contiguous(), matrix.crow_indices(), mode="sum",
                           per_sample_weights=matrix.values(), include_last_offset=True)


class _CSRProduct(torch.autograd.Function):
    """S @ V with a fixed S whose transpose is prepared once: the backward pass is Sᵀ @ dL/dY,
    where autograd would otherwise transpose and re-sort S at every call. Saves no tensor."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        # detached: embedding_bag on a tensor that requires grad takes its slower training path
        # (bag bookkeeping for its own backward), which this function replaces
        return _gather_rows(matrix, values.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, _gather_rows(ctx.transpose, grad)


def csr_rows(matrix: torch.Tensor, rows: slice) -> torch.Tensor:
    """Rows ``rows`` of the CSR ``matrix`` as a [len(rows), N] CSR matrix (views of its columns and
    values; only the row pointers are new); ``matrix`` itself when ``rows`` are all of its rows."""
    if rows.start == 0 and rows.stop == matrix.shape[0]:
        return matrix
    crow = matrix.crow_indices()
    lo, hi = int(crow[rows.start]), int(crow[rows.stop])
    return _csr(crow[rows.start:rows.stop + 1] - lo, matrix.col_indices()[lo:hi], matrix.values()[lo:hi],
                (rows.stop - rows.start, matrix.shape[1]))


# Rows per block of the row-blocked passes (``spmm_add_``, DIFFormer-s's global rows,
# ``OwnedLayerNorm``): a block of an N×64 float32 state is 4 MB, under glibc's 32 MB mmap
# threshold, so blocks are reused by the heap where an N-row temporary would be a fresh mapping.
ROW_BLOCK = 16384


def row_blocks(n: int, size: int | None = None) -> Iterator[slice]:
    """Consecutive slices covering range(n), ``size`` rows each (default :data:`ROW_BLOCK`)."""
    size = ROW_BLOCK if size is None else size
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _AddCSRProduct(torch.autograd.Function):
    """out += α S V in place, by blocks of ``ROW_BLOCK`` rows of S (each block's S V is a few MB,
    reused by the heap, where a whole N×d product would be a fresh mapping); backward: the
    gradient of ``out`` passes through, V gets α Sᵀ dL/dY. Saves no tensor."""

    @staticmethod
    def forward(ctx, out: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor, values: torch.Tensor,
                alpha: float) -> torch.Tensor:
        ctx.transpose, ctx.alpha = transpose, alpha
        ctx.mark_dirty(out)
        values = values.detach()
        for rows in row_blocks(matrix.shape[0]):
            out[rows].add_(_gather_rows(csr_rows(matrix, rows), values), alpha=alpha)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_values = None
        if ctx.needs_input_grad[3]:
            grad_values = _gather_rows(ctx.transpose, grad)
            if ctx.alpha != 1.0:
                grad_values.mul_(ctx.alpha)
        return grad, None, None, grad_values, None


def spmm_add_(out: torch.Tensor, matrix: torch.Tensor, values: torch.Tensor, transpose: torch.Tensor,
              alpha: float = 1.0) -> torch.Tensor:
    """``out += alpha · S @ V`` in place (``out`` [N, d], a tensor nobody else reads), equal to
    ``out.add_(spmm(matrix, values, transpose), alpha=alpha)`` without its N×d temporary: S is
    applied by blocks of rows. Batched or 16-bit values take that plain form."""
    if values.dim() != 2 or values.dtype.itemsize < 4 or out.shape != values.shape or not out.is_contiguous():
        return out.add_(spmm(matrix, values, transpose), alpha=alpha)
    return _AddCSRProduct.apply(out, matrix, transpose, values, float(alpha))


def spmm(matrix: torch.Tensor, values: torch.Tensor, transpose: torch.Tensor | None = None) -> torch.Tensor:
    """S @ V for a CSR S ([m, N]) and V of shape [N, d] or [B, N, d] (S acts on the node axis,
    the second to last). The result is a new tensor (the caller may update it in place).

    ``transpose`` (Sᵀ from :func:`csr_pair`/:func:`csr_transpose`) makes the backward pass a
    plain product with Sᵀ; S itself gets no gradient then (it is a fixed operator).

    16-bit values (float16, bfloat16) are multiplied in float32 and rounded back to their dtype:
    the CPU kernels have no 16-bit version, and the float32 sums keep the result within
    about one 16-bit rounding of S V for the stored (16-bit) S. float32/float64 go straight to
    the kernel."""
    if values.dtype.itemsize < 4:
        wide = matrix.to(torch.float32)
        wide_t = None if transpose is None else wide if transpose is matrix else transpose.to(torch.float32)
        return spmm(wide, values.float(), wide_t).to(values.dtype)

    def product(flat: torch.Tensor) -> torch.Tensor:
        if transpose is not None and flat.requires_grad:
            return _CSRProduct.apply(matrix, transpose, flat)
        return _gather_rows(matrix, flat)

    if values.dim() == 2:
        return product(values)
    batch, n, d = values.shape
    flat = values.transpose(0, 1).reshape(n, batch * d)
    return product(flat).reshape(-1, batch, d).transpose(0, 1)
