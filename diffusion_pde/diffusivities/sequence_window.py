r"""``sequence_window``: a learned position kernel over the offsets |o| ≤ w of a sequence.

$$ (K Z)_t = \sum_{0 < |o| \le w,\ 0 \le t+o < L} w_h(o)\,(z_{t+o} - z_t), \qquad w_h(o) = \mathrm{softplus}(\theta_{h,o}) \ge 0 $$

and S = I + K (see :mod:`diffusion_pde.diffusivities._position` for the conventions: rows of K
sum to zero at every position, the boundaries included, because offsets outside the sequence
are dropped together with their share of the diagonal). ``symmetric=True`` ties w(o) = w(−o)
(then K = Kᵀ); ``causal=True`` keeps o ∈ [−w, −1]. ``heads`` channel blocks have their own
weights, initialised with interior row sums spread geometrically over ``init_rate`` (each
offset of a head gets an equal share).

K V is formed as a sum of 2w shifted differences, O(L w d) time, never an L × L matrix; a
constant sequence gives exactly 0 (each difference is 0), so constants are fixed points of the
flow in floating point too. 16-bit states are differenced in float32 and rounded back.

Properties: rows sum to one, symmetric iff tied and not causal, state-independent,
shift-equivariant for the positions t with w ≤ t < L − w (causal: t ≥ w), not
permutation-equivariant. Cost O(L w d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._base import positive_int, register_diffusivity, widen
from ._position import PositionDiffusivity, initial_weights


@register_diffusivity
class SequenceWindow(PositionDiffusivity):
    """S = I + K with learned non-negative weights on the offsets 0 < |o| ≤ ``window``.

    Args:
        window: the largest offset w (the kernel reaches w positions each way).
        heads, causal, init_rate, dtype: see :class:`PositionDiffusivity`.
        symmetric: tie w(o) = w(−o), making K symmetric (not with ``causal``).
    """

    name = "sequence_window"
    cost = "O(L w d)"

    def __init__(self, window: int = 4, *, heads: int = 1, causal: bool = False, symmetric: bool = False,
                 init_rate: float | tuple[float, float] = (1.0, 0.01), dtype: torch.dtype = torch.float32) -> None:
        super().__init__(heads=heads, causal=causal, symmetric=symmetric, init_rate=init_rate, dtype=dtype)
        self.window = positive_int("window", window)
        past = list(range(-self.window, 0))
        self.offsets: tuple[int, ...] = tuple(past if causal else past + [-o for o in reversed(past)])
        # One parameter per offset, or per distance |o| when tied; ``_which`` maps offsets to them.
        keys = [abs(o) for o in self.offsets] if symmetric else list(self.offsets)
        unique = sorted(set(keys))
        self.register_buffer("_which", torch.tensor([unique.index(k) for k in keys]), persistent=False)
        share = torch.full((len(unique),), 1.0 / len(self.offsets), dtype=torch.float64)
        self.weight = nn.Parameter(initial_weights(self.initial_rates, share).to(dtype))

    def weights(self) -> torch.Tensor:
        """w_h(o) for the offsets in ``self.offsets``, [H, len(offsets)] (float32 for 16-bit parameters)."""
        return F.softplus(widen(self.weight)).index_select(1, self._which)

    def offset_profile(self, length: int) -> torch.Tensor:
        w = self.weights()
        inside = [m for m, o in enumerate(self.offsets) if abs(o) < length]
        index = torch.tensor([self.offsets[m] + length - 1 for m in inside], dtype=torch.long, device=w.device)
        profile = w.new_zeros(self.heads, 2 * length - 1)
        return profile.index_copy(1, index, w[:, inside]) if inside else profile

    def total_weight(self) -> torch.Tensor:
        return self.weights().sum(dim=-1)

    def kernel(self, values: torch.Tensor) -> torch.Tensor:
        v = self._heads_view(widen(values))                                   # [..., L, H, c]
        out = _ShiftedDifferences.apply(v, self.weights().to(v.dtype), self.offsets)
        return out.flatten(-2).to(values.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}"


def _rows(o: int, length: int) -> tuple[slice, slice]:
    """(rows t that have the offset o inside the sequence, their partners t + o)."""
    return (slice(0, length - o), slice(o, length)) if o > 0 else (slice(-o, length), slice(0, length + o))


class _ShiftedDifferences(torch.autograd.Function):
    """(K V)_t = Σ_m w_m (v_{t+o_m} − v_t) over the offsets inside the sequence, for v [..., L, H, c]
    and weights w [H, M]; the backward pass forms Kᵀ G and ∂/∂w_m = Σ ⟨G_t, v_{t+o_m} − v_t⟩ by
    the same shifted slices, so neither pass keeps an L-row temporary per offset (autograd
    through the loop kept two). Differences first: a constant sequence gives exactly 0."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, w: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
        ctx.offsets = offsets
        ctx.save_for_backward(v, w)
        length = v.shape[-3]
        out = torch.zeros_like(v)
        difference = torch.empty_like(v)  # one buffer for every offset's differences (fresh ones page-fault)
        full = w.t()[:, :, None].expand(-1, -1, v.shape[-1]).contiguous()  # [M, H, c]: no broadcast in the loop
        for m, o in enumerate(offsets):
            if abs(o) < length:
                rows, partners = _rows(o, length)
                d = torch.sub(v[..., partners, :, :], v[..., rows, :, :], out=difference[..., rows, :, :])
                out[..., rows, :, :].addcmul_(d, full[m])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        v, w = ctx.saved_tensors
        length = v.shape[-3]
        grad_v = torch.zeros_like(v) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        full = w.t()[:, :, None].expand(-1, -1, v.shape[-1]).contiguous()
        difference = torch.empty_like(v) if grad_w is not None else None
        for m, o in enumerate(ctx.offsets):
            if abs(o) >= length:
                continue
            rows, partners = _rows(o, length)
            g = grad[..., rows, :, :]
            if grad_v is not None:
                grad_v[..., partners, :, :].addcmul_(g, full[m])
                grad_v[..., rows, :, :].addcmul_(g, full[m], value=-1)
            if grad_w is not None:
                d = torch.sub(v[..., partners, :, :], v[..., rows, :, :], out=difference[..., rows, :, :]).mul_(g)
                grad_w[:, m] = d.sum(dim=-1).reshape(-1, w.shape[0]).sum(dim=0)
        return grad_v, grad_w, None
