"""The diffusion vector field and the nn.Module that integrates it.

    dZ/dt = F(t, Z) = (1 − μ) (S(Z, t) Z − Z) + μ (Z⁰ − Z)

μ = 0 is pure diffusion (node-wise dz_i/dt = Σ_j S_ij (z_j − z_i) for row-stochastic S); the
source term μ (Z⁰ − Z) ties the states to the initial ones and counters over-smoothing. An
explicit Euler step of size τ gives Z^{k+1} = Z^k + τ F(Z^k), i.e. (1 − τ) Z^k + τ S Z^k for μ = 0.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from typing import Iterator

import torch
from torch import nn

import solvers

from .diffusivities import Diffusivity


def _check_source_weight(source_weight: object) -> float:
    if isinstance(source_weight, bool) or not isinstance(source_weight, numbers.Real):
        raise TypeError(f"source_weight must be a real number in [0, 1], got {type(source_weight).__name__}")
    if not 0.0 <= float(source_weight) <= 1.0:
        raise ValueError(f"source_weight must lie in [0, 1] (0 = pure diffusion, 1 = pure source), got {source_weight}")
    return float(source_weight)


class DiffusionField(nn.Module):
    """F(t, Z) = (1 − μ)(S(Z, t) Z − Z) + μ(Z⁰ − Z) as a callable ``field(t, z)`` for :func:`solvers.solve`.

    With μ > 0 the initial state Z⁰ must be set first with :meth:`set_initial_state`
    (:class:`DiffusionBlock` does this).
    """

    def __init__(self, diffusivity: Diffusivity, source_weight: float = 0.0) -> None:
        super().__init__()
        if not isinstance(diffusivity, Diffusivity):
            raise TypeError(
                "diffusivity must be a Diffusivity plug-in (build one with diffusion_pde.diffusivity(name, ...)), "
                f"got {type(diffusivity).__name__}"
            )
        self.diffusivity = diffusivity
        self.source_weight = _check_source_weight(source_weight)
        self.initial_state: torch.Tensor | None = None

    def set_initial_state(self, z0: torch.Tensor) -> "DiffusionField":
        """Remember Z⁰ for the source term (and let the diffusivity see it); returns ``self``.

        Raises:
            TypeError: z0 is not a floating tensor, or its dtype/device differs from a parameter
                of the field (named, with the fix).
        """
        self.check_state(z0)
        self.initial_state = z0
        self.diffusivity.set_initial_state(z0)
        return self

    def check_state(self, z: torch.Tensor, what: str = "z0") -> None:
        """``z`` must be a floating tensor with the dtype and device of every parameter of the field
        (attention weights, value projection); graph diffusivities check their own operator."""
        if not isinstance(z, torch.Tensor) or not torch.is_floating_point(z):
            got = z.dtype if isinstance(z, torch.Tensor) else type(z).__name__
            raise TypeError(f"{what} must be a floating torch.Tensor, got {got}")
        for name, param in self.named_parameters():
            if param.dtype != z.dtype or param.device != z.device:
                raise TypeError(
                    f"{what} is {z.dtype} on {z.device} but the field's parameter {name!r} is {param.dtype} on "
                    f"{param.device}; move the field with field.to(z) (or build it with dtype=z.dtype)"
                )

    def _input_slots(self) -> list[tuple[object, str]]:
        """Where the field keeps tensors built outside the solve: Z⁰ (read by the source term) and
        each diffusivity's ``cached_inputs`` (e.g. attention frozen at Z⁰)."""
        slots: list[tuple[object, str]] = [(self, "initial_state")] if self.source_weight > 0 else []
        for module in self.diffusivity.modules():
            if isinstance(module, Diffusivity):
                slots += [(module, name) for name in module.cached_inputs]
        return slots

    def adjoint_inputs(self) -> tuple[torch.Tensor, ...]:
        """The tensors the field reads besides t, Z and its parameters (Z⁰ when μ > 0, frozen
        attention), flattened in a fixed order; :func:`solvers.solve` differentiates them in the
        adjoint pass."""
        out: list[torch.Tensor] = []
        for owner, name in self._input_slots():
            value = getattr(owner, name)
            out += [value] if isinstance(value, torch.Tensor) else list(value or ())
        return tuple(out)

    @contextlib.contextmanager
    def use_adjoint_inputs(self, inputs: tuple[torch.Tensor, ...]) -> Iterator[None]:
        """Read ``inputs`` (as returned by :meth:`adjoint_inputs`) instead of the current ones,
        so the adjoint pass re-evaluates exactly the field of its forward pass."""
        slots = self._input_slots()
        saved = [getattr(owner, name) for owner, name in slots]
        supply = iter(inputs)
        try:
            for (owner, name), value in zip(slots, saved):
                if isinstance(value, torch.Tensor):
                    value = next(supply)
                elif value is not None:
                    value = tuple(next(supply) for _ in value)
                setattr(owner, name, value)
            if next(supply, None) is not None:
                raise RuntimeError("use_adjoint_inputs: more inputs than the field reads; the field was rebuilt "
                                   "between the forward and the backward pass")
            yield
        except StopIteration:
            raise RuntimeError("use_adjoint_inputs: fewer inputs than the field reads; the field was rebuilt "
                               "between the forward and the backward pass") from None
        finally:
            for (owner, name), value in zip(slots, saved):
                setattr(owner, name, value)

    def _source(self, z: torch.Tensor) -> torch.Tensor | None:
        """Z⁰ for the source term (None when μ = 0), checked against the state."""
        if self.source_weight == 0.0:
            return None
        z0 = self.initial_state
        if z0 is None:
            raise RuntimeError("source_weight > 0 needs Z⁰: call field.set_initial_state(z0) before solving")
        if z0.shape != z.shape:
            raise ValueError(f"initial state has shape {tuple(z0.shape)} but z has shape {tuple(z.shape)}")
        return z0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sz = self.diffusivity(z, t=t)
        z0 = self._source(z)
        # A diffusivity whose output is a new tensor (``fresh_output``) is updated in place: one
        # N×d allocation less per evaluation, same arithmetic.
        fresh = getattr(self.diffusivity, "fresh_output", False)
        if z0 is None:
            return sz.sub_(z) if fresh else sz - z
        mu = self.source_weight
        return (sz.mul_(1.0 - mu) if fresh else sz * (1.0 - mu)).add_(z0, alpha=mu).sub_(z)

    def euler_step(self, t: torch.Tensor, z: torch.Tensor, h: float) -> torch.Tensor:
        """One explicit Euler step z + h F(t, z), as :func:`solvers.solve` takes it (``method="euler"``):

            z + h F = h(1 − μ) S(z)z + (1 − h) z + hμ Z⁰,

        formed in place in the diffusivity's output when that is a new tensor (``fresh_output``),
        by an autograd function that saves no tensor: a discrete DIFFormer/GCN layer costs no
        N×d temporary beyond S(z)z, forward or backward. Equal to z + h·field(t, z) up to
        round-off (exactly S(z)z for h = 1, μ = 0)."""
        sz = self.diffusivity(z, t=t)
        z0 = self._source(z)
        mu = self.source_weight
        fresh = getattr(self.diffusivity, "fresh_output", False)
        if z0 is z:  # the first layer of a stack pulls towards its own input: one term
            return _Combination.apply(sz, z, None, h * (1.0 - mu), 1.0 - h + h * mu, 0.0, fresh)
        return _Combination.apply(sz, z, z0, h * (1.0 - mu), 1.0 - h, h * mu, fresh)

    def extra_repr(self) -> str:
        return f"source_weight={self.source_weight}"


