"""What the adjoint differentiates: every tensor the field reads, or a clear refusal.

torchdiffeq's adjoint re-evaluates the field backwards in time and differentiates each
evaluation with respect to the state and a list of ``adjoint_params``; gradients of any other
tensor the field reads are silently lost. A field reads, besides ``t`` and ``z``:

* its registered parameters (when it is an ``nn.Module``), and
* optionally *external inputs* — tensors built outside the solve, such as the initial state Z⁰
  of a source term or attention frozen at Z⁰. A field declares them with two methods:

  ``adjoint_inputs() -> tuple[Tensor, ...]``
      the tensors it reads now, other than its parameters;
  ``use_adjoint_inputs(inputs)``
      a context manager under which it reads ``inputs`` (a tuple as returned above) instead.

An external input usually depends on the field's own parameters (frozen q = Z⁰ W_q reads W_q), so
handing it to torchdiffeq as it is would count the path through it twice: once inside the
adjoint's vector-Jacobian products and again through the input's own history. :func:`odeint_adjoint`
therefore binds *detached leaf copies* of the inputs for every evaluation, lets torchdiffeq's
adjoint differentiate those, and returns their gradients to the original tensors through one
outer autograd function, from where they flow on to Z⁰, W_q, an encoder, ... The copies are
bound at the start of the solve, so the backward pass differentiates the evaluation that the
forward pass made even if the field has been re-initialised since (two forward passes, then one
backward).

Before the solve, one evaluation of the field is traced and its autograd graph walked: if it
reaches a tensor that requires grad and is neither the state, a parameter nor a declared input,
the adjoint would return a wrong gradient, so :func:`check_reads` raises instead.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torchdiffeq

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def declared_inputs(field: Field) -> tuple[torch.Tensor, ...]:
    """The field's external inputs (``adjoint_inputs()``), or ``()`` when it declares none."""
    get = getattr(field, "adjoint_inputs", None)
    if get is None:
        return ()
    inputs = tuple(get())
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError("field.adjoint_inputs() must return a tuple of tensors")
    return inputs


@contextlib.contextmanager
def bound_inputs(field: Field, inputs: tuple[torch.Tensor, ...]) -> Iterator[None]:
    """Evaluate ``field`` with the external ``inputs`` captured at the start of the solve."""
    if not inputs:
        yield
        return
    with field.use_adjoint_inputs(inputs):  # type: ignore[attr-defined]
        yield


def check_reads(field: Field, allowed: tuple[torch.Tensor, ...], z0: torch.Tensor, t0: torch.Tensor) -> None:
    """Check, with one traced evaluation of ``field`` at (t0, z0), that the state and ``allowed``
    (the parameters and declared inputs) are all the field reads that requires grad.

    Raises:
        ValueError: the field reads another tensor that requires grad (a closure over a tensor,
            another module's parameter, an undeclared Z⁰): the adjoint would silently drop its
            gradient. The message names the fix.
    """
    if not torch.is_grad_enabled():
        return
    with torch.enable_grad():
        z = z0.detach().requires_grad_(True)
        out = field(t0, z)
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        return
    undeclared = _undeclared_leaves(out, z, allowed)
    if undeclared:
        shapes = ", ".join(str(tuple(v.shape)) for v in undeclared[:4])
        raise ValueError(
            f"adjoint=True: the field reads {len(undeclared)} tensor(s) that require grad but are neither "
            f"the state z nor parameters of the field (shapes {shapes}), so the adjoint cannot "
            "differentiate them and their gradients would be wrong. Register them in the field "
            "(an nn.Module's parameters), declare them with field.adjoint_inputs() / "
            "field.use_adjoint_inputs(), or solve with adjoint=False (direct backpropagation)."
        )


def _undeclared_leaves(out: torch.Tensor, z: torch.Tensor,
                       allowed: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Leaves requiring grad reached from ``out`` without passing through ``allowed`` or ``z``."""
    allowed_leaves = {id(x) for x in allowed if x.grad_fn is None} | {id(z)}
    stops = {(x.grad_fn, x.output_nr) for x in allowed if x.grad_fn is not None}
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for nxt, output_nr in node.next_functions:
            if nxt is None or (nxt, output_nr) in stops:
                continue
            variable = getattr(nxt, "variable", None)
            if variable is not None:  # AccumulateGrad: a leaf that requires grad
                if id(variable) not in allowed_leaves:
                    found[id(variable)] = variable
                continue
            stack.append(nxt)
    return list(found.values())


class _AdjointSolve(torch.autograd.Function):
    """Outer function of z0, the field's parameters and its declared inputs; its backward asks
    torchdiffeq's adjoint (run on leaf copies of the inputs) for all their gradients."""

    @staticmethod
    def forward(ctx: Any, counted: Any, solve: Callable, n_params: int, z0: torch.Tensor,
                *tensors: torch.Tensor) -> torch.Tensor:
        params = tensors[:n_params]
        leaves = tuple(x.detach().requires_grad_(x.requires_grad) for x in tensors[n_params:])
        counted.inputs = leaves
        with torch.enable_grad():
            y0 = z0.detach().requires_grad_(z0.requires_grad)
            traj = solve(y0, params + leaves)
        ctx.inner = (traj, (y0, *params, *leaves))
        return traj.detach()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        traj, wrt = ctx.inner
        ctx.inner = None
        needed = [x for x in wrt if x.requires_grad]
        found = iter(torch.autograd.grad(traj, needed, grad, allow_unused=True) if traj.requires_grad else ())
        grads = [next(found, None) if x.requires_grad else None for x in wrt]
        return (None, None, None, *grads)


def odeint_adjoint(counted: Any, z0: torch.Tensor, t: torch.Tensor, **options: Any) -> torch.Tensor:
    """torchdiffeq's ``odeint_adjoint`` of ``counted`` (a module wrapping the field, with an
    ``inputs`` attribute it binds for every evaluation) that differentiates z0, the field's
    parameters and its declared inputs; refuses a field that reads anything else."""
    params = tuple(counted.parameters())
    inputs = declared_inputs(counted.field)

    def solve(y0: torch.Tensor, adjoint_params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        check_reads(counted, adjoint_params, y0, t[0])
        return torchdiffeq.odeint_adjoint(counted, y0, t, adjoint_params=adjoint_params, **options)

    return _AdjointSolve.apply(counted, solve, len(params), z0, *params, *inputs)
