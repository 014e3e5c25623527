r"""Diffusion along the positions of a sequence (Linear Diffusion Networks), as hypothesis properties.

A position kernel K (``sequence_laplacian``, ``sequence_window``, ``sequence_global``; the
diffusivity S = I + K) has non-negative off-diagonal weights and rows summing to zero. Then:

- ``sequence.constants_fixed_points``: K 𝟙 = 0, so a constant sequence Z = 𝟙cᵀ is a fixed point of
  the diffusion: F(Z) = SZ − Z = KZ = 0 (every kind, causal or not, boundaries included).
- ``sequence.symmetric_conserves_sum``: for symmetric K, 𝟙ᵀK = (K𝟙)ᵀ = 0, so d/dt Σ_t z_t = 0 and
  every Runge–Kutta step conserves Σ_t z_t (rk4 and Euler solves, any step).
- ``sequence.euler_stability_bound``: for symmetric K with spectrum in [−ρ, 0], Euler's factor
  1 + hλ has modulus ≤ 1 iff h ≤ 2/ρ. Measured with ρ = max |eig K| from ``dense()``
  (``eigvalsh``): at h = 0.98·2/ρ the norm never grows, at h = 1.02·2/ρ it grows by
  |1 − hρ| = 1.04 per step; Gershgorin's ρ̂ = 2 max_t r_t bounds ρ.
- ``sequence.dirichlet_nonincreasing``: for symmetric K, E(Z) = −⟨Z, KZ⟩ = ½ Σ K_tj ‖z_t − z_j‖²
  satisfies E(Z + hKZ) = Σ_k |λ_k| (1 + hλ_k)² c_k² ≤ E(Z) for 0 < h ≤ 2/ρ.
- ``sequence.stable_step_convex``: the learned step δt of :class:`diffusion_pde.stable_step.StableStep`
  (< 2/ρ̂_F) makes each Euler step of the LDN diffusion (any kernel, causal ones included, plus
  DIFFormer-s attention and a source term) a convex combination, so every channel stays within its
  initial [min, max]; no value of θ or of the kernel weights can leave that region.

Each property has per-example functions taking an explicit diffusivity, state and step, so that
tests feed inputs outside the hypotheses (a kernel whose rows do not sum to zero, a non-symmetric
kernel, a step beyond the bound) and watch them fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st

import solvers
from diffusion_pde import DiffusionField, Diffusivity
from diffusion_pde.diffusivities import PositionDiffusivity, Superposition, diffusivity
from diffusion_pde.stable_step import StableStep

from ._registry import Outcome, Profile, check, for_all
from .structure import euler_states, max_principle_excursion

__all__ = [
    "KernelExample",
    "constants_residual",
    "convex_example",
    "dirichlet_example",
    "dirichlet_steps",
    "euler_growth",
    "kernel_examples",
    "kernel_matrix",
    "stability_example",
    "sum_drift",
    "sum_example",
]

SECTION = "sequence"
F64 = torch.float64
RELATIVE_TOL = 1e-12
KINDS = ("sequence_laplacian", "sequence_window", "sequence_global")


# ============================================================================================
# random position kernels


@dataclass(frozen=True)
class KernelExample:
    """A position kernel as plain data: ``kind``, its constructor ``params`` (as pairs), the
    sequence ``length``, the weights' scale 10^``log_scale`` and a ``seed`` for weights and states."""

    kind: str
    params: tuple[tuple[str, Any], ...]
    length: int
    log_scale: float
    seed: int

    def build(self) -> PositionDiffusivity:
        """The kernel in float64 with random weights: each weight (window) or amplitude (global)
        10^log_scale · U(0.05, 1), decay lengths U(1, max(2, L)) (torch's global RNG untouched)."""
        s = diffusivity(self.kind, dtype=F64, **dict(self.params))
        gen = torch.Generator().manual_seed(self.seed)
        scale = 10.0 ** self.log_scale
        with torch.no_grad():
            for name, p in s.named_parameters():
                u = torch.rand(p.shape, generator=gen, dtype=F64)
                if name == "log_decay":
                    p.copy_(-torch.log(1 + u * (max(2, self.length) - 1)))
                else:
                    target = scale * (0.05 + 0.95 * u)
                    p.copy_(target + torch.log(-torch.expm1(-target)))  # softplus⁻¹
        return s

    def state(self, channels: int, batch: int = 2) -> torch.Tensor:
        """A standard-normal [batch, L, channels] float64 state drawn from the seed."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        return torch.randn(batch, self.length, channels, generator=gen, dtype=F64)


@st.composite
def kernel_examples(draw: st.DrawFn, *, symmetric: bool = False, heads: tuple[int, ...] = (1, 2),
                    min_length: int = 1, max_length: int = 24) -> KernelExample:
    """Random position kernels: every kind, causal or not, tied or not, 1 or 2 heads, windows
    1–5, 1–3 scales; ``symmetric`` keeps only symmetric ones (non-causal, tied)."""
    kind = draw(st.sampled_from(KINDS), label="kind")
    causal = False if symmetric else draw(st.booleans(), label="causal")
    params: dict[str, Any] = {"heads": draw(st.sampled_from(heads), label="heads"), "causal": causal}
    if kind != "sequence_laplacian":
        params["symmetric"] = True if symmetric else (not causal and draw(st.booleans(), label="symmetric"))
    if kind == "sequence_window":
        params["window"] = draw(st.integers(1, 5), label="window")
    if kind == "sequence_global":
        params["scales"] = draw(st.integers(1, 3), label="scales")
    length = draw(st.integers(min_length, max_length), label="length")
    log_scale = draw(st.floats(-2.0, 1.0), label="log10 weight scale")
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    return KernelExample(kind, tuple(sorted(params.items())), length, log_scale, seed)


def kernel_matrix(s: Diffusivity, length: int) -> torch.Tensor:
    """K = S − I as [H, L, L] (float64): a position kernel's ``kernel_matrices``, else from ``dense``."""
    if isinstance(s, PositionDiffusivity):
        return s.kernel_matrices(length).detach().to(F64)
    dense = s.dense(torch.zeros(length, 1, dtype=F64)).detach().to(F64)
    return (dense - torch.eye(length, dtype=F64))[None]


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.4g}") for k, v in values.items()}


