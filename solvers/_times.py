"""Time arguments of :func:`solvers.solve`: their values, the precision they came in, gradients.

A time (``t0``, ``t1``, an entry of ``t_eval``) may be a Python number, a NumPy scalar or a
one-element tensor. Its value is read exactly as given. The precision it was given in sets how
close to a grid point it must lie to be identified with that point: ``torch.linspace(0, 1, 11)``
in float32 differs from the float64 grid t0 + k (t1 − t0)/n by a few float32 ulps, and those
differences must not become extra steps of length 1e-9. A tensor that requires grad is kept, so
that the solve can give it its exact gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch

from ._validate import real_value

F64_EPS = float(np.finfo(np.float64).eps)
# A time lies on a grid point when it is within SNAP_ULPS ulps of the precisions involved (its own
# and the interval ends'), at the magnitude of the interval's times; never more than h/8 away, so
# that distinct grid points are never merged.
SNAP_ULPS = 4.0
SNAP_MAX_STEP_FRACTION = 1.0 / 8.0


@dataclass(frozen=True)
class Time:
    """A checked time: its value, the relative precision it was given in (at least float64's,
    in which the grid is computed) and, when it requires grad, the 0-d tensor gradients flow to."""

    value: float
    eps: float = F64_EPS
    grad: torch.Tensor | None = None


def read_time(name: str, value: object, z0: torch.Tensor) -> Time:
    """``value`` as a :class:`Time`; ``name`` is how errors call it.

    Raises:
        TypeError: not a real number or a one-element real tensor, or a tensor that requires
            grad but does not share z0's dtype and device.
        ValueError: not finite.
    """
    if isinstance(value, torch.Tensor) and value.requires_grad and (value.dtype, value.device) != (z0.dtype, z0.device):
        raise TypeError(
            f"{name} requires grad but is a {value.dtype} tensor on {value.device} while z0 is {z0.dtype} on "
            f"{z0.device}; pass {name}.to(z0) (differentiable) so that its gradient is computed in z0's "
            "precision on z0's device"
        )
    number = real_value(name, value)
    eps = F64_EPS
    grad = None
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            eps = max(eps, torch.finfo(value.dtype).eps)
        if value.requires_grad:
            grad = value.reshape(())
    elif isinstance(value, np.floating):
        eps = max(eps, float(np.finfo(value.dtype).eps))
    return Time(number, eps, grad)


def check_interval(t0: object, t1: object, z0: torch.Tensor) -> tuple[Time, Time]:
    start, end = read_time("t0", t0, z0), read_time("t1", t1, z0)
    if not end.value > start.value:
        raise ValueError(
            f"t1 must be greater than t0 (got t0={start.value}, t1={end.value}); integrate forward in time"
        )
    return start, end


def snap_tolerance(t: Time, t0: Time, t1: Time) -> float:
    """How far ``t`` may lie from a grid point and still be that point (before the h/8 cap):
    SNAP_ULPS ulps of t's precision plus the interval ends', at the interval's magnitude."""
    return SNAP_ULPS * (t.eps + max(t0.eps, t1.eps)) * max(abs(t0.value), abs(t1.value))


def check_t_eval(t_eval: object, t0: Time, t1: Time, z0: torch.Tensor) -> list[Time] | None:
    """The output times, strictly increasing, inside [t0, t1] up to :func:`snap_tolerance`."""
    if t_eval is None:
        return None
    if isinstance(t_eval, torch.Tensor):
        if t_eval.dim() != 1:
            raise ValueError(f"t_eval must be one-dimensional, got shape {tuple(t_eval.shape)}")
        entries: list[object] = list(t_eval.unbind())
    elif isinstance(t_eval, (str, bytes)) or not hasattr(t_eval, "__iter__"):
        raise TypeError(f"t_eval must be a sequence of real numbers or a 1-D tensor, got {type(t_eval).__name__}")
    else:
        entries = list(t_eval)
    if len(entries) == 0:
        raise ValueError("t_eval must hold at least one time; pass None to keep only the final state")
    times = [read_time(f"t_eval[{m}]", v, z0) for m, v in enumerate(entries)]
    values = [t.value for t in times]
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("t_eval must be strictly increasing; sort it and drop duplicates")
    first, last = times[0], times[-1]
    if first.value < t0.value - snap_tolerance(first, t0, t1) or last.value > t1.value + snap_tolerance(last, t0, t1):
        raise ValueError(
            f"t_eval must lie inside [t0, t1] = [{t0.value}, {t1.value}], got values from {values[0]} to {values[-1]}"
        )
    return times


def grid_point(t0, t1, n_steps: int, k: int):
    """The k-th of n_steps equal steps' end points, t0 + (t1 − t0) k/n (t1 itself for k = n);
    for floats or for float64 tensors carrying gradients to t0 and t1 (the same arithmetic)."""
    return t1 if k == n_steps else t0 + (t1 - t0) * k / n_steps


def nearest_grid_point(t: float, tol: float, t0: float, t1: float, n_steps: int) -> int | None:
    """k when ``t`` is the grid point t0 + k (t1 − t0)/n up to ``tol`` (capped at h/8), else None.
    Times outside [t0, t1] (accepted by :func:`check_t_eval` within round-off) are the ends."""
    if t <= t0:
        return 0
    if t >= t1:
        return n_steps
    h = (t1 - t0) / n_steps
    k = min(n_steps, max(0, round((t - t0) / h)))
    return k if abs(t - grid_point(t0, t1, n_steps, k)) <= min(tol, SNAP_MAX_STEP_FRACTION * h) else None
