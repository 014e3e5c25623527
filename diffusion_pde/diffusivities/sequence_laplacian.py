r"""``sequence_laplacian``: the nearest-neighbour sequence Laplacian with learned per-head rates.

$$ (K Z)_t = \alpha_h\,(z_{t-1} - 2 z_t + z_{t+1}) \ \text{inside}, \qquad
   (KZ)_0 = \alpha_h (z_1 - z_0),\ (KZ)_{L-1} = \alpha_h (z_{L-2} - z_{L-1}), \qquad \alpha_h = \mathrm{softplus}(\theta_h) \ge 0 $$

the heat equation ∂z/∂t = α ∂²z/∂x² discretised on the positions with reflecting ends, S = I + K.
``heads`` channel blocks diffuse at their own rate (heads = d: one rate per channel; the initial
rates 2α_h are spread geometrically over ``init_rate``, the multi-scale part of a Linear
Diffusion Network). ``causal=True`` keeps the left neighbour only: (KZ)_t = α_h (z_{t−1} − z_t).

It is ``sequence_window`` with window 1 and tied weights. Spectrum of the non-causal K:
−4α sin²(πk/2L), k = 0..L−1, so ρ(K) < 4α and Euler is stable for h ≤ 1/(2α).

Properties: rows sum to one, symmetric (not when causal), state-independent, shift-equivariant
away from the two ends, not permutation-equivariant. Cost O(L d).
"""

from __future__ import annotations

import torch

from ._base import register_diffusivity
from .sequence_window import SequenceWindow


@register_diffusivity
class SequenceLaplacian(SequenceWindow):
    """S = I + α_h Δ with the discrete second difference Δ (reflecting ends) and learned α_h ≥ 0."""

    name = "sequence_laplacian"
    cost = "O(L d)"

    def __init__(self, *, heads: int = 1, causal: bool = False, init_rate: float | tuple[float, float] = (1.0, 0.01),
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(1, heads=heads, causal=causal, symmetric=not causal, init_rate=init_rate, dtype=dtype)

    def rates(self) -> torch.Tensor:
        """α_h, [H]."""
        return self.weights()[:, 0]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, heads={self.heads}, causal={self.causal}"