def _outcome(failure: dict[str, Any] | None, seen: dict[str, float], measure: str, value: float) -> Outcome:
    details: dict[str, Any] = _rounded(seen)
    if failure:
        details.update(failure)
    return Outcome(failure is None, measure, value, details)


# ============================================================================================
# constants are fixed points


def constants_residual(s: Diffusivity, constant: torch.Tensor, length: int, batch: int = 2) -> float:
    """max |F(Z)| for the constant sequence Z = 𝟙cᵀ ([batch, L, d], μ = 0), from the matrix K
    (``kernel_matrix``) and from the O(L) / FFT product ``S(Z) − Z`` alike, relative to
    max(1, max|c|) · max(1, ‖K‖∞)."""
    k = kernel_matrix(s, length)
    z = constant.to(F64).expand(batch, length, -1).contiguous()
    with torch.no_grad():
        blocks = z.unflatten(-1, (k.shape[0], -1))                              # [B, L, H, c]
        by_matrix = torch.einsum("htj,bjhc->bthc", k, blocks)
        by_product = DiffusionField(s)(torch.zeros((), dtype=F64), z)
    scale = max(1.0, float(constant.abs().max())) * max(1.0, float(k.abs().sum(-1).max()) if length else 1.0)
    worst = max((float(x.abs().max()) for x in (by_matrix, by_product) if x.numel()), default=0.0)
    return worst / scale


@st.composite
def _constant_cases(draw: st.DrawFn) -> dict[str, Any]:
    example = draw(kernel_examples(min_length=1, max_length=40))
    heads = dict(example.params)["heads"]
    width = heads * draw(st.integers(1, 2), label="channels per head")
    values = draw(st.lists(st.floats(-5.0, 5.0), min_size=width, max_size=width), label="c")
    return {"kernel": example, "constant": values}


