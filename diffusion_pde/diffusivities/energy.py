r"""``energy``: the optimal diffusivity of the energy-descent theorem for a penalty δ.

$$ S_{ij} = \frac{\delta'(\lVert z_i - z_j \rVert^2)}{\sum_l \delta'(\lVert z_i - z_l \rVert^2)} $$

for E(Z; Z^k) = ‖Z − Z^k‖²_F + λ Σ_ij δ(‖z_i − z_j‖²) with concave non-decreasing δ
(:mod:`diffusion_pde.penalties`: ``difformer``, ``log``, ``sqrt``, ``quadratic`` or any callable,
its derivative by autograd). No learned parameters: it acts on the state itself.

Squared distances are summed coordinate by coordinate (not as ‖z_i‖² + ‖z_j‖² − 2 z_iᵀz_j, which
cancels catastrophically for nearby large states), in float32 for 16-bit states (there is no
16-bit ``cdist``); a distance that exceeds a bounded penalty's domain by round-off only is taken
at the domain's end, a larger one is a ValueError. For a concave non-decreasing δ the diagonal
weight δ'(0) is the largest of its row, so a row sum is at least δ'(0) and cannot underflow; a
row of δ' summing to 0, infinity or NaN is a ValueError too, never a NaN in S.

Properties: row-stochastic, non-negative (δ' ≥ 0), symmetric kernel but row normalisation
makes S non-symmetric in general; state-dependent. Cost O(N² d) time, O(N²) memory (dense).
"""

from __future__ import annotations

import math

import torch

from ..penalties import Penalty, TensorFn, penalty
from ._base import Diffusivity, DiffusivityProperties, register_diffusivity, widen


@register_diffusivity
class EnergyDiffusivity(Diffusivity):
    name = "energy"
    cached_inputs = ("_frozen_s",)
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N^2 d)"
    )

    def __init__(self, delta: str | Penalty | TensorFn = "difformer", *, frozen: bool = False) -> None:
        super().__init__()
        self.penalty = penalty(delta)
        self.frozen = bool(frozen)
        self._frozen_s: torch.Tensor | None = None

    def _matrix(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 3):
            raise ValueError(f"z must have shape [N, d] or [B, N, d], got {tuple(z.shape)}")
        work = widen(z)
        sq = torch.cdist(work, work, compute_mode="donot_use_mm_for_euclid_dist").square()
        self.penalty.check_domain(sq, z.dtype)
        if math.isfinite(self.penalty.s_max):
            sq = sq.clamp(max=self.penalty.s_max)  # round-off only: larger distances were refused above
        weights = self.penalty.derivative(sq)
        if bool((weights < 0).any()):
            raise ValueError(f"penalty {self.penalty.name!r} has a negative derivative here: δ must be non-decreasing")
        total = weights.sum(dim=-1, keepdim=True)
        if not bool(((total > 0) & torch.isfinite(total)).all()):
            raise ValueError(
                f"penalty {self.penalty.name!r} gives a row of derivatives δ' summing to 0, infinity or NaN, so "
                "S = δ'/Σδ' is undefined; δ'(0) must be finite and positive (e.g. sqrt_penalty(eps) with eps > 0)"
            )
        return (weights / total).to(z.dtype)

    def set_initial_state(self, z0: torch.Tensor) -> None:
        self._frozen_s = self._matrix(z0) if self.frozen else None

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if self.frozen:
            if self._frozen_s is None:
                raise RuntimeError("energy diffusivity is frozen at Z⁰: call set_initial_state(z0) first")
            return self._frozen_s
        if z is None:
            raise ValueError("energy.dense(z) needs the state z")
        return self._matrix(z)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.dense(z) @ (z if values is None else values)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, delta={self.penalty.name!r}, frozen={self.frozen}"
