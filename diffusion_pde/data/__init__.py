"""Datasets shipped with the package: the embedded Cora citation graph (offline, ~96 KB)."""

from ._embedded import load_cora

__all__ = ["load_cora"]
