"""The result of an integration (:class:`Solution`), its counters and the failure exception."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class SolverStats:
    """Work counters of one integration.

    ``steps`` is the number of steps attempted, ``accepted`` + ``rejected`` = ``steps``
    (fixed-step methods never reject), ``nfe`` counts every call of the vector field.
    """

    steps: int = 0
    accepted: int = 0
    rejected: int = 0
    nfe: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Solution:
    """Outcome of :func:`solvers.solve`.

    Attributes:
        final: the state at ``t1``.
        states: the states at ``times``, stacked along a new leading axis ``[T, *z0.shape]``.
        times: the output times (``t_eval``, or ``[t1]`` when no ``t_eval`` was given), float64.
        stats: :class:`SolverStats`.
        method: the method name.
        status: ``"success"`` (failures raise :class:`IntegrationError` instead).
    """

    final: torch.Tensor
    states: torch.Tensor
    times: torch.Tensor
    stats: SolverStats
    method: str
    status: str = "success"


class IntegrationError(RuntimeError):
    """The integration could not reach ``t1``: what happened, where, and the work done so far.

    ``t_reached`` is the last time with a finite state and ``stats`` the integration's counters up
    to the failure; evaluations made afterwards only to locate a non-finite value (a replay of
    the failed steps) are not counted."""

    def __init__(self, reason: str, t_reached: float, stats: SolverStats, hint: str = "") -> None:
        self.reason = reason
        self.t_reached = t_reached
        self.stats = stats
        self.hint = hint
        text = (
            f"{reason} (reached t={t_reached:.6g}; steps={stats.steps}, "
            f"accepted={stats.accepted}, rejected={stats.rejected}, "
            f"function evaluations={stats.nfe})"
        )
        super().__init__(f"{text}. {hint}" if hint else text)
