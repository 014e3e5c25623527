"""The single entry point :func:`solve` for dz/dt = field(t, z) on [t0, t1]."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch

from . import _validate as check
from ._adaptive import ADAPTIVE_METHODS, CountedField, integrate_adaptive
from ._fixed import build_grid, differentiable_points, integrate_fixed
from ._solution import Solution, SolverStats
from ._tableau import fixed_step_methods, get_tableau
from ._times import SNAP_MAX_STEP_FRACTION, Time, check_interval, check_t_eval, nearest_grid_point, snap_tolerance

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Default step budgets (``max_steps=None``): adaptive methods discover their step count, so a
# budget stops a runaway solve; fixed-step methods know theirs up front, and one above the budget
# (a dt of 1e-12, say) is refused before any work instead of running for hours.
ADAPTIVE_MAX_STEPS = 10_000
FIXED_MAX_STEPS = 1_000_000


def available_methods() -> tuple[str, ...]:
    """All method names accepted by :func:`solve`: registered fixed-step ones, then adaptive ones."""
    return fixed_step_methods() + tuple(ADAPTIVE_METHODS)


def solve(
    field: Field,
    z0: torch.Tensor,
    t1: float | torch.Tensor,
    *,
    t0: float | torch.Tensor = 0.0,
    method: str = "rk4",
    dt: float | None = None,
    n_steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    t_eval: Sequence[float] | torch.Tensor | None = None,
    adjoint: bool = False,
    max_steps: int | None = None,
    callback: Callable[[float, torch.Tensor], None] | None = None,
) -> Solution:
    """Integrate dz/dt = field(t, z) from z(t0) = z0 to t1.

    Args:
        field: callable ``(t, z) -> dz/dt`` with ``t`` a 0-d tensor of z's dtype/device; pass an
            ``nn.Module`` for its parameters to receive gradients with ``adjoint=True``.
        z0: initial state, any real floating tensor shape ([N, d], [B, N, d], ..., also empty or
            0-d), CPU or CUDA. float16/bfloat16 work with fixed-step methods only.
        t1, t0: end and start time, t1 > t0: Python numbers or one-element tensors. A tensor
            that requires grad (of z0's dtype, on z0's device) gets its exact first-order
            gradient: with a fixed-step method, the derivative of the computed discrete map (the
            grid t0 + k (t1 − t0)/n moves with t0 and t1); with an adaptive method (also with
            ``adjoint=True``), the derivative of the ODE's solution, dz(t1)/dt1 = f(t1, z(t1))
            and dz(t1)/dt0 = −(∂z(t1)/∂z0) f(t0, z0). Each adaptive one costs one more field
            evaluation (counted in ``stats.nfe``).
        method: a fixed-step Runge–Kutta method (``euler``, ``midpoint``, ``heun``, ``rk4``, or
            any registered with :func:`register_tableau`) or an adaptive one delegated to
            torchdiffeq (``dopri5``, ``bosh3``, ``adaptive_heun``, ``dopri8``).
        dt, n_steps: fixed-step methods only, exactly one of them: ``n_steps`` equal steps, or
            ``ceil((t1 − t0)/dt)`` equal steps. Points of ``t_eval`` are added to the grid. ``dt``
            carries no gradient (the step count is piecewise constant in it): to learn the
            integration length, make t1 require grad and fix ``n_steps``.
        rtol, atol: adaptive methods only (default 1e-6 and 1e-8): local error tolerance
            atol + rtol·|z|; refused with a fixed-step method, whose error they do not control.
        t_eval: increasing output times in [t0, t1] (a sequence or a 1-D tensor); the result holds
            the state at each. A time within a few ulps of the precision it was given in (float32
            for a float32 tensor) of a grid point, or of t0/t1, is that point. With an adaptive
            method, an entry that requires grad gets the derivative f(t_m, z(t_m)) (one more
            evaluation each); fixed-step methods refuse such entries.
        adjoint: adaptive methods only: gradients by the adjoint ODE (torchdiffeq), O(1) memory.
        max_steps: budget of steps. Adaptive methods: attempted steps before
            :class:`IntegrationError` (default 10 000). Fixed-step methods: the number of equal
            steps, checked before any work (default 1 000 000).
        callback: ``callback(t, z)`` after every accepted step, with the new time and state.

    Returns:
        :class:`Solution` with the final state, the states at ``t_eval``, the times and the
        exact work counters. An empty state (a zero-size dimension) with an adaptive method is
        its own exact solution: no steps, no field evaluations.

    Raises:
        TypeError / ValueError: for bad arguments, naming the argument, before any work; among
            them: a time tensor that requires grad but has another dtype or device than z0; a
            ``dt`` (or ``rtol``/``atol``) that requires grad; ``t_eval`` entries that require grad
            with a fixed-step method; a float16/bfloat16 z0 with an adaptive method; a fixed-step
            count above ``max_steps``, or with steps too short to resolve in float64.
        IntegrationError: max_steps exceeded, step-size underflow or a non-finite state; for a
            non-finite value, the message names where it first appeared: the step, stage and
            time (fixed-step), or the function evaluation and its time (adaptive), and whether
            the field returned it or the state overflowed.
    """
    if not callable(field):
        raise TypeError(f"field must be callable as field(t, z), got {type(field).__name__}")
    _check_method(method)
    adaptive = method in ADAPTIVE_METHODS
    z0 = check.check_state(z0, method, adaptive)
    rtol, atol = check_options(method, dt=dt, n_steps=n_steps, rtol=rtol, atol=atol, adjoint=adjoint)
    start, end = check_interval(t0, t1, z0)
    outputs = check_t_eval(t_eval, start, end, z0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(t, z), got {type(callback).__name__}")
    if max_steps is not None:
        max_steps = check.check_count("max_steps", max_steps)

    stats = SolverStats()
    if adaptive:
        counted = CountedField(field, stats, max_steps or ADAPTIVE_MAX_STEPS, callback)
        final, states = _solve_adaptive(counted, z0, start, end, outputs, method, rtol, atol, adjoint)
    else:
        if outputs is not None and any(t.grad is not None for t in outputs):
            raise TypeError(
                f"t_eval entries that require grad need an adaptive method (the state at t_m then has "
                f"the derivative f(t_m, z(t_m))); with fixed-step method {method!r} output times are "
                "grid points and carry no gradient: detach t_eval, or let t1 (and t0) require grad"
            )
        steps = _fixed_step_count(start.value, end.value, dt, n_steps, method, max_steps)
        final, states = _solve_fixed(CountedField(field, stats), z0, start, end, outputs, method, steps, callback)
    wanted = outputs if outputs is not None else [end]
    return Solution(
        final=final,
        states=states,
        times=torch.tensor([t.value for t in wanted], dtype=torch.float64),
        stats=dataclasses.replace(stats),
        method=method,
    )


def _solve_fixed(
    counted: CountedField, z0: torch.Tensor, start: Time, end: Time, outputs: list[Time] | None,
    method: str, steps: int, callback: Callable[[float, torch.Tensor], None] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    # With t0 or t1 requiring grad the base points move with them, so an output time is never
    # identified with an interior base point (it would move too): it stays a constant point.
    traced = start.grad is not None or end.grad is not None
    if outputs is None:
        grid = build_grid(start.value, end.value, steps)
    else:
        grid = build_grid(start.value, end.value, steps, [t.value for t in outputs],
                          [snap_tolerance(t, start, end) for t in outputs], snap_interior=not traced)
    points = None
    if traced:
        points = differentiable_points(grid, _float64(start, z0), _float64(end, z0))
    saved, final = integrate_fixed(counted, z0, grid, get_tableau(method), counted.stats, callback, points)
    return final, torch.stack(saved) if outputs is not None else final.unsqueeze(0)


def _float64(time: Time, z0: torch.Tensor) -> torch.Tensor:
    """The time as a float64 tensor on z0's device, differentiable when it requires grad."""
    if time.grad is not None:
        return time.grad.to(torch.float64)
    return torch.tensor(time.value, dtype=torch.float64, device=z0.device)


