r"""``transformer``: full softmax self-attention as a diffusivity (Vaswani et al.).

For head h with queries q = Z W_qᵀ and keys k = Z W_kᵀ (no bias, H heads of d_k channels):

$$ S^h_{ij} = \frac{\exp\big(q^{h\top}_i k^h_j / \sqrt{d_k}\big)}{\sum_l \exp\big(q^{h\top}_i k^h_l / \sqrt{d_k}\big)} $$

over all j (no graph). ``concat=True``: head h propagates channel block h (d / H channels) of
the values with S^h, as multi-head attention with v = Z split into heads (one Euler step with
τ = 1 is ``scaled_dot_product_attention(q, k, v)``; the value and output projections are channel
maps outside the step, and τ < 1 is attention with a residual connection).
``concat=False``: S = (1/H) Σ_h S^h propagates all channels.

``frozen=True``: S is computed once from Z⁰ in :meth:`set_initial_state` and held fixed along the
solve (GRAND-l style). The softmax is max-shifted (no exponential overflows or underflows to
0/0); for 16-bit states the logits and the softmax are formed in float32 (logits overflow
float16 beyond 65504) and S is rounded back.

Properties: row-stochastic, non-negative (strictly positive), not symmetric, state-dependent.
Cost O(N² d) time and O(H N²) memory: S is formed explicitly (use ``difformer_s`` for O(N)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._attention import QueryKeyDiffusivity
from ._base import DiffusivityProperties, PerHeadDense, register_diffusivity, widen


@register_diffusivity
class Transformer(PerHeadDense, QueryKeyDiffusivity):
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
        if isinstance(in_channels, int) and in_channels >= 1 and isinstance(heads, int) and heads >= 1:
            if concat and in_channels % heads:
                raise ValueError(
                    f"heads={heads} must divide in_channels={in_channels} with concat=True: head h propagates "
                    f"channel block h (in_channels / heads channels); or use concat=False (heads averaged)"
                )
            if key_channels is None:
                key_channels = in_channels // heads
                if key_channels < 1:
                    raise ValueError(f"in_channels // heads = {in_channels} // {heads} = 0: pass key_channels=<d_k> explicitly")
        self.concat = bool(concat)
        super().__init__(in_channels, heads=heads, key_channels=key_channels, qk_norm="none", frozen=frozen, dtype=dtype)

    def reset_parameters(self) -> None:
        """Glorot-uniform W_q, W_k (the initialisation of ``nn.MultiheadAttention``'s in-projection)."""
        for lin in (self.query, self.key):
            nn.init.xavier_uniform_(lin.weight)
        self._frozen_qk = None

    def dense_heads(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """The per-head matrices S^h as [..., H, N, N] (from Z⁰ when frozen)."""
        if z is None and not (self.frozen and self._frozen_qk is not None):
            raise ValueError("transformer.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        q, k = widen(q).transpose(-3, -2), widen(k).transpose(-3, -2)  # [..., H, N, d_k]
        logits = (q * (1.0 / math.sqrt(self.key_channels))) @ k.transpose(-2, -1)
        return torch.softmax(logits, dim=-1).to(self.query.weight.dtype)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        attn = self.dense_heads(z)
        values = z if values is None else values
        self.check_state(values, "values")
        if values.shape[-2] != attn.shape[-1]:
            raise ValueError(f"values must have N = {attn.shape[-1]} nodes like z, got shape {tuple(values.shape)}")
        if not self.concat:
            return attn.mean(dim=-3) @ values
        self.check_head_blocks(values)
        blocks = values.unflatten(-1, (self.heads, -1)).transpose(-3, -2)  # [..., H, N, d/H]
        return (attn @ blocks).transpose(-3, -2).flatten(-2)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", concat={self.concat}"
