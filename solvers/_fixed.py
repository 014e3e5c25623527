"""Native fixed-step Runge–Kutta integration on an explicit time grid.

The grid is ``n_steps`` equal steps t_k = t0 + k (t1 − t0)/n over [t0, t1], with every requested
output time inserted as an extra grid point (so outputs are hit exactly, never interpolated).
An output time within ``SNAP`` × h of a grid point is identified with that point instead of
creating a step of negligible length.
"""

from __future__ import annotations

import bisect
from typing import Callable

import torch

from ._solution import IntegrationError, SolverStats
from ._tableau import ButcherTableau
from ._validate import count_nonfinite

SNAP = 1e-9


def build_grid(t0: float, t1: float, n_steps: int, t_eval: list[float] | None) -> tuple[list[float], list[int]]:
    """The integration grid and, for each output time, its index in the grid.

    Returns ``(grid, save_index)`` where ``grid`` is strictly increasing from t0 to t1 and
    ``grid[save_index[m]]`` equals ``t_eval[m]`` up to SNAP·h (``[len(grid) − 1]`` when
    ``t_eval`` is None).
    """
    h = (t1 - t0) / n_steps
    grid = [t0 + (t1 - t0) * k / n_steps for k in range(n_steps)] + [t1]
    if t_eval is None:
        return grid, [n_steps]
    for t in t_eval:
        pos = bisect.bisect_left(grid, t)
        near = [p for p in (pos - 1, pos) if 0 <= p < len(grid) and abs(grid[p] - t) <= SNAP * h]
        if not near:
            grid.insert(pos, t)
    save_index = []
    for t in t_eval:
        pos = bisect.bisect_left(grid, t - SNAP * h)
        save_index.append(pos)
    return grid, save_index


def rk_step(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    t: float,
    z: torch.Tensor,
    h: float,
    tableau: ButcherTableau,
) -> torch.Tensor:
    """One explicit Runge–Kutta step z_{n+1} = z_n + h Σ b_i k_i (see :mod:`solvers._tableau`)."""
    stages: list[torch.Tensor] = []
    for c_i, row in zip(tableau.c, tableau.a):
        z_i = z
        for a_ij, k_j in zip(row, stages):
            if a_ij:
                z_i = torch.add(z_i, k_j, alpha=h * float(a_ij))
        stages.append(field(torch.tensor(t + h * float(c_i), dtype=z.dtype, device=z.device), z_i))
    out = z
    for b_i, k_i in zip(tableau.b, stages):
        if b_i:
            out = torch.add(out, k_i, alpha=h * float(b_i))
    return out


def integrate_fixed(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    grid: list[float],
    save_index: list[int],
    tableau: ButcherTableau,
    stats: SolverStats,
    callback: Callable[[float, torch.Tensor], None] | None,
) -> list[torch.Tensor]:
    """March ``z0`` along ``grid``; return the states at the grid points ``save_index``.

    Finiteness is checked at every saved point (one reduction each, not one per step) and a
    non-finite state raises :class:`IntegrationError` naming the time at which it was seen.
    """
    wanted = set(save_index)
    saved: dict[int, torch.Tensor] = {0: z0} if 0 in wanted else {}
    z = z0
    for n in range(len(grid) - 1):
        t, t_next = grid[n], grid[n + 1]
        z = rk_step(field, t, z, t_next - t, tableau)
        stats.steps += 1
        stats.accepted += 1
        if callback is not None:
            callback(t_next, z)
        if n + 1 in wanted:
            if count_nonfinite(z):
                raise IntegrationError(
                    f"non-finite state (NaN or Inf) with method {tableau.name!r}",
                    t_next,
                    stats,
                    "The step is probably outside the method's stability region: use more steps "
                    "(smaller dt) or an adaptive method.",
                )
            saved[n + 1] = z
    return [saved[i] for i in save_index]
