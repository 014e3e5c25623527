r"""``superposition``: diffusivities whose generators add.

$$ S = I + \sum_k (S_k - I), \qquad (S - I) Z = \sum_k (S_k Z - Z) $$

so the diffusion dZ/dt = (S − I)Z runs every part at full rate at once, e.g. a position kernel K
and DIFFormer-s attention over the tokens of a sequence (Linear Diffusion Networks):
S − I = K + (S_attn − I). (``mix`` is the convex combination (1 − w) S_a + w S_b instead, whose
generator is the weighted mean of the parts'.)

Not registered by name: it composes built diffusivities, ``Superposition([kernel, attention])``.
S inherits ``rows_sum_to_one``, ``symmetric``, ``permutation_equivariant`` and
``shift_equivariant`` when every part has them, and depends on the state when any part does; it
is not declared row-stochastic or non-negative for two or more parts (its diagonal
Σ_k S_k,ii − (K − 1) may be negative). Cost: the parts' costs.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._base import Diffusivity, DiffusivityProperties


class Superposition(Diffusivity):
    """S = I + Σ_k (S_k − I) for the diffusivities ``parts`` (at least one)."""

    name = "superposition"

    def __init__(self, parts: Sequence[Diffusivity]) -> None:
        super().__init__()
        parts = list(parts) if isinstance(parts, (list, tuple, nn.ModuleList)) else parts
        if not isinstance(parts, list) or not parts or not all(isinstance(p, Diffusivity) for p in parts):
            raise TypeError("parts must be a non-empty list of Diffusivity plug-ins (build each with "
                            f"diffusion_pde.diffusivity(name, ...)), got {parts!r}")
        self.parts = nn.ModuleList(parts)
        props = [p.properties for p in parts]
        single = len(parts) == 1
        self.properties = DiffusivityProperties(
            row_stochastic=single and props[0].row_stochastic,
            symmetric=all(p.symmetric for p in props),
            nonnegative=single and props[0].nonnegative,
            depends_on_state=any(p.depends_on_state for p in props),
            cost=" + ".join(p.cost for p in props),
            rows_sum_to_one=all(p.rows_sum_to_one for p in props),
            permutation_equivariant=all(p.permutation_equivariant for p in props),
            shift_equivariant=all(p.shift_equivariant for p in props),
        )
        self.fresh_output = len(parts) > 1 or parts[0].fresh_output

    def set_initial_state(self, z0: torch.Tensor) -> None:
        for part in self.parts:
            part.set_initial_state(z0)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_k S_k V − (K − 1) V."""
        values = z if values is None else values
        out = self.parts[0](z, values, t)
        for part in self.parts[1:]:
            out = out + part(z, values, t) - values
        return out

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_k S_k − (K − 1) I as [N, N] (or [B, N, N]); every part must have a single matrix."""
        mats = [part.dense(z, t) for part in self.parts]
        eye = torch.eye(mats[0].shape[-1], dtype=mats[0].dtype, device=mats[0].device)
        return sum(mats[1:], mats[0]) - (len(mats) - 1) * eye

    def extra_repr(self) -> str:
        return f"name={self.name!r}, parts={len(self.parts)}"
