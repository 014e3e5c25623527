"""Energies of node states: the Dirichlet energy of a fixed diffusivity and the layer energy
E(Z; Z_prev) = ‖Z − Z_prev‖²_F + λ Σ_ij δ(‖z_i − z_j‖²) of the energy-descent theorem.

Dirichlet energy of Z for a diffusivity S that is self-adjoint in a node measure m
(⟨x, y⟩_m = Σ_i m_i x_i y_i):

    E(Z) = Σ_i m_i ⟨z_i, z_i − (S Z)_i⟩ = ⟨Z, (I − S) Z⟩_m

For ``gcn`` (m = 1) this is tr(Zᵀ(I − Â)Z); for ``random_walk`` (m = d̃) it is
tr(Zᵀ(D̃ − Ã)Z) = ½ Σ_ij Ã_ij ‖z_i − z_j‖² on an undirected graph. Along the heat flow
dZ/dt = (S − I)Z it decreases: dE/dt = −2 ‖(I − S)Z‖²_m ≤ 0.
"""

from __future__ import annotations

import math

import torch

from .diffusivities import Diffusivity
from .penalties import Penalty, TensorFn, penalty


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


def normalised_dirichlet_energy(z: torch.Tensor, diffusivity: Diffusivity) -> torch.Tensor:
    """e(Z) = ⟨Z, (I − S)Z⟩_m / ⟨Z, Z⟩_m, scale-free, in [0, 2) for a row-stochastic S.

    With ``random_walk`` (m = d̃) it is ½ Σ_ij Ã_ij ‖z_i − z_j‖² / Σ_i d̃_i ‖z_i‖², which is 0 exactly
    when Z is constant on every connected component: the over-smoothed limit of row-stochastic
    diffusion. (With ``gcn`` a constant state keeps energy 1 − 1ᵀÂ1/N > 0, since Â fixes D̃^{1/2}1.)"""
    measure = diffusivity.node_measure()
    return dirichlet_energy(z, diffusivity) / torch.einsum("n,...nd,...nd->...", measure, z, z)


def energy(
    z: torch.Tensor,
    z_prev: torch.Tensor,
    delta: str | Penalty | TensorFn = "difformer",
    lam: float = 1.0,
) -> torch.Tensor:
    r"""The layer energy of the energy-descent theorem (Wu, Wipf, Yan):

        E(Z; Z_prev) = ‖Z − Z_prev‖²_F + λ Σ_{i,j} δ(‖z_i − z_j‖²)

    The sum runs over all ordered pairs (i, j), the diagonal i = j included (each diagonal term
    is the constant δ(0)). δ is resolved by :func:`diffusion_pde.penalties.penalty` (a built-in
    name ``difformer`` / ``log`` / ``sqrt`` / ``quadratic``, a :class:`Penalty`, or an
    elementwise callable); the theorem needs δ concave and non-decreasing, λ > 0. Squared
    distances outside the penalty's declared domain raise (``difformer``: s ≤ 4, unit-norm
    states), as in the ``energy`` diffusivity.

    ``z`` and ``z_prev`` have the same shape, [N, d] (a scalar result) or [B, N, d] (shape [B]).
    Pairwise distances are computed by direct differences (no ‖a‖² + ‖b‖² − 2aᵀb cancellation),
    O(N² d) time, O(N²) memory. Differentiable in ``z`` and ``z_prev``.
    """
    if not isinstance(z, torch.Tensor) or not isinstance(z_prev, torch.Tensor):
        raise TypeError("energy(z, z_prev, ...) takes two tensors")
    if z.dim() not in (2, 3):
        raise ValueError(f"z must have shape [N, d] or [B, N, d], got {tuple(z.shape)}")
    if z_prev.shape != z.shape:
        raise ValueError(f"z and z_prev must have the same shape, got {tuple(z.shape)} and {tuple(z_prev.shape)}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
    pen = penalty(delta)
    sq = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").square()
    pen.check_domain(sq)
    fidelity = (z - z_prev).square().sum(dim=(-2, -1))
    return fidelity + lam * pen.value(sq).sum(dim=(-2, -1))
