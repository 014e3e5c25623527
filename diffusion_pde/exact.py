"""Exact solutions of the linear diffusion, the reference for measuring solver error.

For a state-independent S the field F(Z) = (1 − μ)(S − I)Z + μ(Z⁰ − Z) is affine:
dZ/dt = M Z + μ Z⁰ with M = (1 − μ)(S − I) − μ I, so

    Z(t) = e^{tM} Z⁰ + μ M⁻¹ (e^{tM} − I) Z⁰        (μ > 0; M is invertible since spec(M) ≤ −μ < 0)
    Z(t) = e^{t(S − I)} Z⁰                         (μ = 0)

computed in float64 with ``scipy.linalg.expm`` on the dense S (small and medium N only).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from .diffusivities import Diffusivity


def exact_solution(diffusivity: Diffusivity, z0: torch.Tensor, t: float, source_weight: float = 0.0) -> torch.Tensor:
    """Z(t) of the linear diffusion (float64, on the CPU) for Z⁰ = ``z0`` of shape [N, d]."""
    if diffusivity.properties.depends_on_state:
        raise ValueError(
            f"diffusivity {diffusivity.name!r} depends on the state, so the diffusion is nonlinear and has no "
            "matrix-exponential solution; compare against a tight dopri8 solve instead"
        )
    if z0.dim() != 2:
        raise ValueError(f"z0 must have shape [N, d], got {tuple(z0.shape)}")
    z0_np = z0.detach().cpu().double().numpy()
    s = diffusivity.dense(z0).detach().cpu().double().numpy()
    eye = np.eye(s.shape[0])
    m = (1.0 - source_weight) * (s - eye) - source_weight * eye
    propagator = scipy.linalg.expm(t * m)
    out = propagator @ z0_np
    if source_weight > 0.0:
        out = out + source_weight * np.linalg.solve(m, (propagator - eye) @ z0_np)
    return torch.from_numpy(out)
