r"""``difformer_s``: DIFFormer's simple diffusivity, applied in O(N) time and memory.

$$ S_{ij} = \frac{1 + \hat q_i^\top \hat k_j}{\sum_l \left(1 + \hat q_i^\top \hat k_l\right)}, \qquad
   \hat q_i = q_i / \lVert q_i \rVert,\ \hat k_j = k_j / \lVert k_j \rVert $$

(per head, heads averaged). Never building S, the product is

$$ (S V)_i = \frac{\sum_j v_j + \hat q_i^\top (\hat K^\top V)}{N + \hat q_i^\top \sum_j \hat k_j}, $$

where K̂ᵀV ([d_k, d] per head) and Σ_j k̂_j are formed once per evaluation. It is the optimal
diffusivity of the energy with δ(s) = 2s − s²/4 on unit vectors, since 1 + q̂ᵀk̂ = 2 − ‖q̂ − k̂‖²/2.
``qk_norm="global"`` divides q and k by one Frobenius norm instead (the authors' released
code), which makes S nearly uniform.

Properties: row-stochastic and non-negative (|q̂ᵀk̂| ≤ 1), not symmetric, state-dependent.
Cost O(N H d_k d) time, O(N (H d_k + d)) memory.
"""

from __future__ import annotations

import torch

from ._attention import QueryKeyDiffusivity, inverse_norm
from ._base import DiffusivityProperties, register_diffusivity


@register_diffusivity
class DIFFormerSimple(QueryKeyDiffusivity):
    name = "difformer_s"
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(N H d_k d)"
    )

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        if values.shape[:-1] != z.shape[:-1]:
            raise ValueError(f"values must have the node shape of z {tuple(z.shape[:-1])}, got {tuple(values.shape)}")
        q, k = self.queries_keys(z, normalise_queries=False)
        # Head mean without [N, H, d] temporaries and without materialising q̂ = q / r_q:
        #   den_ih = N + q̂_ih·Σ_j k̂_jh,   (SV)_i = c_i Σ_j v_j + Σ_h (q_ih / (H r_q,ih den_ih))·(K̂_hᵀV),
        #   c_i = (1/H) Σ_h 1/den_ih.
        scale = inverse_norm(q, self.qk_norm)                                   # 1/r_q: [..., N, H, 1] or [..., 1, 1, 1]
        kv = k.flatten(-2).transpose(-1, -2) @ values                        # [..., H d_k, d]
        inv_den = ((q * k.sum(dim=-3, keepdim=True)).sum(dim=-1, keepdim=True) * scale + values.shape[-2]).reciprocal_()
        weighted_q = (q * (scale * inv_den / self.heads)).flatten(-2)        # [..., N, H d_k]
        out = weighted_q @ kv
        return out.addcmul_(inv_den.mean(dim=-2), values.sum(dim=-2, keepdim=True))

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("difformer_s.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        kernel = 1 + torch.einsum("...ihm,...jhm->...hij", q, k)
        return (kernel / kernel.sum(dim=-1, keepdim=True)).mean(dim=-3)
