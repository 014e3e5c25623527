r"""``mix``: a convex combination of two diffusivities.

$$ S = (1 - w)\, S_a + w\, S_b, \qquad w \in [0, 1] $$

e.g. DIFFormer attention plus the input graph: ``mix(first=difformer_s(...), second=gcn(...), weight=0.5)``.
Each part keeps its own cost; S inherits a property when both parts have it (row-stochastic,
symmetric, non-negative) and depends on the state when either does.
"""

from __future__ import annotations

import numbers

import torch

from ._base import Diffusivity, DiffusivityProperties, register_diffusivity


@register_diffusivity
class Mix(Diffusivity):
    name = "mix"

    def __init__(self, first: Diffusivity, second: Diffusivity, weight: float = 0.5) -> None:
        super().__init__()
        for arg, part in (("first", first), ("second", second)):
            if not isinstance(part, Diffusivity):
                raise TypeError(f"{arg} must be a Diffusivity (build it with diffusivity(name, ...)), got {type(part).__name__}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0.0 <= float(weight) <= 1.0:
            raise ValueError(f"weight must be a number in [0, 1], got {weight!r}")
        self.first, self.second, self.weight = first, second, float(weight)
        a, b = first.properties, second.properties
        self.properties = DiffusivityProperties(
            row_stochastic=a.row_stochastic and b.row_stochastic,
            symmetric=a.symmetric and b.symmetric,
            nonnegative=a.nonnegative and b.nonnegative,
            depends_on_state=a.depends_on_state or b.depends_on_state,
            cost=f"{a.cost} + {b.cost}",
        )

    def set_initial_state(self, z0: torch.Tensor) -> None:
        self.first.set_initial_state(z0)
        self.second.set_initial_state(z0)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        a = self.first(z, values, t)
        b = self.second(z, values, t)
        return torch.lerp(a, b, self.weight)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        return torch.lerp(self.first.dense(z, t), self.second.dense(z, t), self.weight)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight}"
