r"""DIFFormer-s with global norms (the authors' released form), in augmented Gram form.

With ẑ_j = [z_j; 1] ∈ R^{d+1} and v̂_j = [v_j; 1], the biased projections are k_j = Ŵ_k ẑ_j and
q_i = Ŵ_q ẑ_i with Ŵ = [W | b] (b = 0 without a bias), and every node sum the attention needs
is a product with the augmented Gram matrices

    Ĝ = Σ_j ẑ_j ẑ_jᵀ  [d+1, d+1]  (Σ z zᵀ, Σ z, N),     Ĝ_v = Σ_j ẑ_j v̂_jᵀ  [d+1, d_v+1]:

    A_h = Ŵ_k,h Ĝ_v = [Σ_j k_jh v_jᵀ | Σ_j k_jh],   ‖K‖²_F = ⟨Ŵ_k Ĝ, Ŵ_k⟩,   ‖Q‖²_F = ⟨Ŵ_q Ĝ, Ŵ_q⟩,
    r = 1 / (‖Q‖_F ‖K‖_F),   M_h = r Ŵ_q,hᵀ A_h + e_{d+1} Ĝ_v[d+1, :]   [d+1, d_v+1].

Row i of head h is then ẑ_iᵀ M_h = [Σ_j v_j + r q_ihᵀ Σ_j k_jh v_jᵀ | N + r q_ihᵀ Σ_j k_jh], the
numerator and the kernel row sum of S_ij ∝ 1 + r q_ihᵀ k_jh, and (S V)_i = (1/H) Σ_h numerator_ih
/ den_ih. A row whose sum is at or below ``floor`` (no correct digit left, see
:data:`~diffusion_pde.diffusivities.difformer_s.ROUND_OFF_FLOOR`) is uniform, Σ_j v_j / N.

A layer is two [N, d] × [d, ·] products forward (Ĝ, and P = ẑ M formed as z M[:d] + M[d] without
ẑ) and three backward (:class:`GlobalAttention`'s hand-written backward pass); the [d, d] algebra
between is a handful of small products (:func:`fold`). The same functions, as plain autograd
operations, serve the streamed form (:class:`GramSums`, additive over blocks of nodes, then
:func:`attention_rows` per block of rows).

Precision: the norms and sums come from Σ z zᵀ, so a common offset c of the states that the
biases cancel costs about eps (c / spread)² instead of eps (c / spread) (float32: 1e-3 relative
at c = 1e3 times the spread); the states DIFFormer layers see come out of a LayerNorm.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..graph import row_blocks

_TINY = torch.finfo(torch.float64).tiny  # where the float64 roots of the global norms clamp their argument


def first_order(backward):
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


def batch_sum(x: torch.Tensor, dims: int) -> torch.Tensor:
    """x summed over all but its last ``dims`` dimensions (a parameter's gradient over a batch)."""
    return x.sum(dim=tuple(range(x.dim() - dims))) if x.dim() > dims else x


def augmented_gram(z: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_j ẑ_j v̂_jᵀ [..., d+1, d_v+1] of z [..., N, d] and values [..., N, d_v] (default z):
    [[Σ z vᵀ, Σ z], [Σ vᵀ, N]], without forming ẑ."""
    n = z.shape[-2]
    z_sum = z.sum(dim=-2)
    v, v_sum = (z, z_sum) if values is None else (values, values.sum(dim=-2))
    top = torch.cat([z.transpose(-1, -2) @ v, z_sum.unsqueeze(-1)], dim=-1)
    bottom = torch.cat([v_sum, v_sum.new_full((*v_sum.shape[:-1], 1), float(n))], dim=-1)
    return torch.cat([top, bottom.unsqueeze(-2)], dim=-2)


def _stacked_maps(w_k: torch.Tensor, b_k: torch.Tensor | None, w_q: torch.Tensor,
                  b_q: torch.Tensor | None) -> torch.Tensor:
    """[Ŵ_k; Ŵ_q] = [[W_k, b_k], [W_q, b_q]] [2K, d+1] (a zero column for a missing bias)."""
    def bias(b: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        return w.new_zeros(w.shape[0]) if b is None else b
    return torch.cat([torch.cat([w_k, w_q]), torch.cat([bias(b_k, w_k), bias(b_q, w_q)]).unsqueeze(-1)], dim=-1)


@dataclass(frozen=True)
class Fold:
    """The [d, d]-sized intermediates of :func:`fold` (kept for the backward pass)."""

    maps: torch.Tensor         # [Ŵ_k; Ŵ_q] [2K, d+1]
    keys: torch.Tensor         # A = Ŵ_k Ĝ_v [..., K, d_v+1]
    projected: torch.Tensor    # [Ŵ_k Ĝ; Ŵ_q Ĝ] [..., 2K, d+1]
    squares: torch.Tensor      # [‖K‖²_F, ‖Q‖²_F] [..., 2]
    r: torch.Tensor            # 1/(‖Q‖_F ‖K‖_F), 0 where either is 0 [...]
    core: torch.Tensor         # Ŵ_q,hᵀ A_h [..., H, d+1, d_v+1]
    matrix: torch.Tensor       # M [..., d+1, H (d_v+1)]: head h in columns h(d_v+1) … h(d_v+1)+d_v


def fold(gram: torch.Tensor, gram_values: torch.Tensor | None, w_k: torch.Tensor, b_k: torch.Tensor | None,
         w_q: torch.Tensor, b_q: torch.Tensor | None, heads: int) -> Fold:
    """M of the module docstring from Ĝ (``gram``), Ĝ_v (``gram_values``; None: the values are z)
    and the key and query maps W [H d_k, d], b [H d_k] (or None). Plain autograd operations."""
    maps = _stacked_maps(w_k, b_k, w_q, b_q)
    k, d = w_k.shape[0], maps.shape[-1] - 1
    projected = maps @ gram
    squares = (projected * maps).unflatten(-2, (2, k)).sum(dim=(-2, -1)).clamp_min(0)
    gv = gram if gram_values is None else gram_values
    keys = projected[..., :k, :] if gram_values is None else maps[:k] @ gram_values
    # in float64, one root each (their product overflows float64 for |z| ~ 1e80)
    wide = squares.double()
    r = torch.where((wide > 0).all(dim=-1), wide.clamp_min(_TINY).rsqrt().prod(dim=-1), 0).to(gv.dtype)
    core = maps[k:].view(heads, k // heads, d + 1).transpose(-1, -2) @ keys.unflatten(-2, (heads, k // heads))
    per_head = core * r[..., None, None, None]
    per_head[..., d, :] += gv[..., None, d, :]                             # e_{d+1} Ĝ_v[d+1, :] in every head
    return Fold(maps, keys, projected, squares, r, core, per_head.movedim(-3, -2).flatten(-2))


def _product_plus(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b + c (c broadcast over the rows), one fused call for matrices."""
    if a.dim() == 2 and b.dim() == 2:
        return torch.addmm(c, a, b)
    return torch.matmul(a, b).add_(c)


def _accumulate(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out += a @ b in place (one fused call for matrices)."""
    return out.addmm_(a, b) if out.dim() == a.dim() == b.dim() == 2 else out.add_(a @ b)


def _scores(z: torch.Tensor, matrix: torch.Tensor, heads: int) -> torch.Tensor:
    """P = ẑ M = z M[:d] + M[d] for rows z [..., n, d]: [..., n, H, d_v+1]."""
    d = z.shape[-1]
    return torch.matmul(z, matrix[..., :d, :]).add_(matrix[..., d:, :]).unflatten(-1, (heads, -1))


def attention_rows(z: torch.Tensor, matrix: torch.Tensor, heads: int, floor: float,
                   uniform: torch.Tensor) -> torch.Tensor:
    """(S V)_i for the rows z [..., n, d] from M (:func:`fold`): [..., n, d_v]; a row (of a head)
    whose sum is at or below ``floor`` is ``uniform`` = Σ_j v_j / N [..., 1, d_v]. Plain autograd
    operations."""
    return _ratios(_scores(z, matrix, heads), heads, floor, uniform)


def _ratios(p: torch.Tensor, heads: int, floor: float, uniform: torch.Tensor) -> torch.Tensor:
    """:func:`attention_rows` from the scores P [..., n, H, d_v+1]."""
    num, den = p[..., :-1], p[..., -1:]
    if heads == 1:  # [..., n, d_v] and [..., n, 1]: the ratio is a new tensor, not a view
        num, den = num.squeeze(-2), den.squeeze(-2)
    else:
        uniform = uniform.unsqueeze(-2)
    live = den > floor
    if bool(live.all()):
        ratio = num / den
    else:
        ratio = torch.where(live, num / torch.where(live, den, 1), uniform)
    return ratio if heads == 1 else ratio.mean(dim=-2)


def uniform_row(gram_values: torch.Tensor) -> torch.Tensor:
    """Σ_j v_j / N [..., 1, d_v] from Ĝ_v (the row of a node without attention mass)."""
    return gram_values[..., -1:, :-1] / gram_values[..., -1:, -1:]


@dataclass(frozen=True)
class GramSums:
    """The node sums DIFFormer-s with global norms needs from all N nodes, additive over blocks
    of nodes (``a + b`` is the sums over both blocks): ``gram`` Ĝ [..., d+1, d+1] and
    ``gram_values`` Ĝ_v [..., d+1, d_v+1] (None when the values are z: Ĝ_v = Ĝ), ``num_nodes`` N,
    ``dtype`` the values' dtype (16-bit values are summed in float32, the rows rounded back)."""

    gram: torch.Tensor
    gram_values: torch.Tensor | None
    num_nodes: int
    dtype: torch.dtype

    def __add__(self, other: "GramSums") -> "GramSums":
        if not isinstance(other, GramSums) or (self.gram_values is None) != (other.gram_values is None) \
                or self.dtype != other.dtype:
            raise ValueError("cannot add the sums of differently normalised attention (qk_norm, frozen), of values "
                             "and of none, or of two dtypes")
        return GramSums(self.gram + other.gram, None if self.gram_values is None else self.gram_values + other.gram_values,
                        self.num_nodes + other.num_nodes, self.dtype)


def attend(z: torch.Tensor, values: torch.Tensor | None, w_k: torch.Tensor, b_k: torch.Tensor | None,
           w_q: torch.Tensor, b_q: torch.Tensor | None, heads: int, floor: float):
    """The forward pass of :class:`GlobalAttention` (without autograd, e.g. in evaluation): (S V)
    [..., N, d_v], Ĝ, Ĝ_v (or None), the :class:`Fold` and P (None when the rows are more than one
    block of ``ROW_BLOCK``)."""
    gram = augmented_gram(z)
    gram_values = None if values is None else augmented_gram(z, values)
    parts = fold(gram, gram_values, w_k, b_k, w_q, b_q, heads)
    uniform = uniform_row(gram if gram_values is None else gram_values)
    blocks = list(row_blocks(z.shape[-2]))
    scores = None
    if len(blocks) == 1:
        scores = _scores(z, parts.matrix, heads)
        out = _ratios(scores, heads, floor, uniform)
    else:
        out = z.new_empty(*z.shape[:-1], uniform.shape[-1])
        for rows in blocks:
            out[..., rows, :] = attention_rows(z[..., rows, :], parts.matrix, heads, floor, uniform)
    return out, gram, gram_values, parts, scores


class GlobalAttention(torch.autograd.Function):
    """(S V) of DIFFormer-s with global norms for all rows of z [..., N, d] (values [..., N, d_v]
    or None: z): :func:`augmented_gram`, :func:`fold` and :func:`attention_rows` (in blocks of
    ``graph.ROW_BLOCK`` rows) as one autograd node whose backward pass is written out: it saves z,
    the values and the [d, d]-sized intermediates, and P when the rows are one block (at most
    ``ROW_BLOCK`` · H (d_v+1) entries); for more rows it recomputes P per block (one product)
    instead of keeping an N-row tensor. Differentiable once (:func:`first_order`)."""

    @staticmethod
    def forward(ctx, z, values, w_k, b_k, w_q, b_q, heads, floor):
        out, gram, gram_values, parts, scores = attend(z, values, w_k, b_k, w_q, b_q, heads, floor)
        ctx.heads, ctx.floor, ctx.biases = heads, floor, (b_k is not None, b_q is not None)
        ctx.save_for_backward(z, values, gram, gram_values, parts.maps, parts.keys, parts.projected, parts.squares,
                              parts.r, parts.core, parts.matrix, scores)
        return out

    @staticmethod
    @first_order
    def backward(ctx, grad):
        z, values, gram, gram_values, maps, keys, projected, squares, r, core, matrix, scores = ctx.saved_tensors
        heads, floor = ctx.heads, ctx.floor
        n, d = z.shape[-2], z.shape[-1]
        gv = gram if gram_values is None else gram_values
        width = gv.shape[-1]                                                   # d_v + 1
        # rows: out_i = (1/H) Σ_h num_ih / den_ih (live), Σ_j v_j / N (dead)
        blocks = list(row_blocks(n))
        # one block: d_p is kept and dL/dz = d_p M[:d]ᵀ + (the Gram terms) formed at the end
        grad_z = z.new_empty(z.shape) if len(blocks) > 1 else None
        d_matrix = matrix.new_zeros(matrix.shape)
        d_uniform = gv.new_zeros(*gv.shape[:-2], 1, width - 1)
        d_p = None
        for rows in blocks:
            zb, g = z[..., rows, :], grad[..., rows, :]
            p = _scores(zb, matrix, heads) if scores is None else scores
            num, den = p[..., :-1], p[..., -1:]
            live = den > floor
            if bool(live.all()):
                inv = den.reciprocal()
            else:
                inv = torch.where(live, den, 1).reciprocal_().mul_(live)
                d_uniform += ((~live).sum(dim=-2).to(g.dtype) * g).sum(dim=-2, keepdim=True) / heads
            # d_p = [d_num | d_den] per head, written in place: [..., rows, H, d_v+1]
            d_p = p.new_empty(p.shape)
            d_num, d_den = d_p[..., :-1], d_p[..., -1:]
            torch.mul(g.unsqueeze(-2), inv if heads == 1 else inv / heads, out=d_num)
            torch.sum(d_num * num, dim=-1, keepdim=True, out=d_den)
            d_den.mul_(inv).neg_()                                              # −(g·num)/(H den²)
            d_p = d_p.flatten(-2)                                               # [..., rows, H (d_v+1)]
            if grad_z is not None:
                grad_z[..., rows, :] = d_p @ matrix[..., :d, :].transpose(-1, -2)
            _accumulate(d_matrix[..., :d, :], zb.transpose(-1, -2), d_p)
            d_matrix[..., d, :] += d_p.sum(dim=-2)
        # fold: M_h = r C_h + e_d Ĝ_v[d], C_h = Ŵ_q,hᵀ A_h, A = Ŵ_k Ĝ_v
        d_heads = d_matrix.unflatten(-1, (heads, width)).movedim(-2, -3)      # [..., H, d+1, d_v+1]
        d_gv = torch.zeros_like(gv)
        d_gv[..., d, :] = d_heads[..., d, :].sum(dim=-2)
        d_gv[..., d:, :-1] += d_uniform / n
        d_core = d_heads * r[..., None, None, None]
        d_rr = (d_core * core).sum(dim=(-3, -2, -1))  # dL/dr · r: of order |z|² like the forward (dL/dr alone is |z|³)
        k = maps.shape[0] // 2
        dk = k // heads
        d_maps = torch.empty_like(maps)
        d_keys = (maps[k:].view(heads, dk, d + 1) @ d_core).flatten(-3, -2)   # [..., K, d_v+1]
        d_maps[:k] = batch_sum(d_keys @ gv.transpose(-1, -2), 2)
        d_maps[k:] = batch_sum(keys.unflatten(-2, (heads, dk)) @ d_core.transpose(-1, -2), 3).flatten(0, 1)
        d_gv += maps[:k].T @ d_keys
        # r = ‖K‖⁻¹ ‖Q‖⁻¹ with ‖K‖² = ⟨Ŵ_k Ĝ, Ŵ_k⟩ (d/dŴ_k: 2 Ŵ_k Ĝ, d/dĜ: Ŵ_kᵀŴ_k), ‖Q‖² alike
        alive = (r != 0).unsqueeze(-1)
        d_squares = torch.where(alive, (-0.5 * d_rr).unsqueeze(-1) / torch.where(alive, squares, 1), 0)
        row_scale = d_squares.repeat_interleave(k, dim=-1).unsqueeze(-1)        # [..., 2K, 1]
        d_maps += batch_sum(2 * row_scale * projected, 2)
        d_gram = (maps * row_scale).transpose(-1, -2) @ maps
        # the Gram matrices: Ĝ = ẑᵀẑ (dẑ = ẑ (D + Dᵀ)), Ĝ_v = ẑᵀv̂ (dẑ = v̂ D_vᵀ, dv̂ = ẑ D_v)
        grad_values = None
        if gram_values is None:
            d_gram = d_gram + d_gv
        sym = d_gram + d_gram.transpose(-1, -2)
        if grad_z is None:  # one block (or none): start from the Gram term, then add d_p M[:d]ᵀ
            grad_z = _product_plus(sym[..., d:, :d], z, sym[..., :d, :d])
            if d_p is not None:
                _accumulate(grad_z, d_p, matrix[..., :d, :].transpose(-1, -2))
        else:
            _accumulate(grad_z, z, sym[..., :d, :d]).add_(sym[..., d:, :d])
        if gram_values is not None:
            _accumulate(grad_z, values, d_gv[..., :d, :-1].transpose(-1, -2)).add_(d_gv[..., :d, -1].unsqueeze(-2))
            grad_values = _product_plus(d_gv[..., d:, :-1], z, d_gv[..., :d, :-1])
        has_bk, has_bq = ctx.biases
        return (grad_z, grad_values, d_maps[:k, :d], d_maps[:k, d] if has_bk else None, d_maps[k:, :d],
                d_maps[k:, d] if has_bq else None, None, None)
