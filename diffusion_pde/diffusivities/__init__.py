"""Diffusivity plug-ins: each module defines one S(Z, t) and registers it by name."""

# Importing each plug-in module registers its diffusivity; the modules are public (listed in __all__).
from . import (difformer_a, difformer_s, energy, gat, gcn, gin, identity, mix, random_walk, sequence_global,
               sequence_laplacian, sequence_window, transformer)
from ._base import (
    Diffusivity,
    DiffusivityProperties,
    GraphDiffusivity,
    available_diffusivities,
    diffusivity,
    diffusivity_class,
    on_graph,
    register_diffusivity,
)
from ._attention import QueryKeyDiffusivity
from ._factory import diffusivity_for
from ._linear_graph import LinearGraphDiffusivity
from ._position import PositionDiffusivity
from .superposition import Superposition

__all__ = [
    "Diffusivity",
    "DiffusivityProperties",
    "GraphDiffusivity",
    "LinearGraphDiffusivity",
    "PositionDiffusivity",
    "QueryKeyDiffusivity",
    "Superposition",
    "available_diffusivities",
    "diffusivity",
    "diffusivity_class",
    "diffusivity_for",
    "on_graph",
    "register_diffusivity",
    # plug-in modules
    "difformer_a",
    "difformer_s",
    "energy",
    "gat",
    "gcn",
    "gin",
    "identity",
    "mix",
    "random_walk",
    "sequence_global",
    "sequence_laplacian",
    "sequence_window",
    "superposition",
    "transformer",
]
