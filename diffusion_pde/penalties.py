r"""Concave non-decreasing penalties δ of the DIFFormer energy and their derivatives.

    E(Z; Z^k) = ‖Z − Z^k‖²_F + λ Σ_{i,j} δ(‖z_i − z_j‖²)

The optimal diffusivity of the energy-descent theorem is S_ij ∝ δ'(‖z_i − z_j‖²) (the
``energy`` diffusivity). Built in:

| name | δ(s) | δ'(s) | domain |
|---|---|---|---|
| ``difformer`` | 2s − s²/4 | 2 − s/2 | s ∈ [0, 4] (unit-norm states); gives DIFFormer-s |
| ``log`` | log(1 + s) | 1/(1 + s) | s ≥ 0 |
| ``sqrt`` | √(s + ε) | 1/(2√(s + ε)) | s ≥ 0 |
| ``quadratic`` | s | 1 | s ≥ 0 (the Dirichlet-energy limit; S = uniform) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

TensorFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Penalty:
    """δ with its derivative δ' and the largest argument it is defined for (``s_max``)."""

    name: str
    value: TensorFn
    derivative: TensorFn
    s_max: float = math.inf

    def check_domain(self, s: torch.Tensor, dtype: torch.dtype | None = None) -> None:
        """Raise if a squared distance exceeds ``s_max`` by more than round-off (never clip
        silently): 64 ulps of ``dtype`` (the states' dtype, default s's), at least 1e-9."""
        if math.isfinite(self.s_max) and s.numel():
            worst = float(s.detach().max())
            slack = max(1e-9, 64 * torch.finfo(s.dtype if dtype is None else dtype).eps)
            if worst > self.s_max * (1 + slack):
                raise ValueError(
                    f"penalty {self.name!r} is defined for squared distances up to {self.s_max}, got {worst:.6g}; "
                    "normalise the states to unit norm or choose delta='log' / 'sqrt'"
                )


def _autograd_derivative(value: TensorFn) -> TensorFn:
    """δ' of a user-supplied elementwise δ, by automatic differentiation (composable with autograd)."""
    elementwise = torch.func.vmap(torch.func.grad(value))

    def derivative(s: torch.Tensor) -> torch.Tensor:
        return elementwise(s.reshape(-1)).reshape(s.shape)

    return derivative


def sqrt_penalty(eps: float = 1e-6) -> Penalty:
    return Penalty("sqrt", lambda s: torch.sqrt(s + eps), lambda s: 0.5 / torch.sqrt(s + eps))


BUILT_IN: dict[str, Penalty] = {
    "difformer": Penalty("difformer", lambda s: 2 * s - s * s / 4, lambda s: 2 - s / 2, s_max=4.0),
    "log": Penalty("log", torch.log1p, lambda s: 1 / (1 + s)),
    "sqrt": sqrt_penalty(),
    "quadratic": Penalty("quadratic", lambda s: s, torch.ones_like),
}


def penalty(spec: str | Penalty | TensorFn) -> Penalty:
    """Resolve a built-in name, a :class:`Penalty`, or an elementwise callable δ (δ' by autograd)."""
    if isinstance(spec, Penalty):
        return spec
    if isinstance(spec, str):
        if spec not in BUILT_IN:
            raise ValueError(f"unknown penalty delta={spec!r}; built-in: {', '.join(BUILT_IN)} (or pass a callable)")
        return BUILT_IN[spec]
    if callable(spec):
        return Penalty(getattr(spec, "__name__", "custom"), spec, _autograd_derivative(spec))
    raise TypeError(f"delta must be a penalty name, a Penalty or a callable s -> delta(s), got {type(spec).__name__}")
