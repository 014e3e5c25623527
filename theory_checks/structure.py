r"""Structural properties of the diffusion dZ/dt = (1 − μ)(S Z − Z) + μ(Z⁰ − Z), as hypothesis properties.

- ``structure.constants_fixed_points``: row-stochastic S ⇒ F(1cᵀ) = 0 (μ = 0).
- ``structure.maximum_principle``: S ≥ 0 row-stochastic, τ ≤ 1 ⇒ an Euler step is a convex
  combination of rows (and of Z⁰), so every channel stays in its initial [min, max].
- ``structure.dirichlet_nonincreasing``: S self-adjoint in a node measure with spectrum in (−1, 1]
  (``gcn``, ``random_walk`` on undirected graphs) and τ ≤ 1 ⇒ the Dirichlet energy
  E(Z) = ⟨Z, (I − S)Z⟩_m does not increase along Euler steps: with L = I − S,
  E(Z − τLZ) = Σ_k λ_k (1 − τλ_k)² c_k² and |1 − τλ_k| ≤ 1 for λ_k ∈ [0, 2), τ ≤ 1.
- ``structure.oversmoothing_rate``: without source on a connected undirected graph (``gcn``),
  E(t) = Σ_k λ_k c_k² e^{−2λ_k t} ≤ e^{−2γt} E(0), γ = the spectral gap of L, and E(t) → 0.
- ``structure.source_bound``: with μ > 0 each eigencomponent is
  c_k(t) = c_k(0)[f_k + (1 − f_k)e^{−(μ + (1−μ)λ_k)t}], f_k = μ/(μ + (1−μ)λ_k) ≥ f_min, so
  E(Z(t)) ≥ f_min² E(Z⁰) with f_min = μ/(μ + (1−μ)λ_max): the energy stays away from 0.

Each property has a per-example function (``*_example``) taking an explicit diffusivity, state and
step so that tests can feed it inputs outside the hypotheses (τ > 1, a negative entry, a
non-row-stochastic S, no source) and watch it fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from hypothesis import strategies as st
from torch_geometric.data import Data

import solvers
from diffusion_pde import DiffusionField, Diffusivity, available_diffusivities, dirichlet_energy
from diffusion_pde.diffusivities import diffusivity_for

from ._registry import Outcome, Profile, check, for_all

__all__ = [
    "GraphExample",
    "build",
    "connected_cases",
    "constant_cases",
    "constants_example",
    "constants_residual",
    "dirichlet_cases",
    "dirichlet_decrease",
    "dirichlet_example",
    "euler_states",
    "graph_examples",
    "max_principle_cases",
    "max_principle_example",
    "max_principle_excursion",
    "oversmoothing_example",
    "row_stochastic_diffusivities",
    "source_bound_example",
    "source_cases",
    "spectrum",
]

F64 = torch.float64
EXCURSION_TOL = 1e-12
RELATIVE_TOL = 1e-12


# ============================================================================================
# random graphs and states


@dataclass(frozen=True)
class GraphExample:
    """A graph as plain data (so a counterexample prints legibly): ``edges`` (source, target),
    ``weights`` (one per edge, or None), and a ``seed`` for states and learned weights."""

    num_nodes: int
    edges: tuple[tuple[int, int], ...]
    weights: tuple[float, ...] | None
    seed: int

    def data(self) -> Data:
        """The graph as a PyG ``Data`` (``edge_index``, ``num_nodes``, ``edge_weight`` if weighted)."""
        edge_index = torch.tensor(self.edges, dtype=torch.long).reshape(-1, 2).t().contiguous()
        data = Data(edge_index=edge_index, num_nodes=self.num_nodes)
        if self.weights is not None:
            data.edge_weight = torch.tensor(self.weights, dtype=F64)
        return data

    def state(self, channels: int, scale: float = 1.0) -> torch.Tensor:
        """A standard-normal [N, channels] float64 state times ``scale``, drawn from the seed."""
        gen = torch.Generator().manual_seed(self.seed)
        return scale * torch.randn(self.num_nodes, channels, generator=gen, dtype=F64)


@st.composite
def graph_examples(draw: st.DrawFn, *, undirected: bool = False, connected: bool = False, min_nodes: int = 2,
                   max_nodes: int = 10) -> GraphExample:
    """Random small graphs with ≥ 1 edge, which may contain isolated nodes, self-loops and duplicate
    edges: directed by default; ``undirected`` (each edge in both directions with one weight);
    ``connected`` (undirected: a random spanning tree plus extra edges). Weighted (in [0.1, 3]) or not."""
    n = draw(st.integers(min_nodes, max_nodes), label="num_nodes")
    node = st.integers(0, n - 1)
    pairs: list[tuple[int, int]] = []
    if connected:
        pairs += [(draw(st.integers(0, v - 1), label=f"tree parent of {v}"), v) for v in range(1, n)]
    pairs += draw(st.lists(st.tuples(node, node), min_size=0 if connected else 1, max_size=2 * n), label="edges")
    if not connected and pairs and draw(st.booleans(), label="duplicate an edge"):
        pairs.append(draw(st.sampled_from(pairs)))
    weighted = draw(st.booleans(), label="weighted")
    weights = [draw(st.floats(0.1, 3.0), label="weight") for _ in pairs] if weighted else None
    if undirected or connected:
        edges = [e for a, b in pairs for e in (((a, b),) if a == b else ((a, b), (b, a)))]
        if weights is not None:
            weights = [w for (a, b), w in zip(pairs, weights) for _ in range(1 if a == b else 2)]
    else:
        edges = pairs
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    return GraphExample(n, tuple(edges), None if weights is None else tuple(weights), seed)


def euler_states(s: Diffusivity, z0: torch.Tensor, tau: float, steps: int,
                 source_weight: float = 0.0) -> list[torch.Tensor]:
    """[Z⁰, Z¹, …, Z^K]: K explicit Euler steps of size τ of the diffusion field, via :func:`solvers.solve`."""
    field = DiffusionField(s, source_weight=source_weight).set_initial_state(z0)
    states = [z0]
    with torch.no_grad():
        solvers.solve(field, z0, t1=tau * steps, method="euler", n_steps=steps,
                      callback=lambda t, z: states.append(z.detach().clone()))
    return states


def build(name: str, example: GraphExample, channels: int, **params: Any) -> Diffusivity:
    """``diffusivity_for(name, graph=Data, in_channels=channels, dtype=float64, **params)``, its learned
    weights drawn from the example's seed (torch's global generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(example.seed)
        return diffusivity_for(name, graph=example.data(), in_channels=channels, dtype=F64, **params)


