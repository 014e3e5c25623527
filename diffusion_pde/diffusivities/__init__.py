"""Diffusivity plug-ins: each module defines one S(Z, t) and registers it by name."""

from . import gcn, identity, random_walk  # noqa: F401  (registration side effect)
from ._base import (
    Diffusivity,
    DiffusivityProperties,
    available_diffusivities,
    diffusivity,
    diffusivity_class,
    register_diffusivity,
)
from ._linear_graph import LinearGraphDiffusivity

__all__ = [
    "Diffusivity",
    "DiffusivityProperties",
    "LinearGraphDiffusivity",
    "available_diffusivities",
    "diffusivity",
    "diffusivity_class",
    "register_diffusivity",
]
