"""Adaptive embedded Runge–Kutta methods, delegated to torchdiffeq (``odeint``/``odeint_adjoint``).

torchdiffeq controls the step size from the local error estimate ‖err‖ ≤ atol + rtol·|z|; this
module adds exact step/evaluation counting (through torchdiffeq's step callbacks), a
``max_steps`` budget, makes every output time a step end (no interpolated outputs), and turns
torchdiffeq's assertions into :class:`IntegrationError`. When the step size underflows, the solve
is replayed with every evaluation probed, to tell a field that returned NaN/Inf (and where) from
a stiff problem (see :mod:`solvers._nonfinite`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torchdiffeq

from ._adjoint import bound_inputs, odeint_adjoint
from ._nonfinite import NonFiniteEvaluation, Probe
from ._solution import IntegrationError, SolverStats
from ._validate import count_nonfinite

ADAPTIVE_METHODS: dict[str, str] = {
    "dopri5": "Dormand–Prince 5(4)",
    "bosh3": "Bogacki–Shampine 3(2)",
    "adaptive_heun": "Heun–Euler 2(1)",
    "dopri8": "Dormand–Prince 8(5,3)",
}


def _check_shape(out: object, z: torch.Tensor, what: str) -> None:
    if not isinstance(out, torch.Tensor) or out.shape != z.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what} must return a tensor of the state's shape {tuple(z.shape)}, got {got}")


class CountedField(torch.nn.Module):
    """Wraps ``field(t, z)``: counts evaluations, checks the output shape, and (for torchdiffeq)
    counts accepted/rejected steps, enforces ``max_steps`` and reports accepted states.

    Registering ``field`` as a submodule (when it is one) exposes its parameters to the adjoint;
    ``inputs`` are the field's declared external inputs, bound for every evaluation (see
    :mod:`solvers._adjoint`).
    """

    def __init__(
        self,
        field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        stats: SolverStats,
        max_steps: int | None = None,
        callback: Callable[[float, torch.Tensor], None] | None = None,
    ) -> None:
        super().__init__()
        self.field = field
        self.stats = stats
        self.max_steps = max_steps
        self.callback = callback
        self.t_reached = float("nan")
        self.inputs: tuple[torch.Tensor, ...] = ()

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.stats.nfe += 1
        with bound_inputs(self.field, self.inputs):
            dz = self.field(t, z)
        _check_shape(dz, z, "field(t, z)")
        return dz

    def euler_step(self, t: torch.Tensor, z: torch.Tensor, h: float) -> torch.Tensor:
        """z + h·field(t, z), one evaluation: the field's own ``euler_step(t, z, h)`` when it has
        one (it may compute the step fused, in place on its own output), else the plain sum."""
        step = getattr(self.field, "euler_step", None)
        if step is None:
            return torch.add(z, self(t, z), alpha=h)
        self.stats.nfe += 1
        with bound_inputs(self.field, self.inputs):
            out = step(t, z, h)
        _check_shape(out, z, "field.euler_step(t, z, h)")
        return out

    # torchdiffeq calls these on the function it integrates.
    def callback_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        t = float(t0.detach())
        if count_nonfinite(y0):
            raise IntegrationError("non-finite state (NaN or Inf)", t, self.stats,
                                   "Tighten rtol/atol or check the vector field.")
        if self.callback is not None and t > self.t_reached:
            self.callback(t, y0)
        self.t_reached = t
        if self.max_steps is not None and self.stats.steps >= self.max_steps:
            raise IntegrationError(f"max_steps={self.max_steps} exceeded", t, self.stats,
                                   "Raise max_steps, loosen rtol/atol, or shorten [t0, t1].")

    def callback_accept_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.stats.steps += 1
        self.stats.accepted += 1

    def callback_reject_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.stats.steps += 1
        self.stats.rejected += 1


def integrate_adaptive(
    counted: CountedField,
    z0: torch.Tensor,
    t: torch.Tensor,
    method: str,
    rtol: float,
    atol: float,
    adjoint: bool,
    max_steps: int,
) -> torch.Tensor:
    """States at the strictly increasing times ``t`` (``t[0]`` = t0, z0's dtype and device),
    shape ``[len(t), *z0.shape]``."""
    # Land a step on every output time: torchdiffeq otherwise steps past it and returns its
    # dense-output interpolant there, which is less accurate than the step itself (for dopri8
    # by orders of magnitude at t1).
    options = {"max_num_steps": max_steps + 1, "step_t": t[1:]}
    try:
        if adjoint:
            # Differentiates the field's parameters and declared inputs too (and refuses a field
            # that reads other tensors requiring grad; the check traces one evaluation, in nfe).
            return odeint_adjoint(counted, z0, t, rtol=rtol, atol=atol, method=method, options=options,
                                  adjoint_rtol=rtol, adjoint_atol=atol, adjoint_options=dict(options))
        return torchdiffeq.odeint(counted, z0, t, rtol=rtol, atol=atol, method=method, options=options)
    except AssertionError as err:
        message = str(err)
        if "underflow" in message:
            bad = _first_nonfinite(counted, z0, t, method, rtol, atol, options)
            if bad is not None:
                raise IntegrationError(
                    f"{bad.describe()} (the integration's function evaluation {bad.evaluation}), so "
                    f"{method}'s step size underflowed", counted.t_reached, counted.stats,
                    "Check the vector field near that time; if |z| was growing without bound, the "
                    "solution blows up there.",
                ) from err
            raise IntegrationError(
                f"step size underflow in {method} ({message})", counted.t_reached, counted.stats,
                "The field's values were finite: the solution may blow up near that time, or the "
                "problem is stiff (loosen rtol/atol or use a fixed-step method with a small dt).",
            ) from err
        if "max_num_steps" in message:
            raise IntegrationError(f"max_steps={max_steps} exceeded", counted.t_reached, counted.stats,
                                   "Raise max_steps or loosen rtol/atol.") from err
        raise


def _first_nonfinite(
    counted: CountedField, z0: torch.Tensor, t: torch.Tensor, method: str, rtol: float, atol: float,
    options: dict,
) -> NonFiniteEvaluation | None:
    """Replay the failed solve (deterministic: same field, same controls) with every evaluation
    probed; the first non-finite one, or None when the replay meets none (a stiff problem)."""
    replay = CountedField(counted.field, SolverStats())
    replay.inputs = counted.inputs
    try:
        with torch.no_grad():
            torchdiffeq.odeint(Probe(replay), z0.detach(), t, rtol=rtol, atol=atol, method=method,
                               options=options)
    except NonFiniteEvaluation as bad:
        return bad
    except AssertionError:
        pass
    return None
