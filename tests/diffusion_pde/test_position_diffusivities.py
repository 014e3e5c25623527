"""The position kernels of sequences (sequence_laplacian, sequence_window, sequence_global).

- every declared property holds on random kernels (hypothesis): rows of S sum to 1 at every
  position, off-diagonal weights ≥ 0, causal ⇒ no future entries, symmetric ⇒ S = Sᵀ, S independent
  of the state, forward = dense(z) @ z and K V = K @ V for [L, d] and [B, L, d];
- K against oracles built from the definition alone (a double loop over positions and offsets, the
  closed-form mixture of exponentials, the path-graph Laplacian and its eigenvalues 4α sin²(πk/2L));
- shift-equivariance away from the boundaries for the window kinds, and its failure for the global
  kernel (declared); no kind is permutation-equivariant;
- Gershgorin's bound, the positional Dirichlet energy, gradients, bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import diffusion_pde as dp
from diffusion_pde.diffusivities import PositionDiffusivity
from theory_checks.sequence_diffusion import KernelExample, kernel_examples

F64 = torch.float64
KINDS = ("sequence_laplacian", "sequence_window", "sequence_global")


def blocks(s: PositionDiffusivity, z: torch.Tensor) -> torch.Tensor:
    """S z through the dense per-head matrices: [..., L, d]."""
    dense = s.dense_heads(z)                                               # [..., H, L, L]
    parts = z.unflatten(-1, (s.heads, -1))                                 # [..., L, H, c]
    return torch.einsum("...htj,...jhc->...thc", dense, parts).flatten(-2)


def oracle_kernel(s: PositionDiffusivity, length: int) -> np.ndarray:
    """K [H, L, L] from the definition: K[t, t+o] = w(o) for every offset o the kind has with
    0 ≤ t+o < L, K[t, t] = −Σ of the row, by plain loops over positions and offsets."""
    if s.name == "sequence_global":
        a, rate = (x.detach().double().numpy() for x in s._parts())
        past = a[:, 0]
        future = None if s.causal else a[:, -1]

        def weight(h: int, o: int) -> float:
            amp = past[h] if o < 0 else future[h]
            return float(sum(amp[m] * math.exp(-rate[m] * (abs(o) - 1)) for m in range(len(rate))))
        offsets = [o for o in range(-(length - 1), length) if o != 0 and (o < 0 or not s.causal)]
    else:
        w = s.weights().detach().double().numpy()
        table = {o: w[:, m] for m, o in enumerate(s.offsets)}
        offsets = list(table)

        def weight(h: int, o: int) -> float:
            return float(table[o][h])
    k = np.zeros((s.heads, length, length))
    for h in range(s.heads):
        for t in range(length):
            for o in offsets:
                if 0 <= t + o < length:
                    k[h, t, t + o] += weight(h, o)
                    k[h, t, t] -= weight(h, o)
    return k


# --------------------------------------------------------------------------- declared properties


@given(example=kernel_examples(max_length=20), batched=st.booleans())
def test_declared_properties_hold(example: KernelExample, batched: bool) -> None:
    s = example.build()
    z = example.state(2 * s.heads)
    z = z if batched else z[0]
    props = s.properties
    assert props.rows_sum_to_one and not props.row_stochastic and not props.permutation_equivariant
    assert not props.depends_on_state and props.symmetric == (s.symmetric and not s.causal)
    assert props.shift_equivariant == (s.name != "sequence_global")
    dense = s.dense_heads(z).detach()
    size = max(1.0, float(dense.abs().max()))
    length = example.length
    eye = torch.eye(length, dtype=F64)
    assert float((dense.sum(-1) - 1).abs().max()) <= 4 * length * 2.2e-16 * size   # rows sum to one
    assert float((dense * (1 - eye)).min()) >= 0                                    # off-diagonal ≥ 0
    if s.causal:
        assert torch.equal(dense.triu(1), torch.zeros_like(dense))                   # no future entries
    if props.symmetric:
        assert torch.equal(dense, dense.transpose(-1, -2))                           # exactly
    torch.testing.assert_close(s.dense_heads(3 * z + 1), dense, rtol=0, atol=0)       # state-independent
    tol = 8 * (length + 2) * 2.2e-16 * size * float(z.abs().max())
    torch.testing.assert_close(s(z).detach(), blocks(s, z).detach(), rtol=0, atol=tol)
    torch.testing.assert_close(s.kernel(z).detach(), (s(z) - z).detach(), rtol=0, atol=tol)
    if s.heads == 1:
        torch.testing.assert_close(s.dense(z), dense[..., 0, :, :])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("params", [{}, {"causal": True}, {"symmetric": True}, {"heads": 3}])
@pytest.mark.parametrize("length", [1, 2, 3, 7, 30])
def test_kernel_matches_the_definition(kind: str, params: dict, length: int) -> None:
    if kind == "sequence_laplacian" and "symmetric" in params:
        params = {}
    if kind == "sequence_window":
        params = {**params, "window": 4}
    s = KernelExample(kind, tuple(params.items()), length, 0.0, seed=length).build()
    expected = oracle_kernel(s, length)
    np.testing.assert_allclose(s.kernel_matrices(length).detach().numpy(), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(s.row_sums(length).detach().numpy(), -np.diagonal(expected, axis1=1, axis2=2),
                               rtol=1e-13, atol=1e-15)


def test_laplacian_is_the_path_graph_laplacian_with_its_closed_form_spectrum() -> None:
    s = dp.diffusivity("sequence_laplacian", heads=2, init_rate=(0.8, 0.2), dtype=F64)
    alpha = s.rates().detach()
    torch.testing.assert_close(alpha, torch.tensor([0.4, 0.1], dtype=F64))       # 2α = init_rate
    length = 9
    path = torch.diag(torch.full((length - 1,), 1.0, dtype=F64), 1)
    path = path + path.T
    laplacian = torch.diag(path.sum(1)) - path
    k = s.kernel_matrices(length).detach()
    for h in range(2):
        torch.testing.assert_close(k[h], -alpha[h] * laplacian, rtol=0, atol=1e-15)
        closed = 4 * alpha[h] * torch.sin(math.pi * torch.arange(length, dtype=F64) / (2 * length)) ** 2
        torch.testing.assert_close(torch.linalg.eigvalsh(-k[h]), closed.sort().values, rtol=0, atol=1e-14)
    assert s.radius_bound().item() == pytest.approx(4 * float(alpha.max()))


def test_global_kernel_fft_against_the_dense_matrix_at_a_long_length() -> None:
    """L = 700: 2L − 1 = 1399, transformed at fft_length 1440 = 2⁵·3²·5 (no wrap-around), both heads."""
    s = KernelExample("sequence_global", (("heads", 2), ("scales", 3)), 700, 0.5, seed=3).build()
    z = torch.randn(2, 700, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    expected = blocks(s, z).detach()
    scale = float(s.kernel_matrices(700).detach().abs().sum(-1).max()) * float(z.abs().max())
    assert float((s(z).detach() - expected).abs().max()) <= 1e-13 * scale
    ones = torch.ones(1, 700, 4, dtype=F64)
    assert float(s.kernel(ones).detach().abs().max()) <= 1e-13 * scale                     # rows sum to zero, ends included


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1399, 2047, 4097])
def test_fft_length_is_the_smallest_5_smooth_number_above(n: int) -> None:
    from diffusion_pde.diffusivities.sequence_global import fft_length

    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1
    assert fft_length(n) == next(m for m in range(n, 4 * n + 2) if smooth(m))


# --------------------------------------------------------------------------- symmetries


def reach(s: PositionDiffusivity) -> tuple[int, int]:
    """How far a row's window reaches (into the past, into the future)."""
    return s.window, 0 if s.causal else s.window


