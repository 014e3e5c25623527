"""Shared machinery of the learned query/key diffusivities (DIFFormer-s, DIFFormer-a).

Queries and keys are linear in the current state, q = Z W_q, k = Z W_k, split into H heads of
``key_channels`` each; S changes along the solve because Z(t) does. With ``frozen=True`` the
queries and keys are computed once from Z⁰ (in :meth:`set_initial_state`) and S stays fixed
(GRAND-l style). Heads are averaged: S = (1/H) Σ_h S_h, which stays row-stochastic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import Diffusivity, positive_int

QK_NORMS = ("row", "global", "none")


def inverse_norm(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The factor 1/r that normalises x [..., N, H, d_k], broadcastable: ``row`` r = ‖x_i‖ per node
    and head, ``global`` r = ‖x‖_F over all nodes and heads (the authors' released code), ``none``
    r = 1. A zero vector keeps norm 0 (1/0 is taken as 0, as ``F.normalize`` does), so S stays
    finite: its kernel row becomes 1 + 0 (uniform) instead of 0/0."""
    if mode == "none":
        return torch.ones((1, 1, 1), dtype=x.dtype, device=x.device)
    dims = -1 if mode == "row" else (-3, -2, -1)
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    positive = norm > 0
    return torch.where(positive, torch.where(positive, norm, torch.ones_like(norm)).reciprocal(), torch.zeros_like(norm))


def normalise_qk(x: torch.Tensor, mode: str) -> torch.Tensor:
    """x / r with r as in :func:`inverse_norm` (``none``: unchanged)."""
    return x if mode == "none" else x * inverse_norm(x, mode)


class QueryKeyDiffusivity(Diffusivity):
    """Base of attention diffusivities with q = Z W_q (+ b_q), k = Z W_k (+ b_k), H heads of d_k;
    ``bias=True`` adds the biases (as the authors' released DIFFormer code has them)."""

    cached_inputs = ("_frozen_qk",)

    def __init__(self, in_channels: int | None = None, *, heads: int = 1, key_channels: int | None = None,
                 qk_norm: str = "row", frozen: bool = False, bias: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if in_channels is None:
            raise ValueError(f"{self.name} needs in_channels=<d, the width of the state Z> (queries and keys are linear in Z)")
        in_channels = positive_int("in_channels", in_channels)
        heads = positive_int("heads", heads)
        key_channels = positive_int("key_channels", in_channels if key_channels is None else key_channels)
        if qk_norm not in QK_NORMS:
            raise ValueError(f"qk_norm must be one of {', '.join(QK_NORMS)}, got {qk_norm!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.in_channels, self.heads, self.key_channels = in_channels, heads, key_channels
        self.qk_norm, self.frozen = qk_norm, bool(frozen)
        self.query = nn.Linear(in_channels, heads * key_channels, bias=bool(bias), dtype=dtype)
        self.key = nn.Linear(in_channels, heads * key_channels, bias=bool(bias), dtype=dtype)
        self._frozen_qk: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W_q, W_k (and their biases b_q, b_k when ``bias=True``) ~ U(−1/√d, 1/√d), the scale of
        ``nn.Linear``'s default initialisation."""
        bound = 1.0 / math.sqrt(self.in_channels)
        for lin in (self.query, self.key):
            nn.init.uniform_(lin.weight, -bound, bound)
            if lin.bias is not None:
                nn.init.uniform_(lin.bias, -bound, bound)
        self._frozen_qk = None

    def check_state(self, z: torch.Tensor, what: str = "z") -> None:
        """Shape [N, d] or [B, N, d]; dtype and device of the weights (errors name the fix)."""
        if z.dim() not in (2, 3):
            raise ValueError(f"{what} must have shape [N, d] or [B, N, d], got {tuple(z.shape)}")
        weight = self.query.weight
        if z.dtype != weight.dtype or z.device != weight.device:
            raise TypeError(
                f"{what} is {z.dtype} on {z.device} but diffusivity {self.name!r} holds {weight.dtype} on "
                f"{weight.device}; move it with diffusivity.to(z) (or build it with dtype=z.dtype)"
            )

    def check_input(self, z: torch.Tensor) -> None:
        """:meth:`check_state` and the width: z must have ``in_channels`` channels."""
        self.check_state(z)
        if z.shape[-1] != self.in_channels:
            raise ValueError(
                f"z must have in_channels = {self.in_channels} channels ([N, {self.in_channels}] or "
                f"[B, N, {self.in_channels}]), got shape {tuple(z.shape)}"
            )

    def project(self, lin: nn.Linear, z: torch.Tensor) -> torch.Tensor:
        """``lin`` (``self.query`` or ``self.key``) applied to a checked z, split into heads:
        the raw (not normalised) [..., N, H, d_k]."""
        return lin(z).view(*z.shape[:-1], self.heads, self.key_channels)

    def _project(self, z: torch.Tensor, normalise_queries: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(z)
        q = self.project(self.query, z)
        q = normalise_qk(q, self.qk_norm) if normalise_queries else q
        k = normalise_qk(self.project(self.key, z), self.qk_norm)
        return q, k

    def set_initial_state(self, z0: torch.Tensor) -> None:
        self._frozen_qk = self._project(z0, normalise_queries=False) if self.frozen else None

    def queries_keys(self, z: torch.Tensor, normalise_queries: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, k) of shape [..., N, H, d_k] from Z or, when frozen, from Z⁰; k is normalised per
        ``qk_norm``, q too unless ``normalise_queries=False`` (callers that fold 1/‖q‖ in)."""
        if not self.frozen:
            return self._project(z, normalise_queries)
        if self._frozen_qk is None:
            raise RuntimeError(f"{self.name!r} is frozen at Z⁰: call set_initial_state(z0) (DiffusionField does) first")
        q, k = self._frozen_qk
        return (normalise_qk(q, self.qk_norm) if normalise_queries else q), k

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, in_channels={self.in_channels}, heads={self.heads}, "
                f"key_channels={self.key_channels}, qk_norm={self.qk_norm!r}, frozen={self.frozen}")