def _solve_adaptive(
    counted: CountedField, z0: torch.Tensor, start: Time, end: Time, outputs: list[Time] | None,
    method: str, rtol: float, atol: float, adjoint: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Output times within round-off of t0 or t1 are t0 or t1 (never a step of length 1e-9), and
    # times that coincide in z0's dtype (in which torchdiffeq steps) are one time.
    ends = (start.value, end.value)
    values = []
    for t in outputs or []:
        k = nearest_grid_point(t.value, snap_tolerance(t, start, end), start.value, end.value, 1)
        values.append(t.value if k is None else ends[k])
    ordered = sorted({*ends, *values})
    t, inverse = torch.unique_consecutive(torch.tensor(ordered, dtype=z0.dtype), return_inverse=True)
    if len(t) < 2:
        raise ValueError(
            f"t0={start.value} and t1={end.value} are the same time in z0's dtype {z0.dtype}; shift the "
            "interval towards 0 or use a wider dtype"
        )
    position = {v: int(inverse[i]) for i, v in enumerate(ordered)}

    z_start = _shift_in_time(counted, z0, start, -1.0)
    if z0.numel() == 0:
        traj = torch.stack([z_start] * len(t))
    else:
        traj = integrate_adaptive(counted, z_start, t.to(z0.device), method, rtol, atol, adjoint,
                                  counted.max_steps)
        if counted.callback is not None:
            counted.callback(end.value, traj[-1])
    final = _shift_in_time(counted, traj[-1], end, 1.0)
    if outputs is None:
        return final, final.unsqueeze(0)
    states = torch.stack([_shift_in_time(counted, traj[position[v]], t_m, 1.0) for v, t_m in zip(values, outputs)])
    return final, states


def _shift_in_time(counted: CountedField, z: torch.Tensor, time: Time, sign: float) -> torch.Tensor:
    """z + sign·(τ − τ.detach())·f(τ, z): the value z, and when the time τ requires grad, the
    derivative sign·f(τ, z) with respect to it. At an output time (sign +1) that is the ODE's
    dz(τ)/dτ; at t0 (sign −1, applied to z0 before the solve) the flow turns it into
    dz(t)/dt0 = −(∂z(t)/∂z0) f(t0, z0). The empty state has the empty derivative."""
    if time.grad is None:
        return z
    with torch.no_grad():
        slope = counted(time.grad.detach(), z) if z.numel() else torch.zeros_like(z)
    return z + (time.grad - time.grad.detach()) * sign * slope


def _check_method(method: object) -> None:
    if not isinstance(method, str) or method not in available_methods():
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(available_methods())}")


