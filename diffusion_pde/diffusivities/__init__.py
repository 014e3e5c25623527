"""Diffusivity plug-ins: each module defines one S(Z, t) and registers it by name."""

from . import difformer_a, difformer_s, energy, gat, gcn, gin, identity, mix, random_walk, transformer  # noqa: F401  (registration)
from ._base import (
    Diffusivity,
    DiffusivityProperties,
    available_diffusivities,
    diffusivity,
    diffusivity_class,
    register_diffusivity,
)
from ._attention import QueryKeyDiffusivity
from ._factory import diffusivity_for
from ._linear_graph import LinearGraphDiffusivity

__all__ = [
    "Diffusivity",
    "DiffusivityProperties",
    "LinearGraphDiffusivity",
    "QueryKeyDiffusivity",
    "available_diffusivities",
    "diffusivity",
    "diffusivity_class",
    "diffusivity_for",
    "register_diffusivity",
]
