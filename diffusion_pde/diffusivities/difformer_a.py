r"""``difformer_a``: DIFFormer's advanced (sigmoid-kernel) diffusivity, O(N²).

$$ S_{ij} = \frac{\sigma(q_i^\top k_j)}{\sum_l \sigma(q_i^\top k_l)} $$

per head (heads averaged), q = Z W_q, k = Z W_k; ``qk_norm`` defaults to ``"none"`` (the paper's
form), ``"row"``/``"global"`` normalise as in ``difformer_s``. The product S V is formed as
(K V) / (K 1) with K = σ(q kᵀ): the row sums divide the N × d result, not the N × N kernel, so one
N × N tensor per block is kept for autograd instead of three. Rows are taken in blocks, so memory
stays O(block · N) rather than O(N²).

Properties: row-stochastic, non-negative, not symmetric, state-dependent. Cost O(N² H (d_k + d)).
"""

from __future__ import annotations

import torch

from ._attention import QueryKeyDiffusivity
from ._base import DiffusivityProperties, register_diffusivity

BLOCK_ELEMENTS = 1 << 22  # rows per block · N · H stays below this many kernel entries


@register_diffusivity
class DIFFormerAdvanced(QueryKeyDiffusivity):
    name = "difformer_a"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N^2 H (d_k + d))"
    )

    def __init__(self, in_channels: int | None = None, *, heads: int = 1, key_channels: int | None = None,
                 qk_norm: str = "none", frozen: bool = False, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(in_channels, heads=heads, key_channels=key_channels, qk_norm=qk_norm, frozen=frozen,
                         dtype=dtype)

    @staticmethod
    def _kernel(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Unnormalised kernel σ(q_i · k_j) for the queries q [..., n, H, d_k]: shape [..., H, n, N]."""
        return torch.sigmoid(torch.einsum("...ihm,...jhm->...hij", q, k))

    def _apply_block(self, q: torch.Tensor, k: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(S V) for the query rows q: per head (K V) / (K 1), then the mean over heads."""
        kernel = self._kernel(q, k)
        numerator = torch.einsum("...hij,...jd->...hid", kernel, values)
        return (numerator / kernel.sum(dim=-1, keepdim=True)).mean(dim=-3)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        q, k = self.queries_keys(z)
        n = z.shape[-2]
        block = max(1, BLOCK_ELEMENTS // (n * self.heads))
        pieces = [self._apply_block(q[..., start:start + block, :, :], k, values) for start in range(0, n, block)]
        return torch.cat(pieces, dim=-2)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("difformer_a.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        kernel = self._kernel(q, k)
        return (kernel / kernel.sum(dim=-1, keepdim=True)).mean(dim=-3)