def row_stochastic_diffusivities(example: GraphExample, channels: int, *, nonnegative: bool = False,
                                 energy_delta: str = "difformer") -> dict[str, Diffusivity]:
    """Every registered diffusivity that declares ``row_stochastic`` (and ``nonnegative`` when asked)
    once built for this graph, plus ``mix`` of two row-stochastic parts (its default mixes in
    ``gcn``, which is not row-stochastic). ``energy`` gets the penalty ``energy_delta``."""
    out: dict[str, Diffusivity] = {}
    for name in available_diffusivities():
        s = build(name, example, channels, **({"delta": energy_delta} if name == "energy" else {}))
        if s.properties.row_stochastic and (s.properties.nonnegative or not nonnegative):
            out[name] = s
    mix = build("mix", example, channels, first=build("difformer_s", example, channels),
                 second=build("random_walk", example, channels), weight=0.3)
    out["mix(difformer_s, random_walk)"] = mix
    return out


def spectrum(s: Diffusivity) -> torch.Tensor:
    """The eigenvalues of I − S (ascending) for a symmetric S; for ``random_walk`` (self-adjoint in
    the measure m = d̃) those of the similar matrix I − M^{1/2} S M^{-1/2}."""
    dense = s.dense().to(F64)
    measure = s.node_measure()
    if measure is not None:
        root = measure.to(F64).sqrt()
        dense = root[:, None] * dense / root[None, :]
    dense = 0.5 * (dense + dense.T)
    return torch.linalg.eigvalsh(torch.eye(dense.shape[0], dtype=F64) - dense)




def _rounded(values: dict[str, float]) -> dict[str, float]:
    """Measured numbers for a report: 4 significant digits."""
    return {k: float(f"{v:.4g}") for k, v in values.items()}


# ============================================================================================
# constants are fixed points of row-stochastic S


