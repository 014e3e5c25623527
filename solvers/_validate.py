"""Argument checks for :func:`solvers.solve`: every error names the argument and the fix."""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch


def count_nonfinite(z: torch.Tensor) -> int:
    """Number of NaN/Inf entries of z. The common all-finite case costs one sum (a finite sum
    proves every entry finite); only a non-finite sum pays for the elementwise test."""
    with torch.no_grad():
        if bool(torch.isfinite(z.sum())):
            return 0
        return int((~torch.isfinite(z)).sum())


def check_state(z0: object) -> torch.Tensor:
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"z0 must be a torch.Tensor, got {type(z0).__name__}")
    if not torch.is_floating_point(z0):
        raise TypeError(
            f"z0 must have a floating dtype (float32 or float64), got {z0.dtype}; "
            "convert it with z0.float() or z0.double()"
        )
    bad = count_nonfinite(z0)
    if bad:
        raise ValueError(f"z0 contains {bad} non-finite (NaN or Inf) entries; clean the input state")
    return z0


def check_real(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_positive(name: str, value: object) -> float:
    value = check_real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value}")
    return int(value)


def check_interval(t0: object, t1: object) -> tuple[float, float]:
    t0, t1 = check_real("t0", t0), check_real("t1", t1)
    if not t1 > t0:
        raise ValueError(f"t1 must be greater than t0 (got t0={t0}, t1={t1}); integrate forward in time")
    return t0, t1


def check_t_eval(t_eval: Sequence[float] | torch.Tensor | None, t0: float, t1: float) -> list[float] | None:
    if t_eval is None:
        return None
    if isinstance(t_eval, torch.Tensor):
        if t_eval.dim() != 1:
            raise ValueError(f"t_eval must be one-dimensional, got shape {tuple(t_eval.shape)}")
        values = [float(v) for v in t_eval.detach().cpu().tolist()]
    else:
        try:
            values = [check_real("t_eval entries", v) for v in t_eval]
        except TypeError as err:
            raise TypeError(f"t_eval must be a sequence of real numbers or a 1-D tensor: {err}") from None
    if not values:
        raise ValueError("t_eval must hold at least one time; pass None to keep only the final state")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("t_eval must hold finite times")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("t_eval must be strictly increasing; sort it and drop duplicates")
    if values[0] < t0 or values[-1] > t1:
        raise ValueError(
            f"t_eval must lie inside [t0, t1] = [{t0}, {t1}], got values from {values[0]} to {values[-1]}"
        )
    return values
