"""``identity``: S = I, no propagation; one Euler step with τ = 1 is an MLP layer.

Properties: row-stochastic, symmetric, non-negative, state-independent; cost O(1) (returns V).
"""

from __future__ import annotations

import torch

from ._base import Diffusivity, DiffusivityProperties, register_diffusivity


@register_diffusivity
class Identity(Diffusivity):
    r"""$S = I$: every node keeps its own state, so $dZ/dt = (S - I)Z = 0$."""

    name = "identity"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=True, nonnegative=True, depends_on_state=False, cost="O(1)"
    )

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        return z if values is None else values

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("identity.dense(z) needs z to know N")
        eye = torch.eye(z.shape[-2], dtype=z.dtype, device=z.device)
        return eye.expand(*z.shape[:-2], -1, -1).clone()

    def node_measure(self) -> None:
        return None
