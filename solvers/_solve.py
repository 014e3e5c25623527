"""The single entry point :func:`solve` for dz/dt = field(t, z) on [t0, t1]."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch

from . import _validate as check
from ._adaptive import ADAPTIVE_METHODS, CountedField, integrate_adaptive
from ._fixed import build_grid, integrate_fixed
from ._solution import Solution, SolverStats
from ._tableau import fixed_step_methods, get_tableau

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def available_methods() -> tuple[str, ...]:
    """All method names accepted by :func:`solve`: registered fixed-step ones, then adaptive ones."""
    return fixed_step_methods() + tuple(ADAPTIVE_METHODS)


def solve(
    field: Field,
    z0: torch.Tensor,
    t1: float,
    *,
    t0: float = 0.0,
    method: str = "rk4",
    dt: float | None = None,
    n_steps: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    t_eval: Sequence[float] | torch.Tensor | None = None,
    adjoint: bool = False,
    max_steps: int = 10_000,
    callback: Callable[[float, torch.Tensor], None] | None = None,
) -> Solution:
    """Integrate dz/dt = field(t, z) from z(t0) = z0 to t1.

    Args:
        field: callable ``(t, z) -> dz/dt`` with ``t`` a 0-d tensor of z's dtype/device; pass an
            ``nn.Module`` for its parameters to receive gradients with ``adjoint=True``.
        z0: initial state, any floating tensor shape ([N, d], [B, N, d], ...), CPU or CUDA.
        t1, t0: end and start time, t1 > t0.
        method: a fixed-step Runge–Kutta method (``euler``, ``midpoint``, ``heun``, ``rk4``, or
            any registered with :func:`register_tableau`) or an adaptive one delegated to
            torchdiffeq (``dopri5``, ``bosh3``, ``adaptive_heun``, ``dopri8``).
        dt, n_steps: fixed-step methods only, exactly one of them: ``n_steps`` equal steps, or
            ``ceil((t1 − t0)/dt)`` equal steps. Points of ``t_eval`` are added to the grid.
        rtol, atol: adaptive methods only: local error tolerance atol + rtol·|z|.
        t_eval: increasing output times in [t0, t1]; the result holds the state at each.
        adjoint: adaptive methods only: gradients by the adjoint ODE (torchdiffeq), O(1) memory.
        max_steps: adaptive methods only: budget of attempted steps before
            :class:`IntegrationError`.
        callback: ``callback(t, z)`` after every accepted step, with the new time and state.

    Returns:
        :class:`Solution` with the final state, the states at ``t_eval``, the times and the
        exact work counters.

    Raises:
        TypeError / ValueError: for bad arguments, naming the argument.
        IntegrationError: max_steps exceeded, step-size underflow or a non-finite state.
    """
    if not callable(field):
        raise TypeError(f"field must be callable as field(t, z), got {type(field).__name__}")
    z0 = check.check_state(z0)
    t0, t1 = check.check_interval(t0, t1)
    times = check.check_t_eval(t_eval, t0, t1)
    if not isinstance(method, str) or method not in available_methods():
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(available_methods())}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(t, z), got {type(callback).__name__}")
    if not isinstance(adjoint, bool):
        raise TypeError(f"adjoint must be a bool, got {type(adjoint).__name__}")
    max_steps = check.check_count("max_steps", max_steps)

    stats = SolverStats()
    if method in ADAPTIVE_METHODS:
        if dt is not None or n_steps is not None:
            raise ValueError(
                f"dt and n_steps apply to fixed-step methods only; {method!r} chooses its own steps "
                "from rtol/atol"
            )
        rtol = check.check_positive("rtol", rtol)
        atol = check.check_positive("atol", atol)
        counted = CountedField(field, stats, max_steps, callback)
        out_times = [t0] + [t for t in (times or []) if t > t0]
        if out_times[-1] < t1:
            out_times.append(t1)
        traj = integrate_adaptive(counted, z0, out_times, method, rtol, atol, adjoint, max_steps)
        final = traj[-1]
        if callback is not None:
            callback(t1, final)
        wanted = times if times is not None else [t1]
        states = traj[[out_times.index(t) for t in wanted]]
    else:
        if adjoint:
            raise ValueError(
                f"adjoint=True needs an adaptive method ({', '.join(ADAPTIVE_METHODS)}); fixed-step "
                f"method {method!r} backpropagates through its steps directly"
            )
        steps = _fixed_step_count(t0, t1, dt, n_steps, method)
        grid, save_index = build_grid(t0, t1, steps, times)
        if save_index[-1] != len(grid) - 1:
            save_index = save_index + [len(grid) - 1]
        counted = CountedField(field, stats)
        states_list = integrate_fixed(counted, z0, grid, save_index, get_tableau(method), stats, callback)
        final = states_list[-1]
        states = torch.stack(states_list[: len(times)]) if times is not None else final.unsqueeze(0)
        wanted = times if times is not None else [t1]
    return Solution(
        final=final,
        states=states,
        times=torch.tensor(wanted, dtype=torch.float64),
        stats=dataclasses.replace(stats),
        method=method,
    )


def _fixed_step_count(t0: float, t1: float, dt: object, n_steps: object, method: str) -> int:
    if dt is None and n_steps is None:
        raise ValueError(f"fixed-step method {method!r} needs dt=... or n_steps=... (exactly one)")
    if dt is not None and n_steps is not None:
        raise ValueError("give either dt or n_steps, not both")
    if n_steps is not None:
        return check.check_count("n_steps", n_steps)
    dt = check.check_positive("dt", dt)
    # Guard against ceil((t1 - t0)/dt) landing one above an exact quotient through round-off.
    ratio = (t1 - t0) / dt
    return max(1, math.ceil(ratio - 1e-9 * max(1.0, ratio)))