def constants_residual(s: Diffusivity, constant: torch.Tensor, num_nodes: int) -> float:
    """max |F(Z)| / max(1, max|c|) for the constant state Z = 1 cᵀ (μ = 0), with S Z formed from
    the matrix S itself (``dense``) where it has one: the statement is about S. The O(N) product
    of ``difformer_s`` agrees with it to round-off times the conditioning of its denominator
    N + q̂ᵀΣk̂, which for a constant state with q̂ ≈ −k̂ is near 0 (tested in the diffusivity tests)."""
    z = constant.to(F64).expand(num_nodes, -1).contiguous()
    with torch.no_grad():
        try:
            f = s.dense(z) @ z - z
        except (ValueError, NotImplementedError):   # concat heads: no single N×N matrix
            f = DiffusionField(s)(torch.zeros((), dtype=F64), z)
    return float(f.abs().max()) / max(1.0, float(constant.abs().max()))


# States have at least 2 channels and constants are away from 0: DIFFormer-s normalises q and k per
# row, which is undefined for a zero row (Z = 0 gives NaN), and with one channel (d_k = 1) its kernel
# 1 + q̂ᵀk̂ is 0 or 2, so a whole row of S can be 0/0 (the library then returns NaN or Inf). The
# properties are about S where it is defined.
CHANNELS = st.sampled_from([2, 4])
# Euler step sizes in (0, 1]: τ = 1 (the layer) and a spread of smaller ones (not denormal tiny ones).
TAUS = st.one_of(st.just(1.0), st.floats(0.05, 1.0))


@st.composite
def constant_cases(draw: st.DrawFn) -> dict[str, Any]:
    example = draw(graph_examples())
    channels = draw(CHANNELS, label="channels")
    magnitudes = draw(st.lists(st.floats(0.1, 5.0), min_size=channels, max_size=channels), label="|c|")
    signs = draw(st.lists(st.sampled_from([1.0, -1.0]), min_size=channels, max_size=channels), label="sign c")
    return {"graph": example, "channels": channels, "constant": [m * s for m, s in zip(magnitudes, signs)]}


def constants_example(case: dict[str, Any], diffusivities: Callable[..., dict[str, Diffusivity]] | None = None,
                      ) -> dict[str, float]:
    """:func:`constants_residual` for every diffusivity that ``diffusivities(graph, channels)``
    returns (default :func:`row_stochastic_diffusivities`)."""
    example, channels = case["graph"], case["channels"]
    constant = torch.tensor(case["constant"], dtype=F64)
    diffusivities = diffusivities or row_stochastic_diffusivities
    return {name: constants_residual(s, constant, example.num_nodes)
            for name, s in diffusivities(example, channels).items()}


def _worst_per_diffusivity(cases: Any, example: Any, tol: float, complaint: str,
                           profile: Profile) -> tuple[dict[str, Any] | None, dict[str, float], float]:
    """Run ``example(case) -> {diffusivity: value}`` over the cases, keeping the worst value per
    diffusivity; an example fails when any value exceeds ``tol``. Returns (failure, worst, max)."""
    worst: dict[str, float] = {}

    def prop(case: dict[str, Any]) -> None:
        values = example(case)
        for name, value in values.items():
            worst[name] = max(worst.get(name, 0.0), value)
        bad = {name: value for name, value in values.items() if not value <= tol}
        assert not bad, f"{complaint} {bad}"

    failure = for_all(cases, prop, profile)
    return failure, worst, max(worst.values(), default=float("nan"))


@check(
    "structure.constants_fixed_points",
    "structure",
    "For every diffusivity that declares row_stochastic (identity, random_walk, gat, transformer, difformer_s, "
    "difformer_a, energy, and mix of two such), constant states Z = 1 c^T are fixed points of the pure "
    "diffusion: F(Z) = S Z - Z = 0 (mu = 0), on random directed graphs with isolated nodes and self-loops.",
)
def constants_fixed_points(profile: Profile) -> Outcome:
    failure, worst, value = _worst_per_diffusivity(
        constant_cases(), constants_example, RELATIVE_TOL,
        "constant state is not a fixed point: max |F| / max(1, |c|) =", profile)
    details: dict[str, Any] = {"max |F| / max(1, |c|) per diffusivity": _rounded(worst)}
    if failure:
        details.update(failure)
    return Outcome(failure is None and value <= RELATIVE_TOL,
                   f"max |F(1c^T)| {value:.1e} (relative to max(1, |c|)) over {len(worst)} diffusivities",
                   value, details)


