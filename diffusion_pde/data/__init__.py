"""Datasets: the embedded Cora graph (offline)."""

from ._embedded import load_cora

__all__ = ["load_cora"]