@check(
    "sequence.constants_fixed_points",
    SECTION,
    "Every position kernel (sequence_laplacian, sequence_window, sequence_global; causal or not, tied or not, "
    "1-2 heads, L = 1..40, weights over three decades) has rows summing to zero, boundaries included, so a "
    "constant sequence Z = 1 c^T is a fixed point of the diffusion: F(Z) = S Z - Z = K Z = 0, by the matrix and "
    "by the O(L) / FFT product (relative to max(1,|c|) max(1, ||K||_inf)).",
)
def constants_fixed_points(profile: Profile) -> Outcome:
    seen = {"largest relative |F(1c^T)|": 0.0}

    def prop(case: dict[str, Any]) -> None:
        example = case["kernel"]
        value = constants_residual(example.build(), torch.tensor(case["constant"], dtype=F64), example.length)
        seen["largest relative |F(1c^T)|"] = max(seen["largest relative |F(1c^T)|"], value)
        assert value <= RELATIVE_TOL, f"constant sequence is not a fixed point: relative |F| = {value:.3e}"

    failure = for_all(_constant_cases(), prop, profile)
    value = seen["largest relative |F(1c^T)|"]
    return _outcome(failure, seen, f"max |F(1c^T)| {value:.1e} (relative) over {profile.examples} kernels", value)


# ============================================================================================
# a symmetric kernel conserves the sum over positions


def sum_drift(s: Diffusivity, z0: torch.Tensor, t1: float, n_steps: int, method: str = "rk4") -> float:
    """max over the steps k of |Σ_t z_t(k) − Σ_t z_t(0)| / max_{j≤k} Σ_t |z_t(j)| along a fixed-step
    solve of the diffusion dZ/dt = (S − I)Z (relative to the largest state so far: a step beyond
    Euler's bound makes the states grow, and their round-off with them, without breaking the law)."""
    states = [z0]
    with torch.no_grad():
        solvers.solve(DiffusionField(s), z0, t1, method=method, n_steps=n_steps,
                      callback=lambda t, z: states.append(z.detach().clone()))
    total = z0.sum(dim=-2)
    worst, scale = 0.0, 0.0
    for z in states:
        scale = max(scale, float(z.abs().sum(dim=-2).max()))
        worst = max(worst, float((z.sum(dim=-2) - total).abs().max()) / scale)
    return worst


@st.composite
def _sum_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {"kernel": draw(kernel_examples(symmetric=True, min_length=2)),
            "method": draw(st.sampled_from(["euler", "rk4"]), label="method"),
            "t1": draw(st.floats(0.1, 5.0), label="t1"), "n_steps": draw(st.integers(1, 20), label="n_steps")}


def sum_example(case: dict[str, Any]) -> float:
    """:func:`sum_drift` for the case (a state of 2 channels per head)."""
    example = case["kernel"]
    s = example.build()
    return sum_drift(s, example.state(2 * s.heads), case["t1"], case["n_steps"], case["method"])


@check(
    "sequence.symmetric_conserves_sum",
    SECTION,
    "A symmetric position kernel (non-causal, tied weights) has zero column sums too, 1^T K = (K 1)^T = 0, so "
    "d/dt sum_t z_t = 0: Euler and rk4 solves of any step conserve sum_t z_t (drift <= 1e-12 relative to "
    "the largest sum_t |z_t| so far).",
)
def symmetric_conserves_sum(profile: Profile) -> Outcome:
    seen = {"largest drift": 0.0}

    def prop(case: dict[str, Any]) -> None:
        drift = sum_example(case)
        seen["largest drift"] = max(seen["largest drift"], drift)
        assert drift <= RELATIVE_TOL, f"sum over positions drifted by {drift:.3e} (relative)"

    failure = for_all(_sum_cases(), prop, profile)
    value = seen["largest drift"]
    return _outcome(failure, seen, f"largest drift of sum_t z_t {value:.1e} (relative)", value)


# ============================================================================================
# Euler is stable exactly up to 2/rho(K)


def euler_growth(s: Diffusivity, z0: torch.Tensor, tau: float, steps: int) -> dict[str, float]:
    """Along ``steps`` Euler steps of size τ: ``max ratio`` = max_k ‖Z_k‖/‖Z_0‖ and ``late growth``
    = (‖Z_n‖/‖Z_{n/2}‖)^{2/n}, the asymptotic factor per step."""
    norms = [float(z.norm()) for z in euler_states(s, z0, tau, steps)]
    half = steps // 2
    late = (norms[-1] / norms[half]) ** (1.0 / (steps - half)) if norms[half] > 0 else 0.0
    return {"max ratio": max(norms) / norms[0], "late growth": late}


