r"""``difformer_s``: DIFFormer's simple diffusivity, applied in O(N) time and memory.

$$ S_{ij} = \frac{1 + \hat q_i^\top \hat k_j}{\sum_l \left(1 + \hat q_i^\top \hat k_l\right)}, \qquad
   \hat q_i = q_i / \lVert q_i \rVert,\ \hat k_j = k_j / \lVert k_j \rVert $$

(per head, heads averaged). Never building S, the product is

$$ (S V)_i = \frac{\sum_j v_j + \hat q_i^\top (\hat K^\top V)}{N + \hat q_i^\top \sum_j \hat k_j}, $$

where K̂ᵀV ([d_k, d] per head) and Σ_j k̂_j are formed once per evaluation. It is the optimal
diffusivity of the energy with δ(s) = 2s − s²/4 on unit vectors, since 1 + q̂ᵀk̂ = 2 − ‖q̂ − k̂‖²/2.
``qk_norm="global"`` divides q and k by one Frobenius norm instead (the authors' released
code), which makes S nearly uniform. ``qk_norm="none"`` is refused: the kernel is non-negative
only for |q̂ᵀk̂| ≤ 1.

A row whose kernel sum Σ_l (1 + q̂_iᵀk̂_l) vanishes (every key opposite to the query: one node
with k̂ = −q̂, or d_k = 1 with all signs opposed) has no attention mass, and S_i is 0/0. Such a
row, and any whose sum is below the round-off floor ``ROUND_OFF_FLOOR · N · eps`` of the O(N)
formula (where that formula has no correct digit left), is taken as uniform, 1/N: the limit of
the kernel 1 + ε + q̂ᵀk̂ as ε → 0, and what a zero query (q̂ = 0) already gives. 16-bit states
are multiplied in float32 (sums over N nodes overflow float16) and rounded back.

With ``qk_norm="global"`` (and queries and keys from the current state) q and k are never formed:
q_i = W_q z_i + b_q enters only through q_iᵀ(K̂ᵀV) and q_iᵀ Σ_j k̂_j, and the key sums and both
Frobenius norms follow from the node sums Σ_j z_j v_jᵀ, Σ_j z_j z_jᵀ, Σ_j z_j, Σ_j v_j
(:meth:`DIFFormerSimple._gram_sums`), so a forward pass is one [d, d] sum over the nodes and one
[N, d] × [d, H (d_v + 1)] product, in blocks of rows with a hand-written backward pass that
keeps no N-row tensor but z (``_GlobalAttentionRows``). The result is the same function (checked
against a brute-force N × N attention to 1e-12 in float64, gradients included).

The two steps are public, so that the product can be formed for a graph too large to hold at once
(:func:`diffusion_pde.models.predict_chunked`): :meth:`DIFFormerSimple.sums` forms the node sums
(K̂ᵀV, Σ_j k̂_j, Σ_j v_j, N; with ``qk_norm="global"`` also Σ‖q_j‖², Σ‖k_j‖²) of a block of nodes,
additive over blocks (:class:`AttentionSums`), and :meth:`DIFFormerSimple.apply` forms the rows
(S V)_i of a block of nodes from the finished sums; ``forward`` is ``apply(z, sums(z, values))``.

Properties: row-stochastic and non-negative (|q̂ᵀk̂| ≤ 1), not symmetric, state-dependent.
Cost O(N H d_k d) time, O(N (H d_k + d)) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import functools

from ..graph import row_blocks
from ._attention import QueryKeyDiffusivity, inverse_norm, normalise_qk
from ._base import DiffusivityProperties, register_diffusivity, widen

# A kernel row sum ≤ ROUND_OFF_FLOOR · N · eps (eps of the state's dtype) counts as zero, i.e. a
# uniform row: the O(N) formula computes an exactly zero sum as at most 3.5 N eps (measured for
# float64 down to bfloat16, d_k up to 512), and a sum that small has no correct digit left.
ROUND_OFF_FLOOR = 16
_TINY = torch.finfo(torch.float64).tiny  # where the float64 roots of the global norms clamp their argument


def _inverse_sqrt(square_sum: torch.Tensor) -> torch.Tensor:
    """1/√s, and 0 for s = 0 (a zero block keeps norm 0, as in :func:`inverse_norm`), with finite
    gradients at 0."""
    positive = square_sum > 0
    return torch.where(positive, torch.where(positive, square_sum, torch.ones_like(square_sum)).rsqrt(),
                       torch.zeros_like(square_sum))


def _rank_update(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out += a @ b in place (a [..., N, k], b [..., k, d] with small k)."""
    return out.addmm_(a, b) if out.dim() == 2 else out.baddbmm_(a, b.expand(*a.shape[:-2], *b.shape[-2:]))