# ============================================================================================
# discrete maximum principle


def max_principle_excursion(s: Diffusivity, z0: torch.Tensor, tau: float, steps: int,
                            source_weight: float = 0.0) -> float:
    """The largest amount by which any channel of Z^k (k ≤ K Euler steps) leaves its initial
    [min_i Z⁰_ic, max_i Z⁰_ic] (0 when it never does)."""
    low, high = z0.min(dim=-2, keepdim=True).values, z0.max(dim=-2, keepdim=True).values
    worst = 0.0
    for z in euler_states(s, z0, tau, steps, source_weight):
        worst = max(worst, float((z - high).max()), float((low - z).max()))
    return worst


@st.composite
def max_principle_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "graph": draw(graph_examples()),
        "channels": draw(CHANNELS, label="channels"),
        "scale": draw(st.sampled_from([0.1, 1.0, 3.0]), label="state scale"),
        "tau": draw(TAUS, label="tau"),
        "steps": draw(st.integers(1, 6), label="steps"),
        "source_weight": draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)), label="mu"),
    }


def max_principle_example(case: dict[str, Any]) -> dict[str, float]:
    """:func:`max_principle_excursion` for every non-negative row-stochastic diffusivity on the case
    (``energy`` with δ = log, which is defined at every distance)."""
    example = case["graph"]
    z0 = example.state(case["channels"], case["scale"])
    return {name: max_principle_excursion(s, z0, case["tau"], case["steps"], case["source_weight"])
            for name, s in row_stochastic_diffusivities(example, case["channels"], nonnegative=True,
                                                        energy_delta="log").items()}


@check(
    "structure.maximum_principle",
    "structure",
    "Discrete maximum principle: for non-negative row-stochastic S (every such registered diffusivity, "
    "state-dependent ones included) and Euler steps with 0 < tau <= 1 (source weight mu in [0, 1]), "
    "Z^{k+1} = (1 - tau) Z^k + tau (1 - mu) S Z^k + tau mu Z^0 is a convex combination, so each channel "
    "stays within its initial [min, max] along the trajectory (worst excursion <= 1e-12).",
)
def maximum_principle(profile: Profile) -> Outcome:
    failure, worst, value = _worst_per_diffusivity(
        max_principle_cases(), max_principle_example, EXCURSION_TOL, "a channel left its initial range by", profile)
    details: dict[str, Any] = {"worst excursion per diffusivity": _rounded(worst)}
    if failure:
        details.update(failure)
    return Outcome(failure is None and value <= EXCURSION_TOL,
                   f"worst excursion {value:.1e} over {len(worst)} diffusivities", value, details)


# ============================================================================================
# Dirichlet energy does not increase along Euler steps with tau <= 1


def dirichlet_decrease(s: Diffusivity, z0: torch.Tensor, tau: float, steps: int) -> dict[str, Any]:
    """The Dirichlet energies E_0, …, E_K (:func:`diffusion_pde.dirichlet_energy`) along K Euler
    steps of size τ of the pure diffusion (μ = 0), with ``increase`` = max_k (E_{k+1} − E_k) / E_0
    (≤ 0 when the energy never increases) and ``decrease ratio`` = min_k (E_k − E_{k+1}) / E_k over
    the steps with E_k > 1e-9 E_0 (in [0, 1] when it does not increase; None if there is none)."""
    energies = [float(dirichlet_energy(z, s)) for z in euler_states(s, z0, tau, steps)]
    scale = energies[0] if energies[0] > 0 else 1.0
    ratios = [(a - b) / a for a, b in zip(energies, energies[1:]) if a > 1e-9 * scale]
    return {"energies": energies, "increase": max((b - a) / scale for a, b in zip(energies, energies[1:])),
            "decrease ratio": min(ratios) if ratios else None}


@st.composite
def dirichlet_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "graph": draw(graph_examples(undirected=True)),
        "diffusivity": draw(st.sampled_from(["gcn", "random_walk"]), label="diffusivity"),
        "channels": draw(st.sampled_from([1, 3]), label="channels"),
        "tau": draw(TAUS, label="tau"),
        "steps": draw(st.integers(1, 8), label="steps"),
    }


