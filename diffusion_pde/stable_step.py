r"""A learned Euler step that cannot leave the stability region of its diffusion.

For a generator L = S − I whose off-diagonal entries are ≥ 0 and whose rows sum to zero (a
position kernel K, a non-negative row-stochastic S − I, and sums of these), Gershgorin's discs
are centred at L_ii ≤ 0 with radius |L_ii|, so

    ρ(L) ≤ ρ̂ = 2 max_i |L_ii|          (:func:`generator_radius_bound`)

and an explicit Euler step of size h ≤ 2/ρ̂ maps every disc into the unit disc (|1 + hλ| ≤ 1) and
makes I + hL non-negative with unit row sums: each step is a convex combination of the states
(a discrete maximum principle), causal (non-normal) kernels included. For a symmetric kernel the
exact bound is h ≤ 2/ρ(K), which 2/ρ̂ ≤ 2/ρ(K) respects. With a source weight μ the field's
linear part is (1 − μ)L − μI, whose bound is ρ̂_F = (1 − μ)ρ̂ + 2μ.

:class:`StableStep` parametrises the step of a layer as

    δt = min(max_step, 2/ρ̂_F) · sigmoid(θ) · (1 − margin)

with ρ̂_F recomputed from the current weights at every call, so whatever θ and the kernel
weights become during training, δt < 2/ρ̂_F ≤ 2/ρ: training cannot leave the stable region.
The bound covers the diffusion part only; a reaction term R adds its own Lipschitz constant.
:class:`StableEulerLayer` takes that step through :func:`solvers.solve` (explicit Euler, the
step a traced t1, so gradients reach θ and the kernel weights).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

import solvers

from .diffusivities import Diffusivity, PositionDiffusivity, Superposition
from .diffusivities._base import positive_int
from .field import DiffusionField


def generator_radius_bound(s: Diffusivity, length: int | None = None) -> torch.Tensor:
    """ρ̂ ≥ ρ(S − I) by Gershgorin, a 0-d tensor differentiable in the weights.

    A position kernel gives 2 max_t r_t (:meth:`PositionDiffusivity.radius_bound`, for sequences
    of ``length``, or of any length when None); a non-negative row-stochastic S gives 2 (its
    diagonal S_ii ≥ 0, so |L_ii| ≤ 1); a :class:`Superposition` the sum over its parts.

    Raises:
        TypeError: S is none of these (its generator may have negative off-diagonal entries or
            rows that do not sum to zero, so the discs do not bound it this way).
    """
    if isinstance(s, PositionDiffusivity):
        return s.radius_bound(length)
    if isinstance(s, Superposition):
        bounds = [generator_radius_bound(part, length) for part in s.parts]
        return sum(bounds[1:], bounds[0])
    if s.properties.row_stochastic and s.properties.nonnegative:
        param = next(s.parameters(), None)
        return torch.tensor(2.0, dtype=torch.float32 if param is None else param.dtype,
                            device=None if param is None else param.device)
    raise TypeError(f"no Gershgorin bound for the generator of {s.name!r}: it must be a position kernel, a "
                    "non-negative row-stochastic diffusivity, or a Superposition of these")


def field_radius_bound(field: DiffusionField, length: int | None = None) -> torch.Tensor:
    """ρ̂_F = (1 − μ) ρ̂(S − I) + 2μ for the linear part (1 − μ)(S − I) − μI of ``field``."""
    mu = field.source_weight
    return (1 - mu) * generator_radius_bound(field.diffusivity, length) + 2 * mu


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


class StableStep(nn.Module):
    """δt = min(max_step, 2/ρ̂_F) · sigmoid(θ) · (1 − margin), θ learned (module docstring).

    Args:
        init: sigmoid(θ) at the start, in (0, 1): the initial step as a fraction of the bound.
        margin: in (0, 1): δt stays below (1 − margin) times the bound even when sigmoid(θ)
            rounds to 1.
        max_step: the largest step when the bound is larger (weak kernels), > 0.
        dtype: of θ (the states' dtype).
    """

    def __init__(self, init: float = 0.5, margin: float = 0.05, max_step: float = 1.0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        init = _fraction("init", init)
        self.margin = _fraction("margin", margin)
        if isinstance(max_step, bool) or not isinstance(max_step, numbers.Real) or not math.isfinite(max_step) \
                or max_step <= 0:
            raise ValueError(f"max_step must be a finite number > 0, got {max_step!r}")
        self.max_step = float(max_step)
        self.theta = nn.Parameter(torch.tensor(math.log(init / (1 - init)), dtype=dtype))

    def bound(self, field: DiffusionField, length: int | None = None) -> torch.Tensor:
        """min(max_step, 2/ρ̂_F): the largest step the parametrisation approaches."""
        rho = field_radius_bound(field, length).to(self.theta.dtype)
        return 2 / rho.clamp_min(2 / self.max_step)

    def forward(self, field: DiffusionField, length: int | None = None) -> torch.Tensor:
        """δt as a 0-d tensor in θ's dtype, for sequences of ``length`` (None: any length)."""
        return self.bound(field, length) * torch.sigmoid(self.theta) * (1 - self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, max_step={self.max_step}"


class StableEulerLayer(nn.Module):
    """One layer Z ↦ Z + δt F(Z) (``n_steps`` Euler steps of δt each) of ``field`` through
    :func:`solvers.solve`, with the learned δt of ``step`` (default ``StableStep()`` in the field's
    dtype) for the input's length L: the Gershgorin bound of the rows a sequence of that length
    has (O(L)), so a global kernel whose weights decay slowly is not held to the bound of an
    unbounded sequence. ``forward(z, source_state=None)``: the source term (μ > 0) pulls towards
    ``source_state`` (default z). Shapes [..., L, d] → [..., L, d]."""

    def __init__(self, field: DiffusionField, step: StableStep | None = None, n_steps: int = 1) -> None:
        super().__init__()
        if not isinstance(field, DiffusionField):
            raise TypeError(f"field must be a DiffusionField, got {type(field).__name__}")
        param = next(field.parameters(), None)
        dtype = torch.float32 if param is None else param.dtype
        step = StableStep(dtype=dtype) if step is None else step
        if not isinstance(step, StableStep):
            raise TypeError(f"step must be a StableStep, got {type(step).__name__}")
        field_radius_bound(field)  # a field without a Gershgorin bound is refused now, not at the first call
        self.field, self.step, self.n_steps = field, step, positive_int("n_steps", n_steps)

    def forward(self, z: torch.Tensor, source_state: torch.Tensor | None = None) -> torch.Tensor:
        self.field.set_initial_state(z if source_state is None else source_state)
        dt = self.step(self.field, z.shape[-2] if z.shape[-2] > 0 else None)
        return solvers.solve(self.field, z, dt * self.n_steps, method="euler", n_steps=self.n_steps).final

    def extra_repr(self) -> str:
        return f"n_steps={self.n_steps}"