def check_options(method: object, *, dt: object = None, n_steps: object = None, rtol: object = None,
                  atol: object = None, adjoint: object = False) -> tuple[float | None, float | None]:
    """Check that ``method`` exists and that the step options fit it, before any work; return
    ``(rtol, atol)`` with the adaptive defaults (1e-6, 1e-8) filled in, ``(None, None)`` for a
    fixed-step method. Used by :func:`solve` and by objects that hold solver options (a block
    of layers) so that a bad combination fails when they are built, not when they first run.

    Raises:
        ValueError / TypeError: an unknown method; ``dt``/``n_steps`` with an adaptive method,
            ``rtol``/``atol``/``adjoint=True`` with a fixed-step one; neither or both of ``dt`` and
            ``n_steps`` for a fixed-step method; a non-positive tolerance or step count.
    """
    _check_method(method)
    if not isinstance(adjoint, bool):
        raise TypeError(f"adjoint must be a bool, got {type(adjoint).__name__}")
    if method in ADAPTIVE_METHODS:
        if dt is not None or n_steps is not None:
            raise ValueError(f"dt and n_steps apply to fixed-step methods only; {method!r} chooses its own steps "
                             "from rtol/atol")
        return (check.check_positive("rtol", 1e-6 if rtol is None else rtol),
                check.check_positive("atol", 1e-8 if atol is None else atol))
    if adjoint:
        raise ValueError(f"adjoint=True needs an adaptive method ({', '.join(ADAPTIVE_METHODS)}); fixed-step "
                         f"method {method!r} backpropagates through its steps directly")
    if rtol is not None or atol is not None:
        raise ValueError(f"rtol and atol apply to adaptive methods only; fixed-step method {method!r} takes "
                         "n_steps or dt, and its error is set by the step size")
    if dt is None and n_steps is None:
        raise ValueError(f"fixed-step method {method!r} needs dt=... or n_steps=... (exactly one)")
    if dt is not None and n_steps is not None:
        raise ValueError("give either dt or n_steps, not both")
    if n_steps is not None:
        check.check_count("n_steps", n_steps)
    return None, None


def _fixed_step_count(t0: float, t1: float, dt: object, n_steps: object, method: str,
                      max_steps: int | None) -> int:
    if n_steps is not None:
        steps = check.check_count("n_steps", n_steps)
        asked = f"n_steps={steps}"
    else:
        dt = check.check_positive(
            "dt", dt, "the step count ceil((t1 - t0)/dt) is piecewise constant in dt. To learn the "
            "integration length, make t1 a tensor that requires grad and fix n_steps; else pass dt.item()")
        asked = f"dt={dt} over [t0, t1] = [{t0}, {t1}]"
        ratio = (t1 - t0) / dt
        # Guard against ceil((t1 - t0)/dt) landing one above an exact quotient through round-off.
        steps = max(1, math.ceil(ratio - 1e-9 * max(1.0, ratio))) if math.isfinite(ratio) else ratio
    limit = FIXED_MAX_STEPS if max_steps is None else max_steps
    if steps > limit:
        default = " (the default for fixed-step methods)" if max_steps is None else ""
        raise ValueError(
            f"{asked} means {steps:.6g} steps of {method!r}, more than max_steps={limit}{default}; use fewer "
            "steps (a larger dt) or an adaptive method, or raise max_steps if you mean it"
        )
    h = (t1 - t0) / steps
    if steps > 1 and snap_tolerance(Time(t0), Time(t0), Time(t1)) > SNAP_MAX_STEP_FRACTION * h:
        raise ValueError(
            f"{asked} makes steps of length {h:.3g}, too short to tell grid points apart in float64 at "
            f"times of magnitude {max(abs(t0), abs(t1)):.3g}; use fewer steps or shift [t0, t1] towards 0"
        )
    return steps