def stability_example(case: dict[str, Any], inside: float = 0.98, outside: float = 1.02,
                      steps: int = 120) -> dict[str, float]:
    """For a symmetric one-head kernel: ρ = max|eig K|, and Euler from a random state plus the
    top eigenvector at h = inside·2/ρ and h = outside·2/ρ. Returns ``rho``, the Gershgorin bound
    ``rho_hat`` (≥ rho), ``inside max ratio`` (≤ 1 when stable), ``outside growth`` (measured
    per step) and ``predicted`` |1 − h ρ| at the outside step."""
    example = case["kernel"]
    s = example.build()
    k = kernel_matrix(s, example.length)[0]
    eigenvalues, vectors = torch.linalg.eigh(k)
    top = int(eigenvalues.abs().argmax())
    rho = float(eigenvalues.abs()[top])
    z0 = example.state(2, batch=1)[0] + vectors[:, top, None]
    inner = euler_growth(s, z0, inside * 2 / rho, steps)
    outer = euler_growth(s, z0, outside * 2 / rho, steps)
    return {"rho": rho, "rho_hat": s.radius_bound(example.length).item(), "inside max ratio": inner["max ratio"],
            "outside growth": outer["late growth"], "predicted": abs(1 - outside * 2)}


@check(
    "sequence.euler_stability_bound",
    SECTION,
    "For a symmetric position kernel K (spectrum in [-rho, 0], rho = max|eig K| from dense() by eigvalsh), "
    "explicit Euler is stable exactly up to h = 2/rho: at h = 0.98*2/rho the norm never grows "
    "(max ||Z_k||/||Z_0|| <= 1 + 1e-12), at h = 1.02*2/rho it grows by |1 - h rho| = 1.04 per step; "
    "Gershgorin's rho_hat = 2 max_t r_t >= rho.",
)
def euler_stability_bound(profile: Profile) -> Outcome:
    seen = {"largest inside ratio": 0.0, "smallest outside growth": math.inf, "largest rho / rho_hat": 0.0}

    def prop(case: dict[str, Any]) -> None:
        m = stability_example(case)
        seen["largest inside ratio"] = max(seen["largest inside ratio"], m["inside max ratio"])
        seen["smallest outside growth"] = min(seen["smallest outside growth"], m["outside growth"])
        seen["largest rho / rho_hat"] = max(seen["largest rho / rho_hat"], m["rho"] / m["rho_hat"])
        assert m["inside max ratio"] <= 1 + RELATIVE_TOL, f"Euler grew inside the bound: {m}"
        assert m["outside growth"] > 1 and m["outside growth"] >= 1 + 0.5 * (m["predicted"] - 1), (
            f"Euler did not grow beyond the bound: {m}")
        assert m["rho"] <= m["rho_hat"] * (1 + RELATIVE_TOL), f"Gershgorin bound below the spectral radius: {m}"

    cases = st.fixed_dictionaries({"kernel": kernel_examples(symmetric=True, heads=(1,), min_length=2)})
    failure = for_all(cases, prop, profile)
    return _outcome(failure, seen, f"inside 0.98*2/rho: max growth {seen['largest inside ratio']:.12g}; outside "
                    f"1.02*2/rho: growth/step >= {seen['smallest outside growth']:.4f} (predicted 1.04)",
                    seen["smallest outside growth"])


# ============================================================================================
# the positional Dirichlet energy does not increase inside the bound


def dirichlet_steps(s: PositionDiffusivity, z0: torch.Tensor, tau: float, steps: int) -> dict[str, Any]:
    """The positional Dirichlet energies E_0..E_K along K Euler steps of size τ, with ``increase``
    = max_k (E_{k+1} − E_k) / E_0 (≤ 0 when E never increases)."""
    with torch.no_grad():
        energies = [float(s.dirichlet_energy(z).sum()) for z in euler_states(s, z0, tau, steps)]
    scale = energies[0] if energies[0] > 0 else 1.0
    return {"energies": energies, "increase": max((b - a) / scale for a, b in zip(energies, energies[1:]))}


@st.composite
def _dirichlet_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {"kernel": draw(kernel_examples(symmetric=True, heads=(1,), min_length=2)),
            "fraction": draw(st.one_of(st.just(1.0), st.floats(0.01, 1.0)), label="tau / (2/rho)"),
            "steps": draw(st.integers(1, 8), label="steps")}


