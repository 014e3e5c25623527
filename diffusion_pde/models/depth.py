r"""Discrete and continuous depth: the diffusion dZ/dt = F(Z) = (1 − μ)(P(Z) − Z) + μ(Z⁰ − Z)
integrated as a stack of layers or as one ODE solve.

* :class:`DiscreteDiffusion` — L layers; layer k is one explicit Euler step of size τ of its own
  field F_k (own weights), Z^{k+1} = post_k(Z^k + τ F_k(Z^k)) = post_k((1 − τ) Z^k + τ P_k(Z^k))
  for μ = 0, where post_k is what follows the step (LayerNorm and dropout in DIFFormer, a channel
  map and activation in GCN). The source term of every layer pulls towards the stack's input Z⁰.
* :class:`ContinuousDiffusion` — one field with weights shared over time, integrated over [0, T]
  by any method of :func:`solvers.solve`; the same weights can be evaluated with another method
  or step count (:meth:`ContinuousDiffusion.with_solver`). ``post`` is applied once, at T.

Both are thin wrappers around :class:`~diffusion_pde.DiffusionBlock`: a discrete layer is the
block with ``method="euler", n_steps=1, t1=τ``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

import solvers

from ..field import DiffusionBlock, DiffusionField


class DiscreteDiffusion(nn.Module):
    """L explicit Euler layers of step ``tau``, each followed by its ``post`` module."""

    def __init__(self, fields: list[DiffusionField], tau: float, posts: list[nn.Module]) -> None:
        super().__init__()
        if len(fields) != len(posts):
            raise ValueError(f"need one post module per layer, got {len(fields)} fields and {len(posts)} posts")
        self.tau = float(tau)
        self.blocks = nn.ModuleList(DiffusionBlock(field, "euler", t1=self.tau, n_steps=1) for field in fields)
        self.posts = nn.ModuleList(posts)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.states(z)[-1]

    def states(self, z: torch.Tensor) -> list[torch.Tensor]:
        """[Z⁰, Z¹, …, Z^L]: the input and the output of every layer.

        The layers are the blocks' single Euler steps without the solver's per-call checks; the
        stack checks instead that Z⁰ is finite (ValueError otherwise) and that Z^L is, naming the
        first layer whose output is not (:class:`solvers.IntegrationError`, "time" reached k τ).
        """
        if not self.blocks:
            return [z]
        bad = solvers.count_nonfinite(z)
        if bad:
            raise ValueError(f"the input state of the diffusion (the encoder's output) contains {bad} non-finite "
                             "(NaN or Inf) entries: non-finite input features (clean them) or encoder weights (e.g. "
                             "after a diverged training step)")
        out = [z]
        for block, post in zip(self.blocks, self.posts):
            out.append(post(block(out[-1], source_state=z, checks=False)))
        if solvers.count_nonfinite(out[-1]):
            layer = next(k for k in range(1, len(out)) if solvers.count_nonfinite(out[k]))
            raise solvers.IntegrationError(
                f"layer {layer} of {len(self.blocks)} (an Euler step of size tau = {self.tau:g}, then its post module) "
                "returned a non-finite state (NaN or Inf) from a finite one", (layer - 1) * self.tau,
                solvers.SolverStats(steps=layer, accepted=layer, nfe=layer), hint="lower tau or the learning rate")
        return out

    def diffusivities(self) -> list[nn.Module]:
        return [block.field.diffusivity for block in self.blocks]


class ContinuousDiffusion(nn.Module):
    """One :class:`DiffusionBlock` over [0, T] with shared weights, then ``post``."""

    def __init__(self, field: DiffusionField, post: nn.Module, *, method: str, t1: float,
                 **solver_options: object) -> None:
        super().__init__()
        self.block = DiffusionBlock(field, method, t1=t1, **solver_options)
        self.post = post

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.post(self.block(z))

    def states(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [z, self.forward(z)]

    def diffusivities(self) -> list[nn.Module]:
        return [self.block.field.diffusivity]

    @contextmanager
    def with_solver(self, method: str, **solver_options: object) -> Iterator["ContinuousDiffusion"]:
        """Temporarily integrate with another method/options, e.g. evaluate rk4-trained weights
        with ``with_solver("dopri5", rtol=1e-5)`` or ``with_solver("euler", n_steps=64)``."""
        saved = (self.block.method, self.block.solver_options)
        self.block.method, self.block.solver_options = method, dict(solver_options)
        try:
            yield self
        finally:
            self.block.method, self.block.solver_options = saved
