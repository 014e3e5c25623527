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

With ``qk_norm="global"`` (and queries and keys from the current state) q and k are never formed:
with ẑ = [z; 1], every node sum the attention needs is a product with the augmented Gram
matrices Σ_j ẑ_j ẑ_jᵀ and Σ_j ẑ_j v̂_jᵀ, and the queries enter only through z_i times one
[d + 1, H (d_v + 1)] matrix (:mod:`._global_attention`): a forward pass is one [d, d] sum over
the nodes and one [N, d] × [d, H (d_v + 1)] product, in blocks of rows, as one autograd node
with a hand-written backward pass that keeps no N-row tensor but z (:class:`GlobalAttention`).
The result is the same function (checked against a brute-force N × N attention to 1e-12 in
float64, gradients included).

The two steps are public, so that the product can be formed for a graph too large to hold at once
(:func:`diffusion_pde.models.predict_chunked`): :meth:`DIFFormerSimple.sums` forms the node sums
of a block of nodes, additive over blocks (:class:`AttentionSums`: K̂ᵀV, Σ_j k̂_j, Σ_j v_j, N; with
global norms :class:`GramSums`: the augmented Gram matrices), and :meth:`DIFFormerSimple.apply`
forms the rows (S V)_i of a block of nodes from the finished sums; ``forward`` is the same
function as ``apply(z, sums(z, values))``.

Properties: row-stochastic and non-negative (|q̂ᵀk̂| ≤ 1), not symmetric, state-dependent.
Cost O(N H d_k d) time, O(N (H d_k + d)) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._attention import QueryKeyDiffusivity, inverse_norm, normalise_qk
from ._global_attention import GlobalAttention, GramSums, attend, attention_rows, augmented_gram, fold, uniform_row
from ._base import DiffusivityProperties, register_diffusivity, widen

# A kernel row sum ≤ ROUND_OFF_FLOOR · N · eps (eps of the state's dtype) counts as zero, i.e. a
# uniform row: the O(N) formula computes an exactly zero sum as at most 3.5 N eps (measured for
# float64 down to bfloat16, d_k up to 512), and a sum that small has no correct digit left.
ROUND_OFF_FLOOR = 16


def _inverse_sqrt(square_sum: torch.Tensor) -> torch.Tensor:
    """1/√s, and 0 for s = 0 (a zero block keeps norm 0, as in :func:`inverse_norm`), with finite
    gradients at 0."""
    positive = square_sum > 0
    return torch.where(positive, torch.where(positive, square_sum, torch.ones_like(square_sum)).rsqrt(),
                       torch.zeros_like(square_sum))


