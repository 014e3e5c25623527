"""Argument checks for :func:`solvers.solve`: every error names the argument and the fix."""

from __future__ import annotations

import math
import numbers
import torch


def count_nonfinite(z: torch.Tensor) -> int:
    """Number of NaN/Inf entries of z. The common all-finite case costs one sum (a finite sum
    proves every entry finite); only a non-finite sum pays for the elementwise test."""
    with torch.no_grad():
        if bool(torch.isfinite(z.sum())):
            return 0
        return int((~torch.isfinite(z)).sum())


def check_state(z0: object, method: str, adaptive: bool) -> torch.Tensor:
    """z0 as a finite real floating tensor; half precision only for fixed-step methods."""
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"z0 must be a torch.Tensor, got {type(z0).__name__}")
    if not torch.is_floating_point(z0):
        raise TypeError(
            f"z0 must have a real floating dtype (float16, bfloat16, float32 or float64), got {z0.dtype}; "
            "convert it with z0.float() or z0.double()"
        )
    if adaptive and z0.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"z0 has dtype {z0.dtype}, which adaptive method {method!r} cannot use (its error control "
            "underflows in half precision); pass z0.float() and cast the result back, or use a fixed-step "
            "method (e.g. rk4) with n_steps"
        )
    bad = count_nonfinite(z0)
    if bad:
        raise ValueError(f"z0 contains {bad} non-finite (NaN or Inf) entries; clean the input state")
    return z0


def real_value(name: str, value: object) -> float:
    """A real number or a one-element real tensor, as a finite float (gradients are not kept)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_real(name: str, value: object, no_grad: str | None = None) -> float:
    """:func:`real_value`, refusing a tensor that requires grad (its gradient would be silently
    dropped); ``no_grad`` says why it has none and what to do instead."""
    if isinstance(value, torch.Tensor) and value.requires_grad:
        why = no_grad or f"it is a solver setting; pass {name}.item() or a float"
        raise TypeError(f"{name} must not require grad (it carries no gradient): {why}")
    return real_value(name, value)


def check_positive(name: str, value: object, no_grad: str | None = None) -> float:
    value = check_real(name, value, no_grad)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value}")
    return int(value)
