"""Energy descent (the paper's main theorem): the registered checks pass, the layer energy and
τ* agree with brute force, and a broken premise (non-concave δ, a step beyond τ*) is reported."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import theory_checks.energy_descent as ed
from diffusion_pde import diffusivity, energy
from diffusion_pde.penalties import BUILT_IN, penalty
from theory_checks import Profile, registered_checks, run_check

CHECK_NAMES = [
    "energy_descent.majoriser_symbolic",
    "energy_descent.tau_star_positive",
    "energy_descent.steps_in_range_descend",
    "energy_descent.quadratic_tight",
    "energy_descent.trajectory_monotone",
]


def _state(n: int, d: int, seed: int, scale: float = 1.0, unit: bool = False) -> torch.Tensor:
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    return z / z.norm(dim=1, keepdim=True) if unit else z


# --- the registered checks ---------------------------------------------------------------------


def test_all_checks_registered_in_section() -> None:
    mine = {c.name: c for c in registered_checks() if c.section == "energy descent"}
    assert sorted(mine) == sorted(CHECK_NAMES)


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_check_passes_fast_profile(name: str) -> None:
    item = next(c for c in registered_checks() if c.name == name)
    result = run_check(item, Profile.fast())
    assert result.passed, (result.measure, result.details)
    assert result.value is not None and math.isfinite(result.value)
    assert result.measure


def test_derivation_coefficients() -> None:
    der = ed.derivation()
    lam, uu, ulu, zlu = der.invariants
    assert der.pair_factor == 2
    assert (der.quadratic - (uu + 2 * lam * ulu)).expand() == 0
    assert (der.linear - 4 * lam * zlu).expand() == 0
    assert all(ed._is_zero(r) for r in der.residuals.values())
    assert der.tau_star_fn(1.0, 2.0, 3.0, -4.0) == pytest.approx(16.0 / 8.0)


# --- energy() ------------------------------------------------------------------------------------


def _energy_loop(z: torch.Tensor, z_prev: torch.Tensor, delta, lam: float) -> float:
    pen = penalty(delta)
    n, d = z.shape
    total = sum(float(z[i, a] - z_prev[i, a]) ** 2 for i in range(n) for a in range(d))
    for i in range(n):
        for j in range(n):
            s = sum(float(z[i, a] - z[j, a]) ** 2 for a in range(d))
            total += lam * float(pen.value(torch.tensor(s, dtype=torch.float64)))
    return total


@pytest.mark.parametrize("delta", [*BUILT_IN, "callable"])
def test_energy_matches_double_loop(delta) -> None:
    unit = delta == "difformer"
    spec = (lambda s: torch.log1p(s) + 0.5 * torch.sqrt(s + 1.0)) if delta == "callable" else delta
    z = _state(7, 3, seed=1, unit=unit)
    z_prev = _state(7, 3, seed=2, unit=unit)
    for lam in (1e-3, 0.7, 50.0):
        got = float(energy(z, z_prev, spec, lam))
        assert got == pytest.approx(_energy_loop(z, z_prev, spec, lam), rel=1e-12, abs=1e-12)


def test_energy_batched_and_diagonal() -> None:
    z = torch.randn(3, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    zp = torch.randn(3, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out = energy(z, zp, "log", 2.0)
    assert out.shape == (3,)
    for b in range(3):
        assert float(out[b]) == pytest.approx(float(energy(z[b], zp[b], "log", 2.0)), rel=1e-14)
    # the diagonal i = j is included: for sqrt, δ(0) = √ε per node
    one = torch.zeros(1, 2, dtype=torch.float64)
    assert float(energy(one, one, "sqrt", 1.0)) == pytest.approx(math.sqrt(1e-6))


def test_energy_is_differentiable() -> None:
    z = _state(4, 2, seed=5).requires_grad_(True)
    energy(z, z.detach() + 0.1, "log", 1.0).backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())


def test_energy_errors() -> None:
    z = _state(4, 2, seed=0)
    with pytest.raises(ValueError, match="same shape"):
        energy(z, z[:3], "log")
    with pytest.raises(ValueError, match="shape"):
        energy(z[0], z[0], "log")
    for bad in (0.0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="lam"):
            energy(z, z, "log", bad)
    with pytest.raises(ValueError, match="defined for squared distances up to 4"):
        energy(10 * z, 10 * z, "difformer")
    with pytest.raises(ValueError, match="unknown penalty"):
        energy(z, z, "nope")


# --- admissible_step vs a brute-force line search on the surrogate -----------------------------


def _surrogate_loop(z: torch.Tensor, delta, lam: float):
    """h(τ) = ‖τU‖² + λ Σ_ij w_ij (‖z_i(τ) − z_j(τ)‖² − ‖z_i − z_j‖²), all by explicit loops."""
    pen = penalty(delta)
    zl = z.tolist()
    n, d = len(zl), len(zl[0])

    def sq(a, b):
        return sum((a[k] - b[k]) ** 2 for k in range(d))

    w = [[float(pen.derivative(torch.tensor(sq(zl[i], zl[j]), dtype=torch.float64))) for j in range(n)] for i in range(n)]
    u = []
    for i in range(n):
        row = sum(w[i])
        u.append([sum(w[i][j] * zl[j][k] for j in range(n)) / row - zl[i][k] for k in range(d)])

    def h(tau: float) -> float:
        zt = [[zl[i][k] + tau * u[i][k] for k in range(d)] for i in range(n)]
        fid = sum((tau * u[i][k]) ** 2 for i in range(n) for k in range(d))
        pair = sum(w[i][j] * (sq(zt[i], zt[j]) - sq(zl[i], zl[j])) for i in range(n) for j in range(n))
        return fid + lam * pair

    return h


def _line_search_root(h, grid: int = 5000) -> float:
    """The largest τ on a grid of (0, upper] with h(τ) ≤ 0 (upper doubled from 1 until h(upper)
    > 0), refined by bisection."""
    upper = 1.0
    while h(upper) <= 0:
        upper *= 2
        assert upper < 1e8, "h ≤ 0 up to τ = 1e8"
    taus = np.linspace(upper / grid, upper, grid)
    ok = [t for t in taus if h(t) <= 0]
    assert ok, "h > 0 on the whole grid"
    lo = max(ok)
    hi = lo + upper / grid
    assert h(hi) > 0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if h(mid) <= 0 else (lo, mid)
    return lo


@pytest.mark.parametrize("delta", list(BUILT_IN))
@pytest.mark.parametrize("lam", [0.01, 1.0, 20.0])
def test_admissible_step_matches_line_search(delta: str, lam: float) -> None:
    z = _state(6, 2, seed=11, scale=1.5, unit=delta == "difformer")
    h = _surrogate_loop(z, delta, lam)
    tau_star = ed.admissible_step(z, delta, lam)
    assert tau_star == pytest.approx(_line_search_root(h), rel=1e-8)
    # the library's surrogate agrees with the looped one (h(τ*) = 0 is a cancellation: compare
    # against the size of its terms, h(2τ*) = 2 c₂ τ*²)
    size = abs(h(2 * tau_star))
    for t in (0.3 * tau_star, tau_star, 1.7 * tau_star):
        assert ed.surrogate_gap(z, delta, lam, t) == pytest.approx(h(t), rel=1e-9, abs=1e-10 * size)


def test_admissible_step_inputs() -> None:
    z = _state(5, 3, seed=2)
    assert ed.admissible_step(z.numpy(), "log", 1.0) == ed.admissible_step(z, "log", 1.0)
    assert ed.admissible_step(z.float(), "log", 1.0) > 0
    assert ed.admissible_step(z[:1], "log", 1.0) == math.inf  # one node: a fixed point
    with pytest.raises(ValueError, match="lam"):
        ed.admissible_step(z, "log", 0.0)
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        ed.admissible_step(z[None], "log", 1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        ed.admissible_step(z, lambda s: -s, 1.0)


def test_quadratic_tau_star_closed_form() -> None:
    z = _state(9, 3, seed=4)
    for lam in (1e-3, 0.5, 1e2):
        assert ed.admissible_step(z, "quadratic", lam) == pytest.approx(4 * lam * 9 / (1 + 2 * lam * 9), rel=1e-12)


def test_descent_gap_is_the_real_energy_difference() -> None:
    z = _state(6, 2, seed=8)
    lam, tau = 0.3, 0.4
    s = diffusivity("energy", delta="log").dense(z)
    z_next = z + tau * (s @ z - z)
    expected = float(energy(z_next, z, "log", lam) - energy(z, z, "log", lam))
    assert ed.descent_gap(z, "log", lam, tau) == pytest.approx(expected, rel=1e-14)


# --- the checks can fail --------------------------------------------------------------------------


@pytest.mark.parametrize("broken", [lambda s: s * s, torch.exp], ids=["s^2", "exp"])
def test_non_concave_delta_is_a_violation(broken) -> None:
    z = _state(6, 2, seed=0)
    outcome = ed.verify_descent(broken, 0.5, z)
    assert outcome.passed is False
    assert "VIOLATION" in outcome.measure and "not concave" in outcome.measure
    assert "not concave" in outcome.details["concavity"]
    # the theorem's conclusion itself fails: at τ* (where h = 0) the energy goes up
    assert any("energy increased" in v for v in outcome.details["violations"])
    assert outcome.value > 0


@pytest.mark.parametrize("delta", list(BUILT_IN))
def test_concave_delta_passes_verify_descent(delta: str) -> None:
    z = _state(6, 2, seed=0, unit=delta == "difformer")
    outcome = ed.verify_descent(delta, 0.5, z, taus=(0.01, 0.1, 0.5, 0.9, 1.0) if delta != "difformer" else (0.1, 0.5))
    assert outcome.passed, outcome.details
    assert "concavity" not in outcome.details


def test_step_beyond_tau_star_is_a_violation() -> None:
    z = _state(7, 3, seed=6)
    lam = 0.2
    tau_star = ed.admissible_step(z, "quadratic", lam)
    assert ed.descent_gap(z, "quadratic", lam, 1.01 * tau_star) > 0
    outcome = ed.verify_descent("quadratic", lam, z, taus=(1.5,))
    assert outcome.passed is False
    assert "energy increased" in outcome.measure
    assert "concavity" not in outcome.details  # δ is fine: it is the step that is too long
    assert ed.verify_descent("quadratic", lam, z, taus=(1.0,)).passed
