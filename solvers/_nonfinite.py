"""Where a non-finite value first appeared in a failed integration.

Integrations check finiteness cheaply (fixed-step: at saved points only; adaptive: through the
step-size control), so a failure is seen late. To say where it began, the failed integration is
replayed deterministically with a :class:`Probe` around the field, which checks each evaluation's
input and output (one host sync each; only ever paid after a failure).
"""

from __future__ import annotations

from typing import Callable

import torch

from ._validate import count_nonfinite


class NonFiniteEvaluation(Exception):
    """Raised by :class:`Probe` at the first evaluation whose state or value is non-finite.

    ``evaluation`` counts the probe's calls (1-based); ``from_field`` tells whether the field
    returned the non-finite value from a finite state (``state_max`` = max |z| of that state) or
    was handed a state that had already overflowed (``from_field`` False, the field not called).
    """

    def __init__(self, t: float, evaluation: int, from_field: bool, state_max: float = float("nan")) -> None:
        super().__init__(t, evaluation, from_field)
        self.t = t
        self.evaluation = evaluation
        self.from_field = from_field
        self.state_max = state_max

    def describe(self) -> str:
        if self.from_field:
            return (f"the field returned a non-finite value (NaN or Inf) at t={self.t:.6g} from a finite "
                    f"state (max |z| = {self.state_max:.3g})")
        return f"the state overflowed to a non-finite value (NaN or Inf) before the evaluation at t={self.t:.6g}"


class Probe:
    """``field(t, z)`` that raises :class:`NonFiniteEvaluation` at its first non-finite input or
    output; ``evaluations`` counts its calls."""

    def __init__(self, field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.field = field
        self.evaluations = 0

    def __call__(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        if count_nonfinite(z):
            raise NonFiniteEvaluation(float(t), self.evaluations, from_field=False)
        dz = self.field(t, z)
        if count_nonfinite(dz):
            raise NonFiniteEvaluation(float(t), self.evaluations, from_field=True,
                                      state_max=float(z.abs().max()))
        return dz
