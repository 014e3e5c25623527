r"""``transformer``: full softmax self-attention as a diffusivity (Vaswani et al.).

For head h with queries q = Z W_qᵀ and keys k = Z W_kᵀ (no bias, H heads of d_k channels):

$$ S^h_{ij} = \frac{\exp\big(q^{h\top}_i k^h_j / \sqrt{d_k}\big)}{\sum_l \exp\big(q^{h\top}_i k^h_l / \sqrt{d_k}\big)} $$

over all j (no graph). ``concat=True``: head h propagates channel block h (d / H channels) of
the values with S^h, as multi-head attention with v = Z split into heads (one Euler step with
τ = 1 is ``scaled_dot_product_attention(q, k, v)``; the value and output projections are channel
maps outside the step, and τ < 1 is attention with a residual connection).
``concat=False``: S = (1/H) Σ_h S^h propagates all channels.

``frozen=True``: S is computed once from Z⁰ in :meth:`set_initial_state` and held fixed along the
solve (GRAND-l style).

Properties: row-stochastic, non-negative (strictly positive), not symmetric, state-dependent.
Cost O(N² d) time and O(H N²) memory: S is formed explicitly (use ``difformer_s`` for O(N)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import Diffusivity, DiffusivityProperties, register_diffusivity


def _positive_int(arg: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return value


@register_diffusivity
class Transformer(Diffusivity):
    name = "transformer"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N^2 d)"
    )

    def __init__(
        self,
        in_channels: int | None = None,
        *,
        heads: int = 1,
        key_channels: int | None = None,
        concat: bool = True,
        frozen: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if in_channels is None:
            raise ValueError("transformer needs in_channels=<d, the width of the state Z> (queries and keys are linear in Z)")
        in_channels = _positive_int("in_channels", in_channels)
        heads = _positive_int("heads", heads)
        if concat and in_channels % heads:
            raise ValueError(
                f"heads={heads} must divide in_channels={in_channels} with concat=True: head h propagates "
                f"channel block h (in_channels / heads channels); or use concat=False (heads averaged)"
            )
        if key_channels is None:
            key_channels = in_channels // heads
            if key_channels < 1:
                raise ValueError(f"in_channels // heads = {in_channels} // {heads} = 0: pass key_channels=<d_k> explicitly")
        key_channels = _positive_int("key_channels", key_channels)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.in_channels, self.heads, self.key_channels = in_channels, heads, key_channels
        self.concat, self.frozen = bool(concat), bool(frozen)
        self.query = nn.Linear(in_channels, heads * key_channels, bias=False, dtype=dtype)
        self.key = nn.Linear(in_channels, heads * key_channels, bias=False, dtype=dtype)
        self._frozen_attention: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform W_q, W_k (the initialisation of ``nn.MultiheadAttention``'s in-projection)."""
        for lin in (self.query, self.key):
            nn.init.xavier_uniform_(lin.weight)
        self._frozen_attention = None

    def _check(self, z: torch.Tensor, what: str = "z") -> None:
        if z.dim() not in (2, 3):
            raise ValueError(f"{what} must have shape [N, d] or [B, N, d], got {tuple(z.shape)}")
        weight = self.query.weight
        if z.dtype != weight.dtype or z.device != weight.device:
            raise TypeError(
                f"{what} is {z.dtype} on {z.device} but diffusivity {self.name!r} holds {weight.dtype} on "
                f"{weight.device}; move it with diffusivity.to(z) (or build it with dtype=z.dtype)"
            )

    def attention(self, z: torch.Tensor) -> torch.Tensor:
        """The per-head matrices S^h, shape [..., H, N, N]."""
        self._check(z)
        if z.shape[-1] != self.in_channels:
            raise ValueError(
                f"z must have in_channels = {self.in_channels} channels, got shape {tuple(z.shape)}"
            )
        split = (self.heads, self.key_channels)
        q = self.query(z).unflatten(-1, split).transpose(-3, -2)  # [..., H, N, d_k]
        k = self.key(z).unflatten(-1, split).transpose(-3, -2)
        logits = (q * (1.0 / math.sqrt(self.key_channels))) @ k.transpose(-2, -1)  # [..., H, N, N]
        logits = logits - logits.amax(dim=-1, keepdim=True).detach()
        weights = logits.exp()
        return weights / weights.sum(dim=-1, keepdim=True)

    def set_initial_state(self, z0: torch.Tensor) -> None:
        """Frozen mode: compute S from Z⁰ once and keep it (kept in the autograd graph of Z⁰)."""
        self._frozen_attention = self.attention(z0) if self.frozen else None

    def _attention(self, z: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            return self.attention(z)
        if self._frozen_attention is None:
            raise RuntimeError(f"{self.name!r} is frozen at Z⁰: call set_initial_state(z0) (DiffusionField does) first")
        return self._frozen_attention

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        attn = self._attention(z)
        values = z if values is None else values
        self._check(values, "values")
        if values.shape[-2] != attn.shape[-1]:
            raise ValueError(f"values must have N = {attn.shape[-1]} nodes like z, got shape {tuple(values.shape)}")
        if not self.concat:
            return attn.mean(dim=-3) @ values
        if values.shape[-1] % self.heads:
            raise ValueError(
                f"with concat=True the values' channels must split into heads={self.heads} blocks, "
                f"got shape {tuple(values.shape)}"
            )
        blocks = values.unflatten(-1, (self.heads, -1)).transpose(-3, -2)  # [..., H, N, d/H]
        return (attn @ blocks).transpose(-3, -2).flatten(-2)

    def dense_heads(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """The per-head matrices S^h as [..., H, N, N]."""
        if z is None and not (self.frozen and self._frozen_attention is not None):
            raise ValueError("transformer.dense(z) needs the state z")
        return self._attention(z)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S as [N, N] (or [B, N, N]): the head mean for concat=False, S¹ for one head.

        With concat=True and several heads S is block-diagonal over channel blocks, not one
        N × N matrix: use :meth:`dense_heads`."""
        if self.concat and self.heads > 1:
            raise ValueError(
                f"transformer with concat=True and heads={self.heads} applies a different S^h to each channel "
                "block, so there is no single N×N matrix; use dense_heads(z) for the [..., H, N, N] stack"
            )
        return self.dense_heads(z, t).mean(dim=-3)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, in_channels={self.in_channels}, heads={self.heads}, "
                f"key_channels={self.key_channels}, concat={self.concat}, frozen={self.frozen}")