def dirichlet_example(case: dict[str, Any]) -> dict[str, Any]:
    """:func:`dirichlet_decrease` for the case."""
    example = case["graph"]
    s = build(case["diffusivity"], example, case["channels"])
    return dirichlet_decrease(s, example.state(case["channels"]), case["tau"], case["steps"])


@check(
    "structure.dirichlet_nonincreasing",
    "structure",
    "For S self-adjoint in its node measure with spectrum in (-1, 1] (gcn = D^{-1/2}(A+I)D^{-1/2}, and "
    "random_walk with m = d, on undirected weighted graphs) and Euler steps with 0 < tau <= 1, the Dirichlet "
    "energy E(Z) = <Z, (I - S) Z>_m does not increase: E(Z - tau L Z) = sum_k lambda_k (1 - tau lambda_k)^2 c_k^2 "
    "with lambda_k in [0, 2).",
)
def dirichlet_nonincreasing(profile: Profile) -> Outcome:
    seen = {"smallest decrease ratio": math.inf, "largest increase / E_0": -math.inf}

    def prop(case: dict[str, Any]) -> None:
        m = dirichlet_example(case)
        if m["decrease ratio"] is not None:
            seen["smallest decrease ratio"] = min(seen["smallest decrease ratio"], m["decrease ratio"])
        seen["largest increase / E_0"] = max(seen["largest increase / E_0"], m["increase"])
        assert m["increase"] <= RELATIVE_TOL, (
            f"the Dirichlet energy increased by {m['increase']:.3e} E_0: {m['energies']}")

    failure = for_all(dirichlet_cases(), prop, profile)
    value = seen["smallest decrease ratio"]
    details: dict[str, Any] = _rounded(seen)
    if failure:
        details.update(failure)
    return Outcome(failure is None, f"smallest decrease ratio (E_k - E_k+1)/E_k = {value:.3g} (largest increase "
                   f"{seen['largest increase / E_0']:.1e} E_0)", value, details)


# ============================================================================================
# over-smoothing: E(t) <= exp(-2 gamma t) E(0) without source


OVERSMOOTHING_T1 = 8.0
# rk4 with dt = 0.01: the relative error of E(t ≤ 8) is ≈ 2 t λ⁵ dt⁴ / 120 ≤ 4e-8 for λ < 2.
OVERSMOOTHING_STEPS = 800
BOUND_TOL = 1e-6
# ⟨Z, (I − S)Z⟩ carries an absolute rounding error ≈ ε‖Z‖² (from the residual Z − SZ), which is
# large relative to E once Z is nearly in the kernel (a 2-node flow at t = 8 has E ≈ 1e-11 E(0)
# and 1e-5 relative error): the decay bound is compared where it is ≥ 1e-6 E(0), and E → 0 beyond.
RESOLVED = 1e-6
LIMIT_TOL = 1e-10  # E(30/γ)/E(0): e^{-60} ≈ 1e-26 in exact arithmetic, rounding ≈ ε‖Z⁰‖²/E(0)


