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
from collections.abc import Sequence
from typing import Callable

import torch

from ._nonfinite import NonFiniteEvaluation, Probe
from ._solution import IntegrationError, SolverStats
from ._tableau import ButcherTableau
from ._times import Time, grid_point, nearest_grid_point, snap_tolerance
from ._validate import count_nonfinite

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TimeLike = float | torch.Tensor


class Grid:
    """The grid of a fixed-step solve, never built point by point: the n + 1 base points
    t0 + k (t1 − t0)/n are computed when read, and only the inserted output times are stored.

    ``times``: strictly increasing from t0 to t1 (a read-only sequence); ``save``: for each output
    time, its index in ``times``; ``base``: for each k = 0..n, the index of base point k in
    ``times``. Reading an entry costs O(log m) for m inserted times, so a million steps take no
    more memory than ten.
    """

    def __init__(self, t0: float, t1: float, n_steps: int, inserted: list[tuple[int, float]], save: list[int]) -> None:
        self.t0, self.t1, self.n_steps = t0, t1, n_steps
        self._after = [k for k, _ in inserted]    # base point each inserted time follows
        self._values = [t for _, t in inserted]
        self._positions = [k + 1 + j for j, (k, _) in enumerate(inserted)]
        self.save = save
        self.times = _Times(self, lambda k: grid_point(t0, t1, n_steps, k))
        self.base = _BasePositions(self)

    def __len__(self) -> int:
        return self.n_steps + 1 + len(self._values)

    def base_position(self, k: int) -> int:
        return k + bisect.bisect_left(self._after, k)

    def locate(self, i: int) -> tuple[int | None, int | None]:
        """``(k, None)`` when entry i is base point k, ``(None, j)`` when it is inserted time j."""
        j = bisect.bisect_left(self._positions, i)
        if j < len(self._positions) and self._positions[j] == i:
            return None, j
        return i - j, None


class _GridSequence(Sequence):
    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def __len__(self) -> int:
        return len(self.grid)

    def _index(self, i: int) -> int:
        n = len(self.grid)
        if not -n <= i < n:
            raise IndexError(i)
        return i % n


class _Times(_GridSequence):
    """The grid's times; base points from ``point(k)`` (floats, or tensors carrying gradients)."""

    def __init__(self, grid: Grid, point: Callable[[int], TimeLike]) -> None:
        super().__init__(grid)
        self.point = point

    def __getitem__(self, i: int) -> TimeLike:  # type: ignore[override]
        k, j = self.grid.locate(self._index(i))
        return self.point(k) if k is not None else self.grid._values[j]


class _BasePositions(_GridSequence):
    def __len__(self) -> int:
        return self.grid.n_steps + 1

    def __getitem__(self, k: int) -> int:  # type: ignore[override]
        if not 0 <= k <= self.grid.n_steps:
            raise IndexError(k)
        return self.grid.base_position(k)


def build_grid(
    t0: float, t1: float, n_steps: int, t_eval: Sequence[float] | None = None,
    tolerances: Sequence[float] | None = None, snap_interior: bool = True,
) -> Grid:
    """The integration grid for ``n_steps`` equal steps plus the output times ``t_eval``, in
    O(m) for m output times whatever ``n_steps`` is.

    An output time within ``tolerances[m]`` (default: float64 round-off at the interval's
    magnitude; always capped at h/8) of a base point is that point; any other is inserted.
    ``snap_interior=False`` (the base points move with a differentiable t0/t1) identifies output
    times with t0 and t1 only: one at an interior base point is inserted after it (a step of
    length 0 at these values), so it stays a fixed time. Without ``t_eval`` the only output is t1.
    """
    if t_eval is None:
        return Grid(t0, t1, n_steps, [], [n_steps])
    if tolerances is None:
        tolerances = [snap_tolerance(Time(t), Time(t0), Time(t1)) for t in t_eval]
    h = (t1 - t0) / n_steps
    inserted: list[tuple[int, float]] = []
    snapped: list[int | None] = []
    for t, tol in zip(t_eval, tolerances):
        near = nearest_grid_point(t, tol, t0, t1, n_steps)
        if not snap_interior and near is not None and 0 < near < n_steps:
            near = None
        snapped.append(near)
        if near is None:
            k = min(n_steps - 1, max(0, int((t - t0) / h)))  # the base point just before t
            while k + 1 < n_steps and grid_point(t0, t1, n_steps, k + 1) < t:
                k += 1
            while k > 0 and grid_point(t0, t1, n_steps, k) > t:
                k -= 1
            inserted.append((k, t))
    grid = Grid(t0, t1, n_steps, inserted, [])
    j = 0
    for near in snapped:
        if near is None:
            grid.save.append(grid._positions[j])
            j += 1
        else:
            grid.save.append(grid.base_position(near))
    return grid


def differentiable_points(grid: Grid, t0: torch.Tensor, t1: torch.Tensor) -> Sequence[TimeLike]:
    """``grid.times`` with each base point t0 + (t1 − t0) k/n computed from the float64 tensors
    ``t0``, ``t1`` (same values); inserted output times stay constants."""
    return _Times(grid, lambda k: grid_point(t0, t1, grid.n_steps, k))


def rk_step(field: Field, t: TimeLike, z: torch.Tensor, h: TimeLike, tableau: ButcherTableau) -> torch.Tensor:
    """One explicit Runge–Kutta step z_{n+1} = z_n + h Σ b_i k_i (see :mod:`solvers._tableau`).

    Explicit Euler with a field that has ``euler_step(t, z, h)`` (a :class:`CountedField` always
    has: it defers to the wrapped field's, or forms z + h f) is that one call, so that a field can
    fuse the step with its own evaluation (e.g. in place on its output); not with traced times.
    ``t`` and ``h`` are floats, or, when gradients flow to the times, ``h`` (and maybe ``t``) are
    0-d float64 tensors: then the stage times and the increments h·a_ij, h·b_i stay in the graph
    (``addcmul``); the float path is the plain ``add`` with a scalar, with no check per operation."""
    traced = isinstance(h, torch.Tensor)
    a, b, c = tableau.coefficients
    euler_step = getattr(field, "euler_step", None)
    if euler_step is not None and not traced and b == (1.0,):  # explicit Euler (c = (0,))
        return euler_step(torch.tensor(t, dtype=z.dtype, device=z.device), z, h)
    stages: list[torch.Tensor] = []
    for c_i, row in zip(c, a):
        z_i = _combination(z, zip(row, stages), h, traced)
        t_i = t + h * c_i
        stages.append(field(t_i.to(z.dtype) if traced else torch.tensor(t_i, dtype=z.dtype, device=z.device), z_i))
    return _combination(z, zip(b, stages), h, traced)


def _combination(z: torch.Tensor, terms, h: TimeLike, traced: bool) -> torch.Tensor:
    """z + Σ (h·w) k over the nonzero weights w: the first term makes a new tensor, the others
    are added into it in place (same arithmetic as a chain of ``torch.add``, one allocation)."""
    out = z
    for w, k in terms:
        if w:
            alpha = h * w
            if traced:
                out = torch.addcmul(out, alpha.to(z.dtype), k) if out is z else out.addcmul_(alpha.to(z.dtype), k)
            else:
                out = torch.add(out, k, alpha=alpha) if out is z else out.add_(k, alpha=alpha)
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
    t = points[0]
    for n in range(last):
        t_next = points[n + 1]  # each grid time is read once (a lookup in the lazy grid)
        z = rk_step(field, t, z, t_next - t, tableau)
        t = t_next
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
    field: Field, points: Sequence[TimeLike], times: Sequence[float], start: int, end: int,
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
