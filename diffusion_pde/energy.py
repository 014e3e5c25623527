"""Energies of node states.

Dirichlet energy of Z for a diffusivity S that is self-adjoint in a node measure m
(⟨x, y⟩_m = Σ_i m_i x_i y_i):

    E(Z) = Σ_i m_i ⟨z_i, z_i − (S Z)_i⟩ = ⟨Z, (I − S) Z⟩_m

For ``gcn`` (m = 1) this is tr(Zᵀ(I − Â)Z); for ``random_walk`` (m = d̃) it is
tr(Zᵀ(D̃ − Ã)Z) = ½ Σ_ij Ã_ij ‖z_i − z_j‖² on an undirected graph. Along the heat flow
dZ/dt = (S − I)Z it decreases: dE/dt = −2 ‖(I − S)Z‖²_m ≤ 0.
"""

from __future__ import annotations

import torch

from .diffusivities import Diffusivity


def dirichlet_energy(z: torch.Tensor, diffusivity: Diffusivity) -> torch.Tensor:
    """⟨Z, (I − S)Z⟩_m for Z of shape [N, d] (a scalar) or [B, N, d] (shape [B])."""
    measure = diffusivity.node_measure()
    if measure is None:
        raise ValueError(
            f"diffusivity {diffusivity.name!r} has no node measure that makes S self-adjoint, so no Dirichlet "
            "energy is defined for it; use a graph diffusivity such as 'gcn' or 'random_walk'"
        )
    residual = z - diffusivity(z)
    return torch.einsum("n,...nd,...nd->...", measure, z, residual)