def _trajectory_energies(s: Diffusivity, z0: torch.Tensor, source_weight: float, t1: float,
                         n_steps: int, points: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(times, Dirichlet energies) of an rk4 solve of the diffusion at ``points`` times in (0, t1]."""
    times = torch.linspace(0.0, t1, points + 1, dtype=F64)[1:]
    field = DiffusionField(s, source_weight=source_weight).set_initial_state(z0)
    with torch.no_grad():
        solution = solvers.solve(field, z0, t1=t1, method="rk4", n_steps=n_steps, t_eval=times)
        energies = torch.stack([dirichlet_energy(z, s) for z in solution.states])
    return times, energies


def oversmoothing_example(s: Diffusivity, z0: torch.Tensor, source_weight: float = 0.0, rate: float | None = None,
                          t1: float = OVERSMOOTHING_T1, n_steps: int = OVERSMOOTHING_STEPS) -> dict[str, float]:
    """How the Dirichlet energy of the flow from Z⁰ decays against e^{−2γt}, γ = the spectral gap of
    I − S (``rate`` overrides 2γ), along an rk4 solve on (0, t1], and at t = 30/γ exactly.

    Returns ``excess`` = max_t E(t)/b(t) − 1, b(t) = e^{−rate t} E(0), over the output times where
    b(t) ≥ 1e-6 E(0) (≤ 0 when the bound holds), ``observed rate`` = −ln(E(t1)/E(0))/t1 (≥ 2γ),
    ``2 gamma``, and ``limit`` = E(30/γ)/E(0) with Z(30/γ) from the eigen-decomposition (→ 0: the
    flow over-smooths; with a source it stays away from 0)."""
    eigenvalues = spectrum(s)
    gap = float(eigenvalues[eigenvalues > 1e-9].min())
    rate = 2 * gap if rate is None else rate
    e0 = float(dirichlet_energy(z0, s))
    times, energies = _trajectory_energies(s, z0, source_weight, t1, n_steps)
    bound = e0 * torch.exp(-rate * times)
    resolvable = bound >= RESOLVED * e0
    excess = float((energies[resolvable] / bound[resolvable]).max()) - 1.0 if bool(resolvable.any()) else -math.inf
    limit = _exact_energy(s, z0, source_weight, 30.0 / gap) / e0
    return {"excess": excess, "observed rate": -math.log(max(float(energies[-1]), 1e-300) / e0) / t1,
            "2 gamma": 2 * gap, "limit": limit}


def _exact_energy(s: Diffusivity, z0: torch.Tensor, source_weight: float, t: float) -> float:
    """E(Z(t)) with Z(t) from the eigen-decomposition of the symmetric S (gcn)."""
    dense = s.dense().to(F64)
    dense = 0.5 * (dense + dense.T)
    lam, vectors = torch.linalg.eigh(torch.eye(dense.shape[0], dtype=F64) - dense)
    c0 = vectors.T @ z0
    rate = source_weight + (1 - source_weight) * lam
    f = torch.where(rate > 0, source_weight / rate.clamp_min(1e-300), torch.zeros_like(rate))
    c = c0 * (f + (1 - f) * torch.exp(-rate * t))[:, None]
    return float(dirichlet_energy(vectors @ c, s))


@st.composite
def connected_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {"graph": draw(graph_examples(connected=True)), "channels": draw(st.sampled_from([1, 3]), label="channels")}


@check(
    "structure.oversmoothing_rate",
    "structure",
    "Over-smoothing: without source, on connected undirected graphs with gcn, the flow dZ/dt = (A_hat - I) Z "
    "has E(t) = sum_k lambda_k c_k^2 exp(-2 lambda_k t) <= exp(-2 gamma t) E(0) with gamma the spectral gap "
    "(smallest non-zero eigenvalue of I - A_hat), checked along rk4 solves (dt = 0.01, t <= 8, relative "
    "tolerance 1e-6, where the bound is >= 1e-6 E(0)), and E(t) -> 0 (E(30/gamma) / E(0) <= 1e-10, "
    "Z(30/gamma) by the eigen-decomposition).",
)
def oversmoothing_rate(profile: Profile) -> Outcome:
    seen: dict[str, float] = {"worst excess": -math.inf, "min observed/2gamma": math.inf,
                              "max observed/2gamma": 0.0, "max limit": 0.0}

    def prop(case: dict[str, Any]) -> None:
        example = case["graph"]
        s = build("gcn", example, case["channels"])
        m = oversmoothing_example(s, example.state(case["channels"]))
        seen["worst excess"] = max(seen["worst excess"], m["excess"])
        seen["min observed/2gamma"] = min(seen["min observed/2gamma"], m["observed rate"] / m["2 gamma"])
        seen["max observed/2gamma"] = max(seen["max observed/2gamma"], m["observed rate"] / m["2 gamma"])
        seen["max limit"] = max(seen["max limit"], m["limit"])
        assert m["excess"] <= BOUND_TOL, f"E(t) exceeds exp(-2 gamma t) E(0) by a factor 1 + {m['excess']:.3e}: {m}"
        assert m["limit"] <= LIMIT_TOL, f"E(30/gamma) / E(0) = {m['limit']:.3e} does not go to 0: {m}"

    failure = for_all(connected_cases(), prop, profile)
    ratio = seen["min observed/2gamma"]
    details: dict[str, Any] = _rounded(seen)
    if failure:
        details.update(failure)
    return Outcome(failure is None, f"observed decay rate >= {ratio:.3f} x 2 gamma (bound excess "
                   f"{seen['worst excess']:.1e}; E(30/gamma)/E(0) <= {seen['max limit']:.1e})", ratio, details)


# ============================================================================================
# with a source the energy stays bounded away from 0


def source_bound_example(s: Diffusivity, z0: torch.Tensor, source_weight: float, bound: float | None = None,
                         t1: float = OVERSMOOTHING_T1, n_steps: int = OVERSMOOTHING_STEPS) -> dict[str, float]:
    """The energy ratio E(Z(t))/E(Z⁰) along an rk4 solve on (0, t1] and at the steady state
    Z* = μ(μI + (1 − μ)(I − S))⁻¹ Z⁰, against f_min² (``bound`` overrides f_min²).

    Returns ``min ratio`` (over the trajectory and Z*), ``steady ratio``, ``f_min^2``, ``margin`` =
    min ratio / bound − 1 (≥ 0 when the bound holds), and ``steady residual`` = max |F(Z*)| (Z* is
    the fixed point of the field)."""
    mu = source_weight
    lam_max = float(spectrum(s)[-1])
    f_min = mu / (mu + (1 - mu) * lam_max)
    bound = f_min**2 if bound is None else bound
    e0 = float(dirichlet_energy(z0, s))
    _, energies = _trajectory_energies(s, z0, mu, t1, n_steps)
    n = z0.shape[0]
    eye = torch.eye(n, dtype=F64)
    steady = torch.linalg.solve(mu * eye + (1 - mu) * (eye - s.dense().to(F64)), mu * z0)
    field = DiffusionField(s, source_weight=mu).set_initial_state(z0)
    with torch.no_grad():
        residual = float(field(torch.zeros((), dtype=F64), steady).abs().max())
    steady_ratio = float(dirichlet_energy(steady, s)) / e0
    min_ratio = min(float(energies.min()) / e0, steady_ratio)
    return {"min ratio": min_ratio, "steady ratio": steady_ratio, "f_min^2": f_min**2,
            "margin": min_ratio / bound - 1.0 if bound > 0 else math.inf, "steady residual": residual}


@st.composite
def source_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "graph": draw(graph_examples(undirected=True)),
        "channels": draw(st.sampled_from([1, 3]), label="channels"),
        "source_weight": draw(st.floats(0.01, 1.0), label="mu"),
    }


@check(
    "structure.source_bound",
    "structure",
    "With source weight mu > 0 and gcn on undirected graphs, each eigencomponent of the flow is "
    "c_k(t) = c_k(0)[f_k + (1 - f_k) exp(-(mu + (1-mu) lambda_k) t)] with f_k = mu / (mu + (1-mu) lambda_k), so "
    "E(Z(t)) >= f_min^2 E(Z^0) for all t, f_min = mu / (mu + (1 - mu) lambda_max(I - A_hat)): the energy stays "
    "bounded away from 0. Checked along rk4 solves (t <= 8) and at the steady state "
    "Z* = mu (mu I + (1 - mu)(I - A_hat))^{-1} Z^0 (where F(Z*) = 0).",
)
def source_bound(profile: Profile) -> Outcome:
    seen: dict[str, float] = {"min margin": math.inf, "min ratio / f_min^2": math.inf, "min ratio": math.inf,
                              "max steady residual": 0.0}

    def prop(case: dict[str, Any]) -> None:
        example = case["graph"]
        s = build("gcn", example, case["channels"])
        z0 = example.state(case["channels"])
        if float(dirichlet_energy(z0, s)) <= 1e-12:  # only isolated nodes: no energy to keep
            return
        m = source_bound_example(s, z0, case["source_weight"])
        seen["min margin"] = min(seen["min margin"], m["margin"])
        seen["min ratio / f_min^2"] = min(seen["min ratio / f_min^2"], m["min ratio"] / m["f_min^2"])
        seen["min ratio"] = min(seen["min ratio"], m["min ratio"])
        seen["max steady residual"] = max(seen["max steady residual"], m["steady residual"])
        assert m["margin"] >= -BOUND_TOL, f"E(t)/E(0) fell below f_min^2: {m}"
        assert m["steady residual"] <= 1e-10, f"Z* is not a fixed point of the field: {m}"

    failure = for_all(source_cases(), prop, profile)
    ratio = seen["min ratio / f_min^2"]
    details: dict[str, Any] = _rounded(seen)
    if failure:
        details.update(failure)
    return Outcome(failure is None, f"min_t E(t)/E(0) >= {ratio:.3f} x f_min^2 (smallest ratio "
                   f"{seen['min ratio']:.3g})", ratio, details)