class _Combination(torch.autograd.Function):
    """a·P + b·z + c·z0 (z0 may be None), in place in P when ``in_place`` (P is then a tensor
    nobody else holds); the backward pass is three scalings of the incoming gradient, so no
    tensor is saved."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, z: torch.Tensor, z0: torch.Tensor | None, a: float, b: float, c: float,
                in_place: bool) -> torch.Tensor:
        ctx.coefficients = (a, b, c)
        if in_place:
            ctx.mark_dirty(p)
        if (z0 is None or c == 0.0) and a + b == 1.0 and a != 1.0:  # (1 − a) z + a P in one pass
            return torch.lerp(z, p, a, out=p) if in_place else torch.lerp(z, p, a)
        if in_place:
            out = p.mul_(a) if a != 1.0 else p
        else:
            out = p * a
        if b != 0.0:
            out.add_(z, alpha=b)
        if z0 is not None and c != 0.0:
            out.add_(z0, alpha=c)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b, c = ctx.coefficients
        need_p, need_z, need_z0 = ctx.needs_input_grad[:3]
        return ((grad if a == 1.0 else grad * a) if need_p else None, grad * b if need_z else None,
                grad * c if need_z0 else None, None, None, None, None)


class DiffusionBlock(nn.Module):
    """Integrates a :class:`DiffusionField` from Z⁰ over [0, t1]: a continuous-depth layer.

    ``forward(z0)`` returns Z(t1); :meth:`solve` returns the full :class:`solvers.Solution`.
    Solver options (``n_steps``, ``dt``, ``rtol``, ``atol``, ``adjoint``, ...) go to
    :func:`solvers.solve`; fixed-step methods with n_steps = 1 and t1 = τ are one Euler layer.
    """

    def __init__(self, field: DiffusionField, method: str = "rk4", t1: float = 1.0, **solver_options: object) -> None:
        super().__init__()
        if not isinstance(field, DiffusionField):
            raise TypeError(f"field must be a DiffusionField, got {type(field).__name__}")
        if method not in solvers.available_methods():
            raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(solvers.available_methods())}")
        if isinstance(t1, bool) or not isinstance(t1, numbers.Real) or not math.isfinite(t1) or t1 <= 0:
            raise ValueError(f"t1 (the integration time; the block integrates over [0, t1]) must be a finite number > 0, "
                             f"got {t1!r}")
        accepted = set(inspect.signature(solvers.solve).parameters) - {"field", "z0", "t1", "method"}
        unknown = sorted(set(solver_options) - accepted)
        if unknown:
            raise TypeError(f"unknown solver option(s) {', '.join(unknown)}; solvers.solve accepts {', '.join(sorted(accepted))}")
        step_options = {k: v for k, v in solver_options.items() if k in ("dt", "n_steps", "rtol", "atol", "adjoint")}
        solvers.check_options(method, **step_options)  # e.g. n_steps with dopri5: refused now, not at the first run
        self.field = field
        self.method = method
        self.t1 = float(t1)
        self.solver_options = solver_options

    def solve(self, z0: torch.Tensor, *, source_state: torch.Tensor | None = None, **overrides: object) -> solvers.Solution:
        """Integrate from ``z0``; the source term pulls towards ``source_state`` (default ``z0``).

        A stack of blocks (one Euler layer each) passes the stack's input as ``source_state``,
        so every layer is tied to the same Z⁰ as in APPNP."""
        if "t1" in overrides:
            raise TypeError("the integration time is the block's t1 (DiffusionBlock(field, method, t1=...)); "
                            "it cannot be overridden per solve")
        options = {"method": self.method, **self.solver_options, **overrides}
        self.field.set_initial_state(z0 if source_state is None else source_state)
        return solvers.solve(self.field, z0, self.t1, **options)

    def forward(self, z0: torch.Tensor, source_state: torch.Tensor | None = None, *, checks: bool = True) -> torch.Tensor:
        """Z(t1) from Z(0) = ``z0`` (:meth:`solve`). ``checks=False``, for a caller that checks its
        states itself (a stack of layers checks its input and its output once): a block of one
        Euler step (``method="euler", n_steps=1``) is then that step, the field's ``euler_step``
        at t = 0 with h = t1 — the arithmetic of :meth:`solve` without its per-call argument and
        finiteness checks and its solution record (about 0.4 ms a call)."""
        if not checks and self.method == "euler" and self.solver_options == {"n_steps": 1}:
            self.field.set_initial_state(z0 if source_state is None else source_state)
            return self.field.euler_step(torch.zeros((), dtype=z0.dtype, device=z0.device), z0, self.t1)
        return self.solve(z0, source_state=source_state).final

    def extra_repr(self) -> str:
        return f"method={self.method!r}, t1={self.t1}, options={self.solver_options}"