def _first_order(backward):
    """A backward pass that is differentiable once: refused, with this message, whenever autograd
    records it (``create_graph=True``: second derivatives), whatever the incoming gradient (torch's
    ``once_differentiable`` raises only when that gradient itself needs one, and otherwise returns
    a constant, i.e. a silently wrong second derivative)."""
    @functools.wraps(backward)
    def checked(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError("difformer_s with qk_norm='global' has first derivatives only: second derivatives "
                               "(create_graph=True, e.g. a Hessian or a gradient penalty) are not supported; use "
                               "qk_norm='row', or a dense re-statement of the layer for them")
        return backward(ctx, *grads)
    return checked


def _batch_sum(x: torch.Tensor, dims: int) -> torch.Tensor:
    """x summed over all but its last ``dims`` dimensions (a parameter's gradient over a batch)."""
    return x.sum(dim=tuple(range(x.dim() - dims))) if x.dim() > dims else x


class _ProjectedSums(torch.autograd.Function):
    r"""The key and query node sums of DIFFormer-s with global norms, from the node sums of z:
    with G = Σ_j z_j z_jᵀ [..., d, d], s = Σ_j z_j, G_v = Σ_j z_j v_jᵀ and s_v = Σ_j v_j (None:
    the values are z, G_v = G, s_v = s), k_j = W_k z_j + b_k and q_j = W_q z_j + b_q:

        kv = Σ_j k_j v_jᵀ = W_k G_v + b_k s_vᵀ,   key_sum = Σ_j k_j = W_k s + N b_k,
        key_sq = Σ_j ‖k_j‖² = ⟨W_k G, W_k⟩ + b_k·(2 W_k s + N b_k),  query_sq likewise,

    the squares clamped at 0 (round-off). One node in the autograd graph with a hand-written
    backward pass (these [d, d]-sized products were some 60 small kernels forward and backward)."""

    @staticmethod
    def forward(ctx, gram, gram_values, z_sum, value_sum, w_k, b_k, w_q, b_q, n):
        key_gram, query_gram = w_k @ gram, w_q @ gram                        # [..., K, d]
        kv = key_gram if gram_values is None else w_k @ gram_values          # [..., K, d_v]
        key_sum0, query_sum0 = z_sum @ w_k.T, z_sum @ w_q.T                  # [..., K]
        key_sq, query_sq = (key_gram * w_k).sum(dim=(-2, -1)), (query_gram * w_q).sum(dim=(-2, -1))
        key_sum = key_sum0
        if b_k is not None:
            kv = torch.addcmul(kv, b_k[:, None], (z_sum if value_sum is None else value_sum).unsqueeze(-2))
            key_sum = torch.add(key_sum0, b_k, alpha=n)
            key_sq = key_sq + (b_k * (2 * key_sum0 + n * b_k)).sum(dim=-1)
        if b_q is not None:
            query_sq = query_sq + (b_q * (2 * query_sum0 + n * b_q)).sum(dim=-1)
        ctx.n = n
        ctx.save_for_backward(gram, gram_values, z_sum, value_sum, w_k, b_k, w_q, b_q, key_gram, query_gram,
                              key_sum0, query_sum0, key_sq >= 0, query_sq >= 0)
        return kv, key_sum, key_sq.clamp_min(0), query_sq.clamp_min(0)

    @staticmethod
    @_first_order
    def backward(ctx, d_kv, d_key_sum, d_key_sq, d_query_sq):
        (gram, gram_values, z_sum, value_sum, w_k, b_k, w_q, b_q, key_gram, query_gram, key_sum0, query_sum0,
         key_kept, query_kept) = ctx.saved_tensors
        n = ctx.n
        batch = z_sum.shape[:-1]
        zeros = lambda shape: z_sum.new_zeros(shape)  # noqa: E731
        d_kv = zeros((*batch, *w_k.shape[:1], (z_sum if value_sum is None else value_sum).shape[-1])) \
            if d_kv is None else d_kv
        d_key_sum = zeros((*batch, w_k.shape[0])) if d_key_sum is None else d_key_sum
        d_key_sq = zeros(batch) if d_key_sq is None else d_key_sq * key_kept
        d_query_sq = zeros(batch) if d_query_sq is None else d_query_sq * query_kept
        dk2, dq2 = d_key_sq[..., None, None], d_query_sq[..., None, None]
        # keys: ⟨W_k G, W_k⟩ and W_k G_v (= W_k G for values z), W_k s, the bias terms
        d_key_gram = dk2 * w_k if gram_values is not None else dk2 * w_k + d_kv
        d_key_sum0 = d_key_sum if b_k is None else d_key_sum + 2 * d_key_sq[..., None] * b_k
        d_w_k = d_key_gram @ gram.transpose(-1, -2) + dk2 * key_gram + d_key_sum0[..., :, None] * z_sum[..., None, :]
        d_gram = w_k.T @ d_key_gram
        d_z_sum = d_key_sum0 @ w_k
        d_gram_values = d_value_sum = d_b_k = None
        if gram_values is not None:
            d_w_k = d_w_k + d_kv @ gram_values.transpose(-1, -2)
            d_gram_values = w_k.T @ d_kv
        if b_k is not None:
            sums_v = z_sum if value_sum is None else value_sum
            d_b_k = _batch_sum((d_kv * sums_v[..., None, :]).sum(dim=-1) + n * d_key_sum
                               + d_key_sq[..., None] * (2 * key_sum0 + 2 * n * b_k), 1)
            d_sums_v = (d_kv * b_k[:, None]).sum(dim=-2)
            if value_sum is None:
                d_z_sum = d_z_sum + d_sums_v
            else:
                d_value_sum = d_sums_v
        # queries: ⟨W_q G, W_q⟩ and the bias terms
        d_query_gram = dq2 * w_q
        d_w_q = d_query_gram @ gram.transpose(-1, -2) + dq2 * query_gram
        d_gram = d_gram + w_q.T @ d_query_gram
        d_b_q = None
        if b_q is not None:
            d_query_sum0 = 2 * d_query_sq[..., None] * b_q
            d_w_q = d_w_q + d_query_sum0[..., :, None] * z_sum[..., None, :]
            d_z_sum = d_z_sum + d_query_sum0 @ w_q
            d_b_q = _batch_sum(d_query_sq[..., None] * (2 * query_sum0 + 2 * n * b_q), 1)
        return (d_gram, d_gram_values, d_z_sum, d_value_sum, _batch_sum(d_w_k, 2), d_b_k, _batch_sum(d_w_q, 2),
                d_b_q, None)


def _rows_layout(per_head: torch.Tensor) -> torch.Tensor:
    """[..., H, d, d_v + 1] → [..., d, H d_v + H]: the numerators of all heads, then their denominators."""
    width = per_head.shape[-1] - 1
    return torch.cat([per_head[..., :width].movedim(-3, -2).flatten(-2), per_head[..., width].transpose(-1, -2)],
                     dim=-1)


def _heads_layout(rows: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of :func:`_rows_layout`: [..., d, H d_v + H] → [..., H, d, d_v + 1]."""
    split = rows.shape[-1] - heads
    numerators = rows[..., :split].unflatten(-1, (heads, split // heads)).movedim(-2, -3)
    return torch.cat([numerators, rows[..., split:].transpose(-1, -2).unsqueeze(-1)], dim=-1)


class _FoldQueries(torch.autograd.Function):
    r"""The query side folded into the key sums (:meth:`DIFFormerSimple._apply_global`): with
    r = 1/(‖Q‖_F ‖K‖_F) = query_sq^{-1/2} key_sq^{-1/2} (0 when either is 0; in float64)
    and F_h = r [Σ_j k_jh v_jᵀ | Σ_j k_jh] [..., H, d_k, d_v + 1],

        matrix = [W_q,hᵀ F_h]_h [..., d, H d_v + H],   offset = [b_q,hᵀ F_h]_h (None without b_q),

    laid out as :class:`_GlobalAttentionRows` reads them. One autograd node, hand-written backward."""

    @staticmethod
    def forward(ctx, kv, key_sum, key_sq, query_sq, w_q, b_q, heads):
        dk, d = w_q.shape[0] // heads, w_q.shape[1]
        # in float64, one root each (their product overflows float64 for |z| ~ 1e80)
        q2, k2 = query_sq.double(), key_sq.double()
        live = (q2 > 0) & (k2 > 0)
        r = torch.where(live, q2.clamp_min(_TINY).rsqrt() * k2.clamp_min(_TINY).rsqrt(), 0).to(kv.dtype)
        sums = torch.cat([kv.unflatten(-2, (heads, dk)), key_sum.unflatten(-1, (heads, dk)).unsqueeze(-1)], dim=-1)
        folded = sums * r[..., None, None, None]                             # [..., H, d_k, d_v + 1]
        w_heads = w_q.view(heads, dk, d)
        matrix = _rows_layout(w_heads.transpose(-1, -2) @ folded)
        offset = None
        if b_q is not None:
            offset = _rows_layout(b_q.view(heads, 1, dk) @ folded).squeeze(-2)  # [..., H, 1, d_v + 1] in
        ctx.heads = heads
        ctx.save_for_backward(sums, folded, r, key_sq, query_sq, w_heads, b_q)
        return matrix, offset

    @staticmethod
    @_first_order
    def backward(ctx, d_matrix, d_offset):
        sums, folded, r, key_sq, query_sq, w_heads, b_q = ctx.saved_tensors
        heads = ctx.heads
        d_per_head = _heads_layout(d_matrix, heads)                           # [..., H, d, d_v + 1]
        d_folded = w_heads @ d_per_head                                       # [..., H, d_k, d_v + 1]
        d_w_q = _batch_sum(folded @ d_per_head.transpose(-1, -2), 3).flatten(0, 1)
        d_b_q = None
        if b_q is not None:
            d_off = _heads_layout(d_offset.unsqueeze(-2), heads).squeeze(-2)  # [..., H, d_v + 1]
            d_folded = d_folded + b_q.view(heads, -1, 1) * d_off.unsqueeze(-2)
            d_b_q = _batch_sum((folded * d_off.unsqueeze(-2)).sum(dim=-1), 2).flatten()
        d_sums = d_folded * r[..., None, None, None]
        d_r = (d_folded * sums).sum(dim=(-3, -2, -1)).double()
        half = -0.5 * d_r * r.double()                                      # d r / d q² = −r / (2 q²), 0 where r = 0
        d_query_sq = torch.where(r != 0, half / query_sq.double(), 0).to(r.dtype)
        d_key_sq = torch.where(r != 0, half / key_sq.double(), 0).to(r.dtype)
        width = sums.shape[-1] - 1
        return (d_sums[..., :width].flatten(-3, -2), d_sums[..., width].flatten(-2), d_key_sq, d_query_sq, d_w_q,
                d_b_q, None)


class _Gram(torch.autograd.Function):
    """zᵀz [..., d, d] of z [..., N, d]; backward z (G + Gᵀ) for the incoming G: one [N, d] × [d, d]
    product, where autograd would form zG and zGᵀ separately and add them."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.transpose(-1, -2) @ z

    @staticmethod
    @_first_order
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return z @ (grad + grad.transpose(-1, -2))


class _GlobalAttentionRows(torch.autograd.Function):
    r"""The rows of DIFFormer-s with global norms from the folded sums (:meth:`DIFFormerSimple._apply_global`):

        P = z M + c,  M = [numerator | denominator] [..., d, H(d_v + 1)] (c: the offset, or 0),
        den_ih = P_i,den,h + N,  w_ih = 1/den_ih (1/N for a row at the floor, whose query term is dropped),
        out_i = (1/H) Σ_h w_ih (s_v + P_i,num,h).

    Both passes run over blocks of ``graph.ROW_BLOCK`` rows, so P and every other row-wise temporary
    exist for one block at a time (a few MB, reused by the heap, where an N-row temporary would
    be a fresh mapping each time). Backward without P: with g the incoming gradient and
    U_h = g numerator_hᵀ, the row dots g_i·(s_v + P_i,num,h) are z_i·U_ih + g_i·(s_v + c_num,h);
    the saved tensors are z (the layer's input, alive anyway), the small M, c, s_v and w [.., N, H].
    The backward pass writes into its results block by block, so it is differentiable once:
    second derivatives (``create_graph=True``) are refused (:func:`_first_order`)."""

    @staticmethod
    def forward(ctx, z, matrix, offset, value_sum, heads, num_nodes, floor):
        width = matrix.shape[-1] // heads - 1
        split = heads * width
        out = z.new_empty(*z.shape[:-1], width)
        weight = z.new_empty(*z.shape[:-1], heads)
        live = torch.empty(weight.shape, dtype=torch.bool, device=z.device)
        for rows in row_blocks(z.shape[-2]):
            p = torch.matmul(z[..., rows, :], matrix)
            if offset is not None:
                p.add_(offset.unsqueeze(-2))
            den = p[..., split:].add_(num_nodes)
            torch.gt(den, floor, out=live[..., rows, :])
            w = torch.where(live[..., rows, :], den, num_nodes).reciprocal_()
            weight[..., rows, :] = w
            query_weight = w * live[..., rows, :] / heads
            block = torch.mul(p[..., :width], query_weight[..., :1], out=out[..., rows, :])
            for h in range(1, heads):
                block.addcmul_(p[..., h * width:(h + 1) * width], query_weight[..., h:h + 1])
            block.addcmul_(w.mean(dim=-1, keepdim=True), value_sum.unsqueeze(-2))
        ctx.heads = heads
        ctx.save_for_backward(z, matrix, offset, value_sum, weight, live)
        return out

    @staticmethod
    @_first_order
    def backward(ctx, grad):
        z, matrix, offset, value_sum, weight, live = ctx.saved_tensors
        heads = ctx.heads
        width = matrix.shape[-1] // heads - 1
        split = heads * width
        numerator, denominator = matrix[..., :split], matrix[..., split:]
        d = z.shape[-1]
        query_weight = weight * live / heads                                 # ∂out_i/∂P_i,num,h, [..., N, H]
        numerator_t = numerator.unflatten(-1, (heads, width)).transpose(-3, -1).flatten(-2)  # [..., d_v, H d]
        shifted = value_sum.unsqueeze(-2).expand(*value_sum.shape[:-1], heads, width)
        if offset is not None:
            shifted = shifted + offset[..., :split].unflatten(-1, (heads, width))
        shifted = shifted.transpose(-1, -2)                                  # [..., d_v, H]: s_v + c_num,h
        grad_z = z.new_empty(z.shape) if ctx.needs_input_grad[0] else None
        grad_den = weight.new_empty(weight.shape)
        grad_matrix = z.new_zeros(matrix.shape)
        grad_numerator = grad_matrix[..., :split]
        for rows in row_blocks(z.shape[-2]):
            g, zb, qw = grad[..., rows, :], z[..., rows, :], query_weight[..., rows, :]
            u = torch.matmul(g, numerator_t).unflatten(-1, (heads, d))       # U_h = g numerator_hᵀ
            dots = (zb.unsqueeze(-2) * u).sum(dim=-1) + g @ shifted          # g_i·(s_v + P_i,num,h)
            gd = torch.mul(qw * weight[..., rows, :], dots, out=grad_den[..., rows, :]).neg_()
            if grad_z is not None:
                block = torch.mul(u[..., 0, :], qw[..., :1], out=grad_z[..., rows, :])
                for h in range(1, heads):
                    block.addcmul_(u[..., h, :], qw[..., h:h + 1])
                _rank_update(block, gd, denominator.transpose(-1, -2))
            weighted = (g.unsqueeze(-2) * qw.unsqueeze(-1)).flatten(-2)      # [..., rows, H d_v]
            grad_numerator.add_(zb.transpose(-1, -2) @ weighted)
        grad_matrix[..., split:] = z.transpose(-1, -2) @ grad_den
        grad_offset = None
        if offset is not None:
            grad_offset = torch.cat([(query_weight.transpose(-1, -2) @ grad).flatten(-2), grad_den.sum(dim=-2)], dim=-1)
        grad_value_sum = (weight.mean(dim=-1, keepdim=True).transpose(-1, -2) @ grad).squeeze(-2)
        return grad_z, grad_matrix, grad_offset, grad_value_sum, None, None, None


@dataclass(frozen=True)
class AttentionSums:
    r"""The node sums DIFFormer-s needs from all N nodes, additive over blocks of nodes
    (``a + b`` is the sums over both blocks):

    * ``kv`` = Σ_j k̂_j v_jᵀ ([..., H d_k, d]), ``key_sum`` = Σ_j k̂_j ([..., 1, H, d_k]),
      ``value_sum`` = Σ_j v_j ([..., 1, d]), ``num_nodes`` = N;
    * with ``qk_norm="global"`` the normalising Frobenius norms are global too: ``kv`` and
      ``key_sum`` hold the raw keys' sums, ``key_sq`` = Σ_j ‖k_j‖² and ``query_sq`` = Σ_j ‖q_j‖²
      ([..., 1, 1, 1]), and :meth:`DIFFormerSimple.apply` divides by their roots. ``key_sq`` is
      None when the keys are normalised already (per row, or frozen at Z⁰), ``query_sq`` None for
      per-row queries.

    ``dtype`` is the values' dtype (16-bit values are summed in float32 and the result of
    ``apply`` is rounded back to it)."""

    kv: torch.Tensor
    key_sum: torch.Tensor
    value_sum: torch.Tensor
    num_nodes: int
    key_sq: torch.Tensor | None
    query_sq: torch.Tensor | None
    dtype: torch.dtype

    def __add__(self, other: "AttentionSums") -> "AttentionSums":
        if not isinstance(other, AttentionSums):
            return NotImplemented
        if (self.key_sq is None) != (other.key_sq is None) or (self.query_sq is None) != (other.query_sq is None) \
                or self.dtype != other.dtype:
            raise ValueError("cannot add the sums of differently normalised attention (qk_norm, frozen) or dtypes")

        def add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None else a + b

        return AttentionSums(self.kv + other.kv, self.key_sum + other.key_sum, self.value_sum + other.value_sum,
                             self.num_nodes + other.num_nodes, add(self.key_sq, other.key_sq),
                             add(self.query_sq, other.query_sq), self.dtype)


def check_qk_norm(qk_norm: object) -> None:
    """ValueError for ``qk_norm="none"``, which DIFFormer-s cannot use (its kernel needs unit q̂, k̂)."""
    if qk_norm == "none":
        raise ValueError(
            "difformer_s needs unit queries and keys: with qk_norm='none' its kernel 1 + qᵀk is unbounded "
            "below, so S can be negative or infinite; use qk_norm='row' (the paper's form) or "
            "qk_norm='global' (the authors' code)"
        )


@register_diffusivity
class DIFFormerSimple(QueryKeyDiffusivity):
    name = "difformer_s"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N H d_k d)"
    )

    def __init__(self, in_channels: int | None = None, *, heads: int = 1, key_channels: int | None = None,
                 qk_norm: str = "row", frozen: bool = False, bias: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        check_qk_norm(qk_norm)
        super().__init__(in_channels, heads=heads, key_channels=key_channels, qk_norm=qk_norm, frozen=frozen, bias=bias,
                         dtype=dtype)

    def _floor(self, n: int, dtype: torch.dtype) -> float:
        """The kernel row sum at or below which a row counts as having no attention mass."""
        return ROUND_OFF_FLOOR * n * torch.finfo(dtype).eps

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """(S V) for all nodes: :meth:`apply` to z of :meth:`sums` over z (the queries projected once)."""
        values = self._check_values(z, values)
        if self.frozen:
            q, k = self.queries_keys(z, normalise_queries=False)
            return self._apply_sums(q, self._node_sums(q, k, values, keys_normalised=True))
        self.check_input(z)
        if self.qk_norm == "global":
            return self._apply_global(z, self._gram_sums(z, values))
        # Row norms: the keys (and their normalised copy) are gone before the queries are formed.
        sums = self._node_sums(None, normalise_qk(self.project(self.key, z), "row"), values, keys_normalised=True)
        return self._apply_sums(self.project(self.query, z), sums)

    def sums(self, z: torch.Tensor, values: torch.Tensor | None = None) -> AttentionSums:
        """The node sums of the rows of ``z`` (a block of nodes, or all of them) with their
        ``values`` (default ``z``): additive over blocks, so ``sums(Z[a]) + sums(Z[b])`` is
        ``sums(Z)`` for a split of the nodes into a and b. Frozen at Z⁰, the queries and keys are
        Z⁰'s (all nodes), so z must then be the whole state."""
        values = self._check_values(z, values)
        if self.frozen:
            q, k = self.queries_keys(z, normalise_queries=False)
            return self._node_sums(q, k, values, keys_normalised=True)
        self.check_input(z)
        if self.qk_norm == "global":
            return self._gram_sums(z, values)
        return self._node_sums(None, normalise_qk(self.project(self.key, z), "row"), values, keys_normalised=True)

    def apply(self, z: torch.Tensor, sums: AttentionSums) -> torch.Tensor:
        """(S V)_i for the rows i of ``z`` (a block of nodes, or all), given the ``sums`` over all N
        nodes (:meth:`sums`, added over blocks): [..., rows, d], in the values' dtype."""
        if not isinstance(sums, AttentionSums):
            raise TypeError(f"sums must be the AttentionSums of difformer_s.sums(z, values), got {type(sums).__name__}")
        if (sums.query_sq is None) != (self.qk_norm == "row"):
            raise ValueError(f"sums were formed with another qk_norm than this diffusivity's {self.qk_norm!r}")
        if self.frozen:
            q, _ = self.queries_keys(z, normalise_queries=False)
            return self._apply_sums(q, sums)
        self.check_input(z)
        if self.qk_norm == "global":
            return self._apply_global(z, sums)
        return self._apply_sums(self.project(self.query, z), sums)

    @staticmethod
    def _check_values(z: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
        values = z if values is None else values
        if values.shape[:-1] != z.shape[:-1]:
            raise ValueError(f"values must have the node shape of z {tuple(z.shape[:-1])}, got {tuple(values.shape)}")
        return values

    def _node_sums(self, q: torch.Tensor | None, k: torch.Tensor, values: torch.Tensor, *,
              keys_normalised: bool) -> AttentionSums:
        """Sums over the rows of k [..., n, H, d_k] (normalised, or raw with their Σ‖k‖²) and
        values [..., n, d]; with ``qk_norm="global"`` also Σ‖q‖² of the raw queries q."""
        dtype = values.dtype
        k, values = widen(k), widen(values)                                  # 16-bit: sums in float32
        def square_sum(x: torch.Tensor) -> torch.Tensor:  # Σ‖x_j‖² over nodes and heads, no N-row temporary
            return torch.linalg.vector_norm(x, dim=(-3, -2, -1), keepdim=True).square()

        query_sq = None if self.qk_norm == "row" else square_sum(widen(q))
        key_sq = None if keys_normalised else square_sum(k)
        return AttentionSums(
            kv=k.flatten(-2).transpose(-1, -2) @ values,                       # [..., H d_k, d]
            key_sum=k.sum(dim=-3, keepdim=True),                               # [..., 1, H, d_k]
            value_sum=values.sum(dim=-2, keepdim=True),                        # [..., 1, d]
            num_nodes=values.shape[-2], key_sq=key_sq, query_sq=query_sq, dtype=dtype,
        )

    def _linear_parts(self, lin: torch.nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """W [H d_k, d] and b [H d_k] (or None) of ``self.query``/``self.key`` in ``dtype``."""
        if lin.weight.dtype == dtype:
            return lin.weight, lin.bias
        return lin.weight.to(dtype), None if lin.bias is None else lin.bias.to(dtype)

    def _gram_sums(self, z: torch.Tensor, values: torch.Tensor) -> AttentionSums:
        r"""The sums of :meth:`_node_sums` for global norms, without forming q or k: from the node
        sums G = Σ_j z_j z_jᵀ, s = Σ_j z_j (and Σ_j z_j v_jᵀ, Σ_j v_j for separate values) by
        :class:`_ProjectedSums`. One [d, d] product over the N nodes (two with separate values)
        replaces the three of projecting q and k and forming Σ_j k_j v_jᵀ."""
        dtype = values.dtype
        same = values is z
        zw, vw = widen(z), widen(values)
        n = z.shape[-2]
        gram = _Gram.apply(zw)                                               # [..., d, d]
        z_sum = zw.sum(dim=-2)                                               # [..., d]
        gram_values = None if same else zw.transpose(-1, -2) @ vw            # [..., d, d_v]
        value_sum = None if same else vw.sum(dim=-2)                         # [..., d_v]
        w_k, b_k = self._linear_parts(self.key, zw.dtype)
        w_q, b_q = self._linear_parts(self.query, zw.dtype)
        kv, key_sum, key_sq, query_sq = _ProjectedSums.apply(gram, gram_values, z_sum, value_sum, w_k, b_k, w_q, b_q, n)
        return AttentionSums(kv=kv, key_sum=key_sum.unflatten(-1, (1, self.heads, self.key_channels)),
                             value_sum=(z_sum if same else value_sum).unsqueeze(-2), num_nodes=n,
                             key_sq=key_sq[..., None, None, None], query_sq=query_sq[..., None, None, None],
                             dtype=dtype)

    def _apply_global(self, z: torch.Tensor, sums: AttentionSums) -> torch.Tensor:
        r"""(S V)_i for global norms, with the queries folded into the sums: q_i = W_q z_i + b_q
        enters only through q_iᵀ(K̂ᵀV) and q_iᵀ Σ_j k̂_j, so with r = 1/(‖Q‖_F ‖K‖_F) and the
        per-head [d_k, d_v + 1] matrix F_h = r [Σ_j k_jh v_jᵀ | Σ_j k_jh]

            [numerator_ih | den_ih − N] = z_iᵀ (W_q,hᵀ F_h) + b_q,hᵀ F_h,

        one [N, d] × [d, H (d_v + 1)] product (:class:`_FoldQueries`, :class:`_GlobalAttentionRows`)."""
        if sums.key_sq is None:
            raise ValueError("sums were formed with keys frozen at Z⁰; this diffusivity is not frozen")
        zw = widen(z)
        w_q, b_q = self._linear_parts(self.query, zw.dtype)
        batch = sums.kv.shape[:-2]
        matrix, offset = _FoldQueries.apply(sums.kv, sums.key_sum.flatten(-3), sums.key_sq.reshape(batch),
                                            sums.query_sq.reshape(batch), w_q, b_q, self.heads)
        n = sums.num_nodes
        out = _GlobalAttentionRows.apply(zw, matrix, offset, sums.value_sum.squeeze(-2), self.heads, n,
                                         self._floor(n, sums.dtype))
        return out.to(sums.dtype)

    def _apply_sums(self, q: torch.Tensor, sums: AttentionSums) -> torch.Tensor:
        # Head mean without [n, H, d] temporaries and without materialising q̂ = q / r_q:
        #   den_ih = N + q̂_ih·Σ_j k̂_jh,   (SV)_i = c_i Σ_j v_j + Σ_h (q_ih / (H r_q,ih den_ih))·(K̂_hᵀV),
        #   c_i = (1/H) Σ_h 1/den_ih; a row with no attention mass (den_ih at the floor) is uniform:
        #   its den_ih is replaced by N and its query term dropped. Global norms: the raw key sums
        #   are divided by ‖K‖_F = √Σ‖k_j‖² here, at the end ([H d_k, d] work, not N rows).
        n = sums.num_nodes
        q = widen(q)
        scale = inverse_norm(q, "row") if sums.query_sq is None else _inverse_sqrt(sums.query_sq)  # 1/r_q
        kv, key_sum = sums.kv, sums.key_sum
        if sums.key_sq is not None:
            inv_key = _inverse_sqrt(sums.key_sq)                               # [..., 1, 1, 1]
            kv, key_sum = kv * inv_key.squeeze(-1), key_sum * inv_key
        den = (q * key_sum).sum(dim=-1, keepdim=True) * scale + n
        live = den > self._floor(n, sums.dtype)                              # [..., rows, H, 1]
        inv_den = torch.where(live, den, n).reciprocal_()
        weighted_q = (q * (scale * inv_den * live / self.heads)).flatten(-2)  # [..., rows, H d_k]
        out = weighted_q @ kv
        return out.addcmul_(inv_den.mean(dim=-2), sums.value_sum).to(sums.dtype)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("difformer_s.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        n = z.shape[-2]
        kernel = (1 + torch.einsum("...ihm,...jhm->...hij", widen(q), widen(k))).clamp_min_(0)  # ≥ 0 up to round-off
        total = kernel.sum(dim=-1, keepdim=True)
        live = total > self._floor(n, z.dtype)
        return torch.where(live, kernel / torch.where(live, total, 1), 1 / max(1, n)).mean(dim=-3).to(z.dtype)
