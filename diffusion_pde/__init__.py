"""diffusion-pde: neural message passing as steps of an ODE integrator on the diffusion
dZ/dt = (1 − μ)(S(Z, t) Z − Z) + μ(Z⁰ − Z) with a pluggable diffusivity S."""

from .diffusivities import Diffusivity, DiffusivityProperties, available_diffusivities, diffusivity, register_diffusivity
from .energies import dirichlet_energy, energy, normalised_dirichlet_energy
from .exact import exact_solution
from .field import DiffusionBlock, DiffusionField

__all__ = [
    "DiffusionBlock",
    "DiffusionField",
    "Diffusivity",
    "DiffusivityProperties",
    "available_diffusivities",
    "diffusivity",
    "dirichlet_energy",
    "normalised_dirichlet_energy",
    "energy",
    "exact_solution",
    "register_diffusivity",
]