@given(example=kernel_examples(min_length=1, max_length=16), before=st.integers(0, 6), after=st.integers(0, 6))
def test_window_kinds_are_shift_equivariant_away_from_the_boundaries(example: KernelExample, before: int,
                                                                     after: int) -> None:
    """Z placed inside a longer sequence [A; Z; B] (any A, B): the rows of Z whose window stays
    inside Z are the same, (S [A; Z; B])_{|A| + t} = (S Z)_t for past ≤ t < L − future."""
    s = example.build()
    if not s.properties.shift_equivariant:
        return  # sequence_global: see the next test
    z = example.state(s.heads)
    gen = torch.Generator().manual_seed(example.seed + 2)
    outer = torch.cat([torch.randn(2, before, s.heads, generator=gen, dtype=F64), z,
                       torch.randn(2, after, s.heads, generator=gen, dtype=F64)], dim=1)
    past, future = reach(s)
    inner = slice(past, max(past, example.length - future))
    shifted = slice(before + inner.start, before + inner.stop)
    torch.testing.assert_close(s(outer)[:, shifted], s(z)[:, inner], rtol=0, atol=1e-14)


@pytest.mark.parametrize("causal", [False, True])
def test_the_global_kernel_is_not_shift_equivariant(causal: bool) -> None:
    """Every row of the global kernel reaches the start of the sequence: a prefix changes it."""
    s = KernelExample("sequence_global", (("causal", causal),), 12, 0.0, seed=5).build()
    assert not s.properties.shift_equivariant
    z = torch.randn(12, 3, dtype=F64)
    outer = torch.cat([torch.randn(4, 3, dtype=F64), z])
    assert float((s(outer)[4:] - s(z)).detach().abs()[-1].max()) > 1e-6  # even the last row


