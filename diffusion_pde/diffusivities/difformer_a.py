r"""``difformer_a``: DIFFormer's advanced (sigmoid-kernel) diffusivity, O(N²).

$$ S_{ij} = \frac{\sigma(q_i^\top k_j)}{\sum_l \sigma(q_i^\top k_l)} $$

per head (heads averaged), q = Z W_q, k = Z W_k; ``qk_norm`` defaults to ``"none"`` (the paper's
form), ``"row"``/``"global"`` normalise as in ``difformer_s``. The product S V is formed as
(K V) / (K 1) with K_ij = σ(s_ij) / max_l σ(s_il), s = q kᵀ: the row sums divide the N × d
result, not the N × N kernel, so one N × N tensor per block is kept for autograd instead of
three. K is evaluated in the log domain, exp(log σ(s_ij) − max_l log σ(s_il)), i.e. S is a
softmax over log σ(s): its entries lie in [0, 1] with a 1 in every row, so no row sum underflows
where every σ(s_il) does (scores below about −745 in float64, −104 in float32). Rows are taken
in blocks, so memory stays O(block · N) rather than O(N²). 16-bit states are multiplied in
float32 (K V sums N rows, which overflows float16) and rounded back.

Properties: row-stochastic, non-negative, not symmetric, state-dependent. Cost O(N² H (d_k + d)).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from ._attention import QueryKeyDiffusivity
from ._base import DiffusivityProperties, register_diffusivity, widen

BLOCK_ELEMENTS = 1 << 22  # rows per block · N · H stays below this many kernel entries


class _RowScaledSigmoid(torch.autograd.Function):
    """K_ij = σ(s_ij) / max_l σ(s_il) for scores s [..., n, N] (N ≥ 1), as exp(log σ(s_ij) − c_i),
    c_i = max_l log σ(s_il).

    The row scale c_i cancels in S = K / (K 1), so it is a constant for the gradient:
    dK_ij/ds_ij = K_ij σ(−s_ij), with σ(−s_ij) = 1 − K_ij e^{c_i} from K itself; autograd keeps
    K and the [..., n, 1] scale e^{c}, where differentiating logsigmoid and exp would keep
    three N-wide tensors."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor) -> torch.Tensor:
        log_sigmoid = F.logsigmoid(scores)
        peak = log_sigmoid.amax(dim=-1, keepdim=True)
        kernel = log_sigmoid.sub_(peak).exp_()
        ctx.save_for_backward(kernel, peak.exp_())
        return kernel

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        kernel, peak_sigmoid = ctx.saved_tensors
        return grad * kernel * (1 - kernel * peak_sigmoid)


@register_diffusivity
class DIFFormerAdvanced(QueryKeyDiffusivity):
    name = "difformer_a"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N^2 H (d_k + d))"
    )

    def __init__(self, in_channels: int | None = None, *, heads: int = 1, key_channels: int | None = None,
                 qk_norm: str = "none", frozen: bool = False, bias: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(in_channels, heads=heads, key_channels=key_channels, qk_norm=qk_norm, frozen=frozen, bias=bias,
                         dtype=dtype)

    @staticmethod
    def _kernel(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Kernel σ(q_i · k_j) / max_l σ(q_i · k_l) for the queries q [..., n, H, d_k] and keys k
        [..., N, H, d_k]: shape [..., H, n, N], every row's sum in [1, N] (empty for N = 0)."""
        scores = torch.einsum("...ihm,...jhm->...hij", q, k)
        return _RowScaledSigmoid.apply(scores) if scores.shape[-1] else scores

    def _apply_block(self, q: torch.Tensor, k: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(S V) for the query rows q: per head (K V) / (K 1), then the mean over heads."""
        kernel = self._kernel(q, k)
        numerator = torch.einsum("...hij,...jd->...hid", kernel, values)
        return (numerator / kernel.sum(dim=-1, keepdim=True)).mean(dim=-3)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        q, k = self.queries_keys(z)
        n = z.shape[-2]
        if n == 0:  # S is 0 × 0: S V is empty
            return values.clone()
        block = max(1, BLOCK_ELEMENTS // (n * self.heads))
        q, k, wide = widen(q), widen(k), widen(values)  # 16-bit: K V sums N rows, float32 (see widen)
        pieces = [self._apply_block(q[..., start:start + block, :, :], k, wide) for start in range(0, n, block)]
        return torch.cat(pieces, dim=-2).to(values.dtype)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("difformer_a.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        kernel = self._kernel(widen(q), widen(k))
        return (kernel / kernel.sum(dim=-1, keepdim=True)).mean(dim=-3).to(z.dtype)
