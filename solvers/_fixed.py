"""Native fixed-step Runge–Kutta integration on an explicit time grid.

The grid is ``n_steps`` equal steps t_k = t0 + k (t1 − t0)/n over [t0, t1], with every requested
output time inserted as an extra grid point (so outputs are hit exactly, never interpolated).
An output time that differs from a grid point only by the round-off of the precision it was
given in is identified with that point (:func:`solvers._times.nearest_grid_point`) instead of
creating a step of negligible length.

Grid times are Python floats; when t0 or t1 requires grad, the base grid points are float64
tensors of t0 and t1 instead (:func:`differentiable_points`), so that backpropagation gives the
exact derivative of the computed discrete map with respect to t0 and t1.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ._nonfinite import NonFiniteEvaluation, Probe
from ._solution import IntegrationError, SolverStats
from ._tableau import ButcherTableau
from ._times import Time, grid_point, nearest_grid_point, snap_tolerance
from ._validate import count_nonfinite

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TimeLike = float | torch.Tensor


@dataclass(frozen=True)
class Grid:
    """``times``: strictly increasing from t0 to t1; ``save``: for each output time, its index in
    ``times``; ``base``: for each k = 0..n, the index of the base point t0 + k (t1 − t0)/n."""

    times: list[float]
    save: list[int]
    base: list[int]


def build_grid(
    t0: float, t1: float, n_steps: int, t_eval: Sequence[float] | None = None,
    tolerances: Sequence[float] | None = None,
) -> Grid:
    """The integration grid for ``n_steps`` equal steps plus the output times ``t_eval``.

    An output time within ``tolerances[m]`` (default: float64 round-off at the interval's
    magnitude; always capped at h/8) of a base point is that point; any other is inserted.
    Without ``t_eval`` the only output is t1.
    """
    base = [grid_point(t0, t1, n_steps, k) for k in range(n_steps + 1)]
    if t_eval is None:
        return Grid(base, [n_steps], list(range(n_steps + 1)))
    if tolerances is None:
        tolerances = [snap_tolerance(Time(t), Time(t0), Time(t1)) for t in t_eval]
    times: list[float] = []
    positions: list[int] = []
    save: list[int] = []
    k = 0  # the next base point to place
    for t, tol in zip(t_eval, tolerances):
        near = nearest_grid_point(t, tol, t0, t1, n_steps)
        last_before = near if near is not None else bisect.bisect_left(base, t) - 1
        while k <= last_before:
            positions.append(len(times))
            times.append(base[k])
            k += 1
        if near is None:
            times.append(t)
            save.append(len(times) - 1)
        else:
            save.append(positions[near])
    for k in range(k, n_steps + 1):
        positions.append(len(times))
        times.append(base[k])
    return Grid(times, save, positions)


def differentiable_points(grid: Grid, t0: torch.Tensor, t1: torch.Tensor) -> list[TimeLike]:
    """``grid.times`` with each base point replaced by t0 + (t1 − t0) k/n computed from the
    float64 tensors ``t0``, ``t1`` (same values); inserted output times stay constants."""
    n_steps = len(grid.base) - 1
    points: list[TimeLike] = list(grid.times)
    for k, position in enumerate(grid.base):
        points[position] = grid_point(t0, t1, n_steps, k)
    return points


def rk_step(field: Field, t: TimeLike, z: torch.Tensor, h: TimeLike, tableau: ButcherTableau) -> torch.Tensor:
    """One explicit Runge–Kutta step z_{n+1} = z_n + h Σ b_i k_i (see :mod:`solvers._tableau`).

    ``t`` and ``h`` are floats, or, when gradients flow to the times, ``h`` (and maybe ``t``) are
    0-d float64 tensors: then the stage times and the increments h·a_ij, h·b_i stay in the graph
    (``addcmul``); the float path is the plain ``add`` with a scalar, with no check per operation."""
    traced = isinstance(h, torch.Tensor)
    a, b, c = tableau.coefficients
    stages: list[torch.Tensor] = []
    for c_i, row in zip(c, a):
        z_i = z
        for a_ij, k_j in zip(row, stages):
            if a_ij:
                alpha = h * a_ij
                z_i = torch.addcmul(z_i, alpha.to(z.dtype), k_j) if traced else torch.add(z_i, k_j, alpha=alpha)
        t_i = t + h * c_i
        stages.append(field(t_i.to(z.dtype) if traced else torch.tensor(t_i, dtype=z.dtype, device=z.device), z_i))
    out = z
    for b_i, k_i in zip(b, stages):
        if b_i:
            alpha = h * b_i
            out = torch.addcmul(out, alpha.to(z.dtype), k_i) if traced else torch.add(out, k_i, alpha=alpha)
    return out


def integrate_fixed(
    field: Field,
    z0: torch.Tensor,
    grid: Grid,
    tableau: ButcherTableau,
    stats: SolverStats,
    callback: Callable[[float, torch.Tensor], None] | None,
    points: Sequence[TimeLike] | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """March ``z0`` along the grid (``points``: the grid times, by default ``grid.times``); return
    the states at ``grid.save`` and the state at t1.

    Finiteness is checked at every saved point (one reduction each, not one per step). A
    non-finite state there is located by replaying from the last good saved state
    (:func:`_first_nonfinite`), and raises :class:`IntegrationError` naming the first bad step.
    """
    points = grid.times if points is None else points
    last = len(points) - 1
    checked = set(grid.save) | {last}
    saved: dict[int, torch.Tensor] = {0: z0}
    good = 0  # the last grid index whose state is known to be finite (z0 is checked on input)
    z = z0
    for n in range(last):
        t = points[n]
        z = rk_step(field, t, z, points[n + 1] - t, tableau)
        stats.steps += 1
        stats.accepted += 1
        if callback is not None:
            callback(grid.times[n + 1], z)
        if n + 1 in checked:
            if count_nonfinite(z):
                raise _first_nonfinite(field, points, grid.times, good, n + 1, saved[good], tableau)
            saved[n + 1] = z
            good = n + 1
    return [saved[i] for i in grid.save], z


def _first_nonfinite(
    field: Field, points: Sequence[TimeLike], times: list[float], start: int, end: int,
    z: torch.Tensor, tableau: ButcherTableau,
) -> IntegrationError:
    """Replay the steps from grid index ``start`` (finite state ``z``) to ``end`` (non-finite),
    probing every evaluation, and describe the first step that produced a non-finite value. The
    counters are those of an integration that stopped there."""
    probe = Probe(field)
    stages = tableau.stages
    total = len(times) - 1
    with torch.no_grad():
        for n in range(start, end):
            before = probe.evaluations
            try:
                z = rk_step(probe, points[n], z, points[n + 1] - points[n], tableau)
            except NonFiniteEvaluation as bad:
                done = bad.evaluation - before - (0 if bad.from_field else 1)
                where = f"{bad.describe()}, in step {n + 1} of {total} (stage {bad.evaluation - before} of {stages})"
                break
            if count_nonfinite(z):
                done = stages
                where = (f"the state overflowed to a non-finite value (NaN or Inf) in the update of step "
                         f"{n + 1} of {total}, from t={times[n]:.6g} to t={times[n + 1]:.6g}; the field's "
                         "values were finite")
                break
        else:
            return IntegrationError(
                f"non-finite state (NaN or Inf) with method {tableau.name!r} at t={times[end]:.6g}; replaying "
                f"from t={times[start]:.6g} did not reproduce it (is the field deterministic?)",
                times[start], SolverStats(steps=start, accepted=start, nfe=stages * start),
            )
    stats = SolverStats(steps=n, accepted=n, nfe=stages * n + done)
    hint = ("If |z| was growing, the step is outside the method's stability region: use more steps "
            "(smaller dt) or an adaptive method; otherwise check the vector field near that time.")
    return IntegrationError(f"{where}, with method {tableau.name!r}", times[n], stats, hint)