@given(example=kernel_examples(min_length=3, max_length=16), shift=st.integers(1, 15))
def test_no_kind_is_permutation_equivariant(example: KernelExample, shift: int) -> None:
    """A rotation P of the positions (not a symmetry of a sequence with ends): S(PZ) ≠ P S(Z)."""
    s = example.build()
    length = example.length
    shift = 1 + (shift - 1) % (length - 1)
    perm = torch.roll(torch.arange(length), shift)
    z = example.state(s.heads)
    gap = float((s(z[:, perm]) - s(z)[:, perm]).abs().max())
    assert gap > 1e-6 * float(s.kernel(z).abs().max())


# --------------------------------------------------------------------------- bounds and energy


@given(example=kernel_examples(max_length=20))
def test_gershgorin_bound(example: KernelExample) -> None:
    """ρ(K_h) ≤ ρ̂(L) = 2 max r_t ≤ ρ̂(any length); the L-independent bound is reached (to 1e-12)
    by an interior row of a long sequence."""
    s = example.build()
    k = s.kernel_matrices(example.length).detach()
    rho = float(torch.linalg.eigvals(k).abs().max())
    bound = s.radius_bound(example.length).item()
    total = s.radius_bound().item()
    assert rho <= bound * (1 + 1e-12) and bound <= total * (1 + 1e-12)
    assert bound == pytest.approx(2 * float(k.diagonal(dim1=-2, dim2=-1).abs().max()), rel=1e-12)
    if s.name != "sequence_global":
        assert s.radius_bound(2 * s.window + 1).item() == pytest.approx(total, rel=1e-12)


@given(example=kernel_examples(symmetric=True, max_length=20))
def test_positional_dirichlet_energy_is_half_the_weighted_squared_differences(example: KernelExample) -> None:
    s = example.build()
    z = example.state(s.heads)
    k = torch.as_tensor(oracle_kernel(s, example.length))
    parts = z.unflatten(-1, (s.heads, -1))                                  # [B, L, H, c]
    diff = parts[:, :, None] - parts[:, None, :]                            # [B, t, j, H, c]
    off = k * (1 - torch.eye(example.length, dtype=F64))
    expected = 0.5 * torch.einsum("htj,btjhc->b", off, diff.square())
    torch.testing.assert_close(s.dirichlet_energy(z), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind, params", [("sequence_window", {}), ("sequence_global", {"causal": True}),
                                          ("sequence_laplacian", {"causal": True})])
def test_dirichlet_energy_needs_a_symmetric_kernel(kind: str, params: dict) -> None:
    s = dp.diffusivity(kind, dtype=F64, **params)
    with pytest.raises(ValueError, match=r"defined for symmetric kernels.*symmetric=True, causal=False"):
        s.dirichlet_energy(torch.zeros(3, 2, dtype=F64))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind, params", [("sequence_window", {"window": 2, "heads": 2}),
                                          ("sequence_window", {"window": 3, "symmetric": True}),
                                          ("sequence_laplacian", {"causal": True}),
                                          ("sequence_global", {"heads": 2, "scales": 2}),
                                          ("sequence_global", {"causal": True})])
@pytest.mark.parametrize("length", [1, 2, 6])
def test_gradients_against_finite_differences(kind: str, params: dict, length: int) -> None:
    s = KernelExample(kind, tuple(params.items()), length, 0.0, seed=1).build()
    z = torch.randn(2, length, 4, dtype=F64, requires_grad=True)
    v = torch.randn(2, length, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, v: s(z, v), (z, v))
    names, params_ = zip(*s.named_parameters())

    def of_params(*values):
        return torch.func.functional_call(s, dict(zip(names, values)), (z.detach(),))
    assert torch.autograd.gradcheck(of_params, tuple(p.detach().clone().requires_grad_() for p in params_))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_named(kind: str) -> None:
    s = dp.diffusivity(kind, heads=2)
    with pytest.raises(ValueError, match=r"3 channels of values must split into heads=2"):
        s(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"shape \[L, d\] or \[B, L, d\]"):
        s(torch.zeros(4))
    with pytest.raises(TypeError, match=r"float64 .* diffusivity\.to\(z\)"):
        s(torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"init_rate must be a number > 0 or a pair"):
        dp.diffusivity(kind, init_rate=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"heads must be a positive int"):
        dp.diffusivity(kind, heads=0)
    with pytest.raises(ValueError, match=r"needs z to know the sequence length"):
        dp.diffusivity(kind).dense()
    with pytest.raises(ValueError, match=r"heads=2 .*use dense_heads\(z\)"):
        s.dense(torch.zeros(5, 2))
    if kind != "sequence_laplacian":
        with pytest.raises(ValueError, match=r"cannot be symmetric: pass causal=True or symmetric=True"):
            dp.diffusivity(kind, causal=True, symmetric=True)


def test_kind_specific_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"window must be a positive int"):
        dp.diffusivity("sequence_window", window=0)
    with pytest.raises(ValueError, match=r"scales must be a positive int"):
        dp.diffusivity("sequence_global", scales=0)
    with pytest.raises(ValueError, match=r"max_scale .* must be a number >= 1"):
        dp.diffusivity("sequence_global", max_scale=0.5)
