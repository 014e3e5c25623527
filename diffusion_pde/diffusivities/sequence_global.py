r"""``sequence_global``: a long-range position kernel over every offset, applied by FFT.

$$ (K Z)_t = \sum_{o \ne 0,\ 0 \le t+o < L} w_h(o)\,(z_{t+o} - z_t), \qquad
   w_h(o) = \sum_{m=1}^{M} a_{h,\pm,m}\, e^{-\lambda_m (|o| - 1)} \ge 0 $$

(± the side of o: past o < 0, future o > 0) with learned amplitudes a = softplus(θ) ≥ 0 and decay
rates λ_m = exp(η_m) > 0 over M ``scales``, initialised at λ_m = 1/ℓ_m for decay lengths ℓ_m
spread geometrically over [1, ``max_scale``]: a mixture of exponentials reaching across the whole
sequence. ``symmetric=True`` shares the amplitudes of both sides (K = Kᵀ); ``causal=True`` keeps
the past only (exactly in K and ``dense``; the FFT product spreads its round-off, ≈ eps Σ_o w(o)
times the values, over the future positions too). S = I + K (see
:mod:`diffusion_pde.diffusivities._position`).

K V = w ⋆ V − r ⊙ V: the off-diagonal part is a linear convolution, formed with real FFTs of a
length n ≥ 2L − 1 (the smallest 2^a 3^b 5^c, so nothing wraps around), O(L log L) per channel;
the row sums r_t = Σ_{o≠0, 0≤t+o<L} w(o) come from prefix sums of the profile, O(L), so every
row sums to zero at the boundaries too (up to the round-off of the FFT, ≈ eps log n Σ_o w(o)
times the values). 16-bit states are transformed in float32 (CPU FFTs have no 16-bit form).

Properties: rows sum to one, symmetric iff tied and not causal, state-independent, not
permutation-equivariant, and not shift-equivariant (every row reaches both ends; its
off-diagonal part is Toeplitz). Cost O(L log L d).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._base import positive_int, register_diffusivity, widen
from ._position import PositionDiffusivity, initial_weights


def fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c ≥ n (a length pocketfft transforms fast)."""
    best = 1 << max(0, (n - 1).bit_length())
    power5 = 1
    while power5 < best:
        odd = power5
        while odd < best:
            candidate = odd
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            odd *= 3
        power5 *= 5
    return best


@register_diffusivity
class SequenceGlobal(PositionDiffusivity):
    """S = I + K with exponentially decaying weights over all offsets, applied in O(L log L).

    Args:
        scales: number M of decay lengths in the mixture.
        max_scale: the longest initial decay length ℓ_M (positions); ℓ_1 = 1.
        heads, causal, init_rate, dtype: see :class:`PositionDiffusivity`.
        symmetric: one set of amplitudes for both sides, K = Kᵀ (not with ``causal``).
    """

    name = "sequence_global"
    cost = "O(L log L d)"
    shift_equivariant = False

    def __init__(self, *, scales: int = 4, max_scale: float = 1024.0, heads: int = 1, causal: bool = False,
                 symmetric: bool = False, init_rate: float | tuple[float, float] = (1.0, 0.01),
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(heads=heads, causal=causal, symmetric=symmetric, init_rate=init_rate, dtype=dtype)
        self.scales = positive_int("scales", scales)
        if isinstance(max_scale, bool) or not isinstance(max_scale, (int, float)) or not math.isfinite(max_scale) \
                or max_scale < 1:
            raise ValueError(f"max_scale (the longest initial decay length, in positions) must be a number >= 1, "
                             f"got {max_scale!r}")
        self.max_scale = float(max_scale)
        self.sides = 1 if causal or symmetric else 2
        lengths = torch.logspace(0.0, math.log10(self.max_scale), self.scales, dtype=torch.float64)
        decay = 1.0 / lengths
        self.log_decay = nn.Parameter(decay.log().to(dtype))
        # Each (side, scale) carries an equal share of the interior row sum r_h: Σ_{d≥1} a e^{−λ(d−1)} = a / (1 − e^{−λ}).
        sides_total = 2 if not causal else 1
        share = (-torch.expm1(-decay)) / (self.scales * sides_total)          # [M]
        self.amplitude = nn.Parameter(initial_weights(self.initial_rates, share.repeat(self.sides)).to(dtype)
                                      .view(self.heads, self.sides, self.scales))

    def _parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a [H, sides, M] ≥ 0, λ [M] > 0), float32 for 16-bit parameters."""
        return F.softplus(widen(self.amplitude)), widen(self.log_decay).exp()

    def _side_weights(self, length: int) -> torch.Tensor:
        """w at the distances 1..L−1 per side, [H, sides, L − 1]."""
        a, rate = self._parts()
        steps = torch.arange(length - 1, dtype=a.dtype, device=a.device)       # |o| − 1
        # e^{−λ·0} = 1 exactly, also for λ = inf (0·inf would be NaN).
        decay = torch.exp(-torch.where(steps == 0, 0.0, rate[:, None] * steps))  # [M, L − 1]
        return a @ decay

    def offset_profile(self, length: int) -> torch.Tensor:
        side = self._side_weights(length)
        past = side[:, 0]
        future = past.new_zeros(past.shape) if self.causal else side[:, -1]
        zero = past.new_zeros(self.heads, 1)
        return torch.cat([past.flip(-1), zero, future], dim=-1)               # o = −(L−1) … L−1

    def total_weight(self) -> torch.Tensor:
        a, rate = self._parts()
        per_side = (a / -torch.expm1(-rate)).sum(dim=-1)                       # [H, sides]
        return per_side.sum(dim=-1) * (2 if self.symmetric else 1)

    def kernel(self, values: torch.Tensor) -> torch.Tensor:
        v = widen(values)
        length = v.shape[-2]
        profile = self.offset_profile(length).to(v.dtype)                     # [H, 2L − 1]
        n = fft_length(2 * length - 1)
        # Circular buffer of g[m] = w(−m), m = t − j: (w ⋆ V)_t = Σ_j w(j − t) v_j = Σ_j g[t − j] v_j.
        flipped = profile.flip(-1)
        buffer = torch.cat([flipped[:, length - 1:], flipped.new_zeros(self.heads, n - (2 * length - 1)),
                            flipped[:, :length - 1]], dim=-1)
        spectrum = torch.fft.rfft(buffer, dim=-1).t()[:, :, None]             # [F, H, 1]
        product = self._heads_view(torch.fft.rfft(v, n=n, dim=-2)) * spectrum  # [..., F, H, c]
        conv = torch.fft.irfft(product.flatten(-2), n=n, dim=-2)[..., :length, :]
        rows = self.row_sums(length).to(v.dtype).t()[:, :, None]              # [L, H, 1]
        out = self._heads_view(conv) - rows * self._heads_view(v)
        return out.flatten(-2).to(values.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scales={self.scales}, max_scale={self.max_scale}"
