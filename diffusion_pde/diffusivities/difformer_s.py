r"""``difformer_s``: DIFFormer's simple diffusivity, applied in O(N) time and memory.

$$ S_{ij} = \frac{1 + \hat q_i^\top \hat k_j}{\sum_l \left(1 + \hat q_i^\top \hat k_l\right)}, \qquad
   \hat q_i = q_i / \lVert q_i \rVert,\ \hat k_j = k_j / \lVert k_j \rVert $$

(per head, heads averaged). Never building S, the product is

$$ (S V)_i = \frac{\sum_j v_j + \hat q_i^\top (\hat K^\top V)}{N + \hat q_i^\top \sum_j \hat k_j}, $$

where K̂ᵀV ([d_k, d] per head) and Σ_j k̂_j are formed once per evaluation. It is the optimal
diffusivity of the energy with δ(s) = 2s − s²/4 on unit vectors, since 1 + q̂ᵀk̂ = 2 − ‖q̂ − k̂‖²/2.
``qk_norm="global"`` divides q and k by one Frobenius norm instead (the authors' released
code), which makes S nearly uniform. ``qk_norm="none"`` is refused: the kernel is non-negative
only for |q̂ᵀk̂| ≤ 1.

A row whose kernel sum Σ_l (1 + q̂_iᵀk̂_l) vanishes (every key opposite to the query: one node
with k̂ = −q̂, or d_k = 1 with all signs opposed) has no attention mass, and S_i is 0/0. Such a
row, and any whose sum is below the round-off floor ``ROUND_OFF_FLOOR · N · eps`` of the O(N)
formula (where that formula has no correct digit left), is taken as uniform, 1/N: the limit of
the kernel 1 + ε + q̂ᵀk̂ as ε → 0, and what a zero query (q̂ = 0) already gives. 16-bit states
are multiplied in float32 (sums over N nodes overflow float16) and rounded back.

Properties: row-stochastic and non-negative (|q̂ᵀk̂| ≤ 1), not symmetric, state-dependent.
Cost O(N H d_k d) time, O(N (H d_k + d)) memory.
"""

from __future__ import annotations

import torch

from ._attention import QueryKeyDiffusivity, inverse_norm
from ._base import DiffusivityProperties, register_diffusivity, widen

# A kernel row sum ≤ ROUND_OFF_FLOOR · N · eps (eps of the state's dtype) counts as zero, i.e. a
# uniform row: the O(N) formula computes an exactly zero sum as at most 3.5 N eps (measured for
# float64 down to bfloat16, d_k up to 512), and a sum that small has no correct digit left.
ROUND_OFF_FLOOR = 16


def check_qk_norm(qk_norm: object) -> None:
    """ValueError for ``qk_norm="none"``, which DIFFormer-s cannot use (its kernel needs unit q̂, k̂)."""
    if qk_norm == "none":
        raise ValueError(
            "difformer_s needs unit queries and keys: with qk_norm='none' its kernel 1 + qᵀk is unbounded "
            "below, so S can be negative or infinite; use qk_norm='row' (the paper's form) or "
            "qk_norm='global' (the authors' code)"
        )


@register_diffusivity
class DIFFormerSimple(QueryKeyDiffusivity):
    name = "difformer_s"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N H d_k d)"
    )

    def __init__(self, in_channels: int | None = None, *, heads: int = 1, key_channels: int | None = None,
                 qk_norm: str = "row", frozen: bool = False, bias: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        check_qk_norm(qk_norm)
        super().__init__(in_channels, heads=heads, key_channels=key_channels, qk_norm=qk_norm, frozen=frozen, bias=bias,
                         dtype=dtype)

    def _floor(self, n: int, dtype: torch.dtype) -> float:
        """The kernel row sum at or below which a row counts as having no attention mass."""
        return ROUND_OFF_FLOOR * n * torch.finfo(dtype).eps

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        if values.shape[:-1] != z.shape[:-1]:
            raise ValueError(f"values must have the node shape of z {tuple(z.shape[:-1])}, got {tuple(values.shape)}")
        q, k = self.queries_keys(z, normalise_queries=False)
        # Head mean without [N, H, d] temporaries and without materialising q̂ = q / r_q:
        #   den_ih = N + q̂_ih·Σ_j k̂_jh,   (SV)_i = c_i Σ_j v_j + Σ_h (q_ih / (H r_q,ih den_ih))·(K̂_hᵀV),
        #   c_i = (1/H) Σ_h 1/den_ih; a row with no attention mass (den_ih at the floor) is uniform:
        #   its den_ih is replaced by N and its query term dropped. 16-bit states: the sums over
        #   the N nodes are formed in float32 (see widen).
        dtype, n = values.dtype, values.shape[-2]
        q, k, values = widen(q), widen(k), widen(values)
        scale = inverse_norm(q, self.qk_norm)                                   # 1/r_q: [..., N, H, 1] or [..., 1, 1, 1]
        kv = k.flatten(-2).transpose(-1, -2) @ values                        # [..., H d_k, d]
        den = (q * k.sum(dim=-3, keepdim=True)).sum(dim=-1, keepdim=True) * scale + n
        live = den > self._floor(n, dtype)                                   # [..., N, H, 1]
        inv_den = torch.where(live, den, n).reciprocal_()
        weighted_q = (q * (scale * inv_den * live / self.heads)).flatten(-2)  # [..., N, H d_k]
        out = weighted_q @ kv
        return out.addcmul_(inv_den.mean(dim=-2), values.sum(dim=-2, keepdim=True)).to(dtype)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("difformer_s.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        n = z.shape[-2]
        kernel = (1 + torch.einsum("...ihm,...jhm->...hij", widen(q), widen(k))).clamp_min_(0)  # ≥ 0 up to round-off
        total = kernel.sum(dim=-1, keepdim=True)
        live = total > self._floor(n, z.dtype)
        return torch.where(live, kernel / torch.where(live, total, 1), 1 / max(1, n)).mean(dim=-3).to(z.dtype)