@dataclass(frozen=True)
class AttentionSums:
    r"""The node sums DIFFormer-s needs from all N nodes, additive over blocks of nodes
    (``a + b`` is the sums over both blocks):

    * ``kv`` = Σ_j k̂_j v_jᵀ ([..., H d_k, d]), ``key_sum`` = Σ_j k̂_j ([..., 1, H, d_k]),
      ``value_sum`` = Σ_j v_j ([..., 1, d]), ``num_nodes`` = N, for normalised keys (per row, or
      frozen at Z⁰);
    * ``query_sq`` = Σ_j ‖q_j‖² ([..., 1, 1, 1]) for queries with a global norm (frozen keys),
      None for per-row queries.

    DIFFormer-s with global norms and keys from the current state has its own sums,
    :class:`~diffusion_pde.diffusivities._global_attention.GramSums`.

    ``dtype`` is the values' dtype (16-bit values are summed in float32 and the result of
    ``apply`` is rounded back to it)."""

    kv: torch.Tensor
    key_sum: torch.Tensor
    value_sum: torch.Tensor
    num_nodes: int
    query_sq: torch.Tensor | None
    dtype: torch.dtype

    def __add__(self, other: "AttentionSums") -> "AttentionSums":
        if not isinstance(other, AttentionSums) or (self.query_sq is None) != (other.query_sq is None) \
                or self.dtype != other.dtype:
            raise ValueError("cannot add the sums of differently normalised attention (qk_norm, frozen) or dtypes")
        return AttentionSums(self.kv + other.kv, self.key_sum + other.key_sum, self.value_sum + other.value_sum,
                             self.num_nodes + other.num_nodes,
                             None if self.query_sq is None else self.query_sq + other.query_sq, self.dtype)


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
        """(S V) for all nodes: :meth:`apply` to z of :meth:`sums` over z (the queries projected once)."""
        values = self._check_values(z, values)
        if self.frozen:
            q, k = self.queries_keys(z, normalise_queries=False)
            return self._apply_sums(q, self._node_sums(q, k, values))
        self.check_input(z)
        if self.qk_norm == "global":
            return self._global_attention(z, values)
        # Row norms: the keys (and their normalised copy) are gone before the queries are formed.
        sums = self._node_sums(None, normalise_qk(self.project(self.key, z), "row"), values)
        return self._apply_sums(self.project(self.query, z), sums)

    def sums(self, z: torch.Tensor, values: torch.Tensor | None = None) -> AttentionSums | GramSums:
        """The node sums of the rows of ``z`` (a block of nodes, or all of them) with their
        ``values`` (default ``z``): additive over blocks, so ``sums(Z[a]) + sums(Z[b])`` is
        ``sums(Z)`` for a split of the nodes into a and b: :class:`AttentionSums`, or with global
        norms (keys from the current state) the augmented Gram matrices, :class:`GramSums`. Frozen
        at Z⁰, the queries and keys are Z⁰'s (all nodes), so z must then be the whole state."""
        values = self._check_values(z, values)
        if self.frozen:
            q, k = self.queries_keys(z, normalise_queries=False)
            return self._node_sums(q, k, values)
        self.check_input(z)
        if self.qk_norm == "global":
            zw = widen(z)
            return GramSums(augmented_gram(zw), None if values is z else augmented_gram(zw, widen(values)),
                            z.shape[-2], values.dtype)
        return self._node_sums(None, normalise_qk(self.project(self.key, z), "row"), values)

    def apply(self, z: torch.Tensor, sums: AttentionSums | GramSums) -> torch.Tensor:
        """(S V)_i for the rows i of ``z`` (a block of nodes, or all), given the ``sums`` over all N
        nodes (:meth:`sums`, added over blocks): [..., rows, d], in the values' dtype."""
        if not isinstance(sums, (AttentionSums, GramSums)):
            raise TypeError(f"sums must be the AttentionSums or GramSums of difformer_s.sums(z, values), "
                            f"got {type(sums).__name__}")
        global_rows = self.qk_norm == "global" and not self.frozen
        if isinstance(sums, GramSums) != global_rows or (not global_rows and (sums.query_sq is None) != (self.qk_norm == "row")):
            raise ValueError(f"sums were formed with another qk_norm than this diffusivity's {self.qk_norm!r}"
                             f"{' (frozen)' if self.frozen else ''}")
        if self.frozen:
            q, _ = self.queries_keys(z, normalise_queries=False)
            return self._apply_sums(q, sums)
        self.check_input(z)
        if global_rows:
            zw = widen(z)
            gram_values = sums.gram if sums.gram_values is None else sums.gram_values
            matrix = fold(sums.gram, sums.gram_values, *self._key_query_maps(zw.dtype), self.heads).matrix
            rows = attention_rows(zw, matrix, self.heads, self._floor(sums.num_nodes, sums.dtype), uniform_row(gram_values))
            return rows.to(sums.dtype)
        return self._apply_sums(self.project(self.query, z), sums)

    @staticmethod
    def _check_values(z: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
        values = z if values is None else values
        if values.shape[:-1] != z.shape[:-1]:
            raise ValueError(f"values must have the node shape of z {tuple(z.shape[:-1])}, got {tuple(values.shape)}")
        return values

    def _node_sums(self, q: torch.Tensor | None, k: torch.Tensor, values: torch.Tensor) -> AttentionSums:
        """Sums over the rows of the normalised keys k [..., n, H, d_k] and values [..., n, d];
        with ``qk_norm="global"`` also Σ‖q‖² of the raw queries q."""
        dtype = values.dtype
        k, values = widen(k), widen(values)                                  # 16-bit: sums in float32
        def square_sum(x: torch.Tensor) -> torch.Tensor:  # Σ‖x_j‖² over nodes and heads, no N-row temporary
            return torch.linalg.vector_norm(x, dim=(-3, -2, -1), keepdim=True).square()

        query_sq = None if self.qk_norm == "row" else square_sum(widen(q))
        return AttentionSums(
            kv=k.flatten(-2).transpose(-1, -2) @ values,                       # [..., H d_k, d]
            key_sum=k.sum(dim=-3, keepdim=True),                               # [..., 1, H, d_k]
            value_sum=values.sum(dim=-2, keepdim=True),                        # [..., 1, d]
            num_nodes=values.shape[-2], query_sq=query_sq, dtype=dtype,
        )

    def _key_query_maps(self, dtype: torch.dtype) -> tuple[torch.Tensor | None, ...]:
        """W_k, b_k, W_q, b_q ([H d_k, d] and [H d_k] or None) of ``self.key``/``self.query`` in ``dtype``."""
        def parts(lin: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
            if lin.weight.dtype == dtype:
                return lin.weight, lin.bias
            return lin.weight.to(dtype), None if lin.bias is None else lin.bias.to(dtype)
        return (*parts(self.key), *parts(self.query))

    def _global_attention(self, z: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(S V) for all rows with global norms: one :class:`GlobalAttention` node (q and k never
        formed; see :mod:`._global_attention`)."""
        zw = widen(z)
        args = (zw, None if values is z else widen(values), *self._key_query_maps(zw.dtype), self.heads,
                self._floor(z.shape[-2], values.dtype))
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:6]):
            out = GlobalAttention.apply(*args)
        else:  # no graph to record (evaluation): the same forward pass without an autograd node
            out = attend(*args)[0]
        return out.to(values.dtype)

    def _apply_sums(self, q: torch.Tensor, sums: AttentionSums) -> torch.Tensor:
        # Head mean without [n, H, d] temporaries and without materialising q̂ = q / r_q:
        #   den_ih = N + q̂_ih·Σ_j k̂_jh,   (SV)_i = c_i Σ_j v_j + Σ_h (q_ih / (H r_q,ih den_ih))·(K̂_hᵀV),
        #   c_i = (1/H) Σ_h 1/den_ih; a row with no attention mass (den_ih at the floor) is uniform:
        #   its den_ih is replaced by N and its query term dropped.
        n = sums.num_nodes
        q = widen(q)
        scale = inverse_norm(q, "row") if sums.query_sq is None else _inverse_sqrt(sums.query_sq)  # 1/r_q
        kv, key_sum = sums.kv, sums.key_sum
        den = (q * key_sum).sum(dim=-1, keepdim=True) * scale + n
        live = den > self._floor(n, sums.dtype)                              # [..., rows, H, 1]
        inv_den = torch.where(live, den, n).reciprocal_()
        weighted_q = (q * (scale * inv_den * live / self.heads)).flatten(-2)  # [..., rows, H d_k]
        out = weighted_q @ kv
        return out.addcmul_(inv_den.mean(dim=-2), sums.value_sum).to(sums.dtype)

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            raise ValueError("difformer_s.dense(z) needs the state z")
        q, k = self.queries_keys(z)
        n = z.shape[-2]
        kernel = (1 + torch.einsum("...ihm,...jhm->...hij", widen(q), widen(k))).clamp_min_(0)  # ≥ 0 up to round-off
        total = kernel.sum(dim=-1, keepdim=True)
        live = total > self._floor(n, z.dtype)
        return torch.where(live, kernel / torch.where(live, total, 1), 1 / max(1, n)).mean(dim=-3).to(z.dtype)
