r"""Position kernels for sequences: the shared machinery of ``sequence_laplacian``,
``sequence_window`` and ``sequence_global`` (Linear Diffusion Networks, Fein-Ashley 2025).

A sequence of L token states Z ∈ R^{L×d} (or a batch [B, L, d]) diffuses along its positions
with a kernel K ∈ R^{L×L} whose off-diagonal weights are non-negative and depend only on the
offset o = j − t, and whose diagonal makes every row sum to zero:

$$ (K Z)_t = \sum_{o \ne 0,\ 0 \le t+o < L} w(o)\,(z_{t+o} - z_t), \qquad
   K_{t,t+o} = w(o) \ge 0, \quad K_{tt} = -r_t = -\sum_{o \ne 0,\ 0 \le t+o < L} w(o). $$

Offsets that fall outside the sequence are dropped, so the rows at the boundaries sum to zero
too (a reflecting, "Neumann" boundary). ``causal=True`` keeps the offsets o < 0 only (a token
sees its past).

**Representation.** The project's diffusion is dZ/dt = (S − I)Z with a diffusivity S, so a
position kernel is the diffusivity S = I + K: its rows sum to 1 (``rows_sum_to_one``), its
off-diagonal entries are ≥ 0, but its diagonal 1 − r_t may be negative, so it is *not* declared
row-stochastic or non-negative. ``forward`` returns S V = V + K V and never forms an L × L
matrix; :meth:`PositionDiffusivity.kernel` returns K V alone; ``dense`` builds S (tests and
checks only). Every part of :class:`diffusion_pde.DiffusionField`, the solvers and the adjoint
then apply unchanged.

**Heads (multi-scale).** The channels split into ``heads`` equal blocks; block h diffuses with
its own weights w_h(o) (heads = d: per-channel rates). The initial interior row sums r of the
heads are spread geometrically over ``init_rate = (r_max, r_min)``, so the heads diffuse at
different rates. With several heads there is no single L × L matrix: ``dense_heads`` gives the
[H, L, L] stack (as for concatenated attention heads).

**Stability.** Explicit Euler on dZ/dt = KZ is stable for steps h ≤ 2/ρ(K). Gershgorin's discs
of K are centred at −r_t with radius r_t, so ρ(K) ≤ ρ̂ = 2 max_t r_t (:meth:`radius_bound`);
for h ≤ 2/ρ̂ = 1/max_t r_t the Euler matrix I + hK is non-negative with unit row sums, so each
step is a convex combination of the states (a discrete maximum principle, causal kernels too).

Properties: rows sum to one, symmetric exactly when the weights are tied (``symmetric=True``)
and the kernel is not causal, state-independent, shift-equivariant away from the boundaries
(a window kernel), NOT permutation-equivariant (positions are not exchangeable).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ._base import Diffusivity, DiffusivityProperties, PerHeadDense, positive_int


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """y with softplus(y) = x (x > 0), accurate for small and large x."""
    return x + torch.log(-torch.expm1(-x))


def head_rates(init_rate: object, heads: int) -> torch.Tensor:
    """The initial interior row sums r_h (float64, [heads]) from ``init_rate``: a number (every
    head) or a pair (r_max, r_min) spread geometrically over the heads (one head: r_max)."""
    pair = init_rate if isinstance(init_rate, (tuple, list)) else (init_rate, init_rate)
    if len(pair) != 2 or not all(isinstance(r, numbers.Real) and not isinstance(r, bool)
                                 and math.isfinite(r) and r > 0 for r in pair):
        raise ValueError(f"init_rate must be a number > 0 or a pair (r_max, r_min) of numbers > 0 (the initial "
                         f"interior row sums of the heads' kernels), got {init_rate!r}")
    high, low = (float(r) for r in pair)
    if heads == 1:
        return torch.tensor([high], dtype=torch.float64)
    return torch.logspace(math.log10(high), math.log10(low), heads, dtype=torch.float64)


def toeplitz_kernel(profile: torch.Tensor, length: int) -> torch.Tensor:
    """K [H, L, L] from the offset profile [H, 2L − 1] (entry o + L − 1 holds w(o), w(0) = 0):
    K_tj = w(j − t) off the diagonal and K_tt = −Σ_{j≠t} K_tj, so every row of K sums to zero
    up to the round-off of that one sum."""
    positions = torch.arange(length, device=profile.device)
    index = positions[None, :] - positions[:, None] + (length - 1)       # [L, L]: j − t + L − 1
    off = profile[:, index]                                               # [H, L, L]
    off = off * (1 - torch.eye(length, dtype=off.dtype, device=off.device))
    return off - torch.diag_embed(off.sum(dim=-1))


class PositionDiffusivity(PerHeadDense, Diffusivity):
    """Base of the position kernels: S = I + K with K as in the module docstring.

    Subclasses give the offset weights (:meth:`offset_profile`, :meth:`total_weight`) and the
    product K V (:meth:`kernel`); this class checks the input, forms S V, the dense matrices,
    the row sums, the Gershgorin bound and the positional Dirichlet energy.

    Args:
        heads: channel blocks with their own weights (heads = d: one rate per channel).
        causal: keep only the offsets o < 0 (each token sees its past).
        init_rate: initial interior row sum r = −K_tt of the heads: a number, or (r_max, r_min)
            spread geometrically over the heads (the multi-scale initialisation).
        dtype: dtype of the parameters (the states must have it).
    """

    concat = True
    fresh_output = True

    def __init__(self, *, heads: int = 1, causal: bool = False, symmetric: bool = False,
                 init_rate: float | tuple[float, float] = (1.0, 0.01), dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.heads = positive_int("heads", heads)
        if not isinstance(causal, bool) or not isinstance(symmetric, bool):
            raise TypeError(f"causal and symmetric must be bools, got causal={causal!r}, symmetric={symmetric!r}")
        if causal and symmetric:
            raise ValueError("a causal kernel (offsets o < 0 only) cannot be symmetric: pass causal=True or "
                             "symmetric=True, not both")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.causal, self.symmetric = causal, symmetric
        self.initial_rates = head_rates(init_rate, self.heads)
        self.properties = DiffusivityProperties(
            row_stochastic=False, symmetric=symmetric, nonnegative=False, depends_on_state=False,
            cost=type(self).cost, rows_sum_to_one=True, permutation_equivariant=False,
            shift_equivariant=type(self).shift_equivariant,
        )

    #: Time per application (set by each kind) and whether its rows are shift-equivariant away from
    #: the boundaries (a finite window: yes; a global kernel, whose every row reaches both ends: no).
    cost: str = ""
    shift_equivariant: bool = True

    # ---------------------------------------------------------------- what a kind provides

    def offset_profile(self, length: int) -> torch.Tensor:
        """The weights w_h(o) ≥ 0 of every offset o ∈ [−(L − 1), L − 1] as [H, 2L − 1] (entry
        o + L − 1; w(0) = 0, and w(o) = 0 for o > 0 when causal), in the parameters' dtype."""
        raise NotImplementedError

    def total_weight(self) -> torch.Tensor:
        """Σ_o w_h(o) over all offsets of an unbounded sequence, [H]: the largest row sum r_t
        that any length can give (interior rows of a long sequence)."""
        raise NotImplementedError

    def kernel(self, values: torch.Tensor) -> torch.Tensor:
        """K V for values [..., L, d] (d divisible by ``heads``), in O(L) or O(L log L) time."""
        raise NotImplementedError

    # ---------------------------------------------------------------- checks and products

    def check_values(self, values: torch.Tensor, what: str = "values") -> None:
        """[..., L, d] with d divisible by ``heads``, in the parameters' dtype and device."""
        if not isinstance(values, torch.Tensor) or not torch.is_floating_point(values):
            raise TypeError(f"{what} must be a floating torch.Tensor")
        if values.dim() < 2:
            raise ValueError(f"{what} must have shape [L, d] or [B, L, d] (positions along dim -2), "
                             f"got {tuple(values.shape)}")
        if values.shape[-1] % self.heads:
            raise ValueError(f"{self.name}: the {values.shape[-1]} channels of {what} must split into heads="
                             f"{self.heads} equal blocks; pass heads dividing the width")
        param = next(self.parameters())
        if values.dtype != param.dtype or values.device != param.device:
            raise TypeError(f"{what} is {values.dtype} on {values.device} but diffusivity {self.name!r} holds "
                            f"{param.dtype} on {param.device}; move it with diffusivity.to(z) "
                            "(or build it with dtype=z.dtype)")

    def _heads_view(self, x: torch.Tensor) -> torch.Tensor:
        """[..., L, d] as [..., L, H, d / H] (a view)."""
        return x.unflatten(-1, (self.heads, x.shape[-1] // self.heads))

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S V = V + K V (``values`` defaults to z; z only gives the shape)."""
        values = z if values is None else values
        if values.shape[:-1] != z.shape[:-1]:
            raise ValueError(f"values must have the positions of z {tuple(z.shape[:-1])}, got {tuple(values.shape)}")
        self.check_values(values)
        if values.shape[-2] == 0 or values.shape[-1] == 0:
            return values.clone()
        return values + self.kernel(values)

    # ---------------------------------------------------------------- matrices and bounds

    def row_sums(self, length: int) -> torch.Tensor:
        """r_t = Σ_{o≠0, 0 ≤ t+o < L} w_h(o) = −K_tt, [H, L]: prefix sums of the profile, O(L)."""
        if length == 0:
            return self.total_weight().new_zeros(self.heads, 0)
        profile = self.offset_profile(length)
        prefix = F.pad(profile.cumsum(dim=-1), (1, 0))                     # C[k] = Σ_{p<k} profile[p]
        t = torch.arange(length, device=profile.device)
        return prefix[:, 2 * length - 1 - t] - prefix[:, length - 1 - t]

    def kernel_matrices(self, length: int) -> torch.Tensor:
        """K_h for every head, [H, L, L] (rows summing to zero); for small L only."""
        if length == 0:
            return self.total_weight().new_zeros(self.heads, 0, 0)
        return toeplitz_kernel(self.offset_profile(length), length)

    def dense_heads(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S_h = I + K_h as [..., H, L, L] for z [..., L, d] (the batch dims of z are kept)."""
        if z is None:
            raise ValueError(f"{self.name}.dense(z) needs z to know the sequence length L")
        length = z.shape[-2]
        k = self.kernel_matrices(length)
        s = k + torch.eye(length, dtype=k.dtype, device=k.device)
        return s.to(z.dtype).expand(*z.shape[:-2], *s.shape).clone()

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S = I + K as [L, L] (or [B, L, L]); with several heads use :meth:`dense_heads`."""
        if self.heads > 1:
            raise ValueError(f"{self.name} with heads={self.heads} applies a different S_h to each channel block, "
                             "so there is no single L×L matrix; use dense_heads(z) for the [..., H, L, L] stack")
        return self.dense_heads(z, t)[..., 0, :, :]

    def radius_bound(self, length: int | None = None) -> torch.Tensor:
        """Gershgorin's bound ρ̂ ≥ ρ(K_h) for every head: 2 max_{h,t} r_{h,t} for sequences of
        ``length`` (None: of any length, 2 max_h Σ_o w_h(o)); a 0-d tensor, differentiable in
        the weights. Euler steps h ≤ 2/ρ̂ are stable (and convex combinations)."""
        if length is None:
            return 2 * self.total_weight().max()
        positive_int("length", length)
        return 2 * self.row_sums(length).max()

    def dirichlet_energy(self, z: torch.Tensor) -> torch.Tensor:
        """The positional Dirichlet energy E(Z) = −⟨Z, K Z⟩ = ½ Σ_{t,j} K_tj ‖z_t − z_j‖² (over the
        channel blocks of the heads) for a symmetric kernel: [] for z [L, d], [B] for [B, L, d].
        The heat flow dZ/dt = KZ lowers it, dE/dt = −2‖KZ‖², and so does every Euler step
        h ≤ 2/ρ(K). Raises ValueError for a kernel that is not symmetric."""
        if not self.properties.symmetric:
            raise ValueError(f"the positional Dirichlet energy −<Z, KZ> is defined for symmetric kernels; this "
                             f"{self.name} is {'causal' if self.causal else 'not symmetric'} (build it with "
                             "symmetric=True, causal=False)")
        self.check_values(z, "z")
        return -(z * self.kernel(z)).sum(dim=(-2, -1)) if z.numel() else z.new_zeros(z.shape[:-2])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, heads={self.heads}, causal={self.causal}, symmetric={self.symmetric}"


def initial_weights(rates: torch.Tensor, per_offset: torch.Tensor) -> torch.Tensor:
    """Raw parameters (inverse softplus) giving weights rates_h · per_offset_m ([H, M])."""
    return _inverse_softplus(rates[:, None] * per_offset[None, :])