def dirichlet_example(case: dict[str, Any], factor: float = 1.0) -> dict[str, Any]:
    """:func:`dirichlet_steps` at τ = factor · fraction · 2/ρ from a random state plus the top eigenvector."""
    example = case["kernel"]
    s = example.build()
    eigenvalues, vectors = torch.linalg.eigh(kernel_matrix(s, example.length)[0])
    top = int(eigenvalues.abs().argmax())
    z0 = example.state(2, batch=1)[0] + vectors[:, top, None]
    tau = factor * case["fraction"] * 2 / float(eigenvalues.abs()[top])
    return dirichlet_steps(s, z0, tau, case["steps"])


@check(
    "sequence.dirichlet_nonincreasing",
    SECTION,
    "For a symmetric position kernel, the positional Dirichlet energy E(Z) = -<Z, K Z> = 1/2 sum K_tj ||z_t - z_j||^2 "
    "does not increase along Euler steps with 0 < h <= 2/rho(K): E(Z + hKZ) = sum_k |l_k| (1 + h l_k)^2 c_k^2 "
    "(increase <= 1e-12 E_0).",
)
def dirichlet_nonincreasing(profile: Profile) -> Outcome:
    seen = {"largest increase / E_0": -math.inf}

    def prop(case: dict[str, Any]) -> None:
        m = dirichlet_example(case)
        seen["largest increase / E_0"] = max(seen["largest increase / E_0"], m["increase"])
        assert m["increase"] <= RELATIVE_TOL, f"the positional Dirichlet energy increased: {m['energies']}"

    failure = for_all(_dirichlet_cases(), prop, profile)
    value = seen["largest increase / E_0"]
    return _outcome(failure, seen, f"largest increase {value:.1e} E_0 (steps up to 2/rho)", value)


# ============================================================================================
# the learned step keeps every Euler step a convex combination


@st.composite
def _convex_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {"kernel": draw(kernel_examples(min_length=2)),
            "attention": draw(st.booleans(), label="attention"),
            "source_weight": draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)), label="mu"),
            "theta": draw(st.floats(-5.0, 40.0), label="theta"),
            "steps": draw(st.integers(1, 6), label="steps")}


def convex_example(case: dict[str, Any], factor: float = 1.0) -> float:
    """The worst excursion of a channel from its initial [min, max] along Euler steps of
    factor · δt, δt the :class:`StableStep` of the LDN field (kernel, with DIFFormer-s attention
    when asked, source weight μ) at θ = ``theta``."""
    example = case["kernel"]
    kernel = example.build()
    width = 2 * kernel.heads
    parts: list[Diffusivity] = [kernel]
    if case["attention"]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(example.seed)
            parts.append(diffusivity("difformer_s", in_channels=width, dtype=F64))
    s = Superposition(parts)
    field = DiffusionField(s, source_weight=case["source_weight"])
    step = StableStep(dtype=F64)
    with torch.no_grad():
        step.theta.fill_(case["theta"])
        tau = factor * float(step(field, example.length))
    return max_principle_excursion(s, example.state(width, batch=1)[0], tau, case["steps"], case["source_weight"])


@check(
    "sequence.stable_step_convex",
    SECTION,
    "The learned step delta_t = min(1, 2/rho_hat_F) sigmoid(theta) (1 - margin) (StableStep; rho_hat_F the Gershgorin "
    "bound of the field's linear part) makes every Euler step of the LDN diffusion K + (S_attn - I) (any kernel, "
    "causal ones included, with or without DIFFormer-s attention, source weight mu in [0, 1]) a convex "
    "combination: each channel stays within its initial [min, max], for every theta (worst excursion <= 1e-12).",
)
def stable_step_convex(profile: Profile) -> Outcome:
    seen = {"worst excursion": 0.0}

    def prop(case: dict[str, Any]) -> None:
        excursion = convex_example(case)
        seen["worst excursion"] = max(seen["worst excursion"], excursion)
        assert excursion <= RELATIVE_TOL, f"a channel left its initial range by {excursion:.3e}"

    failure = for_all(_convex_cases(), prop, profile)
    value = seen["worst excursion"]
    return _outcome(failure, seen, f"worst excursion {value:.1e} over {profile.examples} LDN fields", value)
