"""Solver theory: Runge–Kutta order conditions from rooted trees, stability functions, the
Euler step bound τ ≤ 1 on spectrum(S − I) ⊂ [−2, 0], and measured orders on a nonlinear diffusion.

Butcher's theory. A rooted tree t is a root with an unordered multiset of subtrees
t = [t₁, …, t_m]; |t| counts its vertices. An explicit RK method (A, b, c) has order p iff for
every tree with |t| ≤ p its elementary weight equals the reciprocal of its density:

    Φ(t) = bᵀ g(t),   g(τ) = 𝟙,   g([t₁, …, t_m]) = (A g(t₁)) ∘ … ∘ (A g(t_m))   (∘: entrywise)
    γ(τ) = 1,         γ([t₁, …, t_m]) = |t| · γ(t₁) ⋯ γ(t_m)
    condition:  Φ(t) = 1/γ(t)

(τ is the single vertex; A g(τ) = A𝟙 = c, so [τ] gives bᵀc = 1/2, [τ, τ] gives bᵀc² = 1/3, ...).
The trees are generated here by growing every tree of order n − 1 by one leaf at each vertex and
keeping canonical forms (children sorted); there are 1, 1, 2, 4, 9, 20, 48 trees of order 1..7.

Linear stability. For z' = λz one step multiplies by R(hλ) with the stability function
R(z) = 1 + z bᵀ(I − zA)⁻¹𝟙; a method of order p has R(z) = e^z + O(z^{p+1}), and an explicit
method with s = p stages has exactly R(z) = Σ_{k ≤ p} z^k/k!.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import sympy
import torch
from hypothesis import strategies as st

import solvers
from solvers import ButcherTableau, fixed_step_methods, get_tableau

from ._registry import Outcome, Profile, check, for_all

SECTION = "solver theory"

Tree = tuple  # a rooted tree: the sorted tuple of its children's trees; () is the single vertex τ

# Tolerance for tableaux given with float coefficients (exact Fractions/ints are compared exactly).
FLOAT_TOL = 1e-12


# --------------------------------------------------------------------------- rooted trees


def _canonical(children: tuple) -> Tree:
    return tuple(sorted(children))


def _grow(tree: Tree) -> set[Tree]:
    """Every tree obtained from ``tree`` by attaching one new leaf to one of its vertices."""
    out = {_canonical(tree + ((),))}  # a new leaf on the root
    for i, child in enumerate(tree):
        for grown in _grow(child):
            out.add(_canonical(tree[:i] + (grown,) + tree[i + 1:]))
    return out


@lru_cache(maxsize=None)
def rooted_trees(order: int) -> tuple[Tree, ...]:
    """All rooted trees with ``order`` vertices (canonical forms, in a fixed sorted order)."""
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive int, got {order!r}")
    if order == 1:
        return ((),)
    grown: set[Tree] = set()
    for tree in rooted_trees(order - 1):
        grown |= _grow(tree)
    return tuple(sorted(grown, key=lambda t: (tree_height(t), t)))


def tree_order(tree: Tree) -> int:
    """|t|: the number of vertices."""
    return 1 + sum(tree_order(child) for child in tree)


def tree_height(tree: Tree) -> int:
    return 1 + max((tree_height(child) for child in tree), default=0)


def tree_density(tree: Tree) -> int:
    """γ(t) = |t| · Π γ(children)."""
    return tree_order(tree) * math.prod(tree_density(child) for child in tree)


def tree_symmetry(tree: Tree) -> int:
    """σ(t) = Π over distinct children u (multiplicity m) of m! σ(u)^m."""
    out = 1
    for child in set(tree):
        m = tree.count(child)
        out *= math.factorial(m) * tree_symmetry(child) ** m
    return out


def tree_label(tree: Tree) -> str:
    """Butcher's bracket notation: τ, [τ], [τ²], [[τ]], [τ[τ]], ..."""
    if not tree:
        return "τ"
    parts = []
    for child in sorted(set(tree), key=lambda u: (tree_order(u), u)):
        m = tree.count(child)
        label = tree_label(child)
        parts.append(label + ("" if m == 1 else "".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)] for d in str(m))))
    return "[" + "".join(parts) + "]"


# --------------------------------------------------------------------------- tableau algebra


def _is_exact(tableau: ButcherTableau) -> bool:
    values = [v for row in tableau.a for v in row] + list(tableau.b) + list(tableau.c)
    return all(isinstance(v, (int, Fraction)) and not isinstance(v, bool) for v in values)


def _rational(v: Any) -> sympy.Rational:
    """Exact sympy rational of a Fraction/int; a float becomes its exact binary value."""
    f = v if isinstance(v, Fraction) else Fraction(v)
    return sympy.Rational(f.numerator, f.denominator)


def tableau_matrices(tableau: ButcherTableau) -> tuple[sympy.Matrix, sympy.Matrix, sympy.Matrix]:
    """(A as s×s, b as s×1, c as s×1) sympy matrices of exact rationals."""
    s = tableau.stages
    a = sympy.zeros(s, s)
    for i, row in enumerate(tableau.a):
        for j, v in enumerate(row):
            a[i, j] = _rational(v)
    b = sympy.Matrix([_rational(v) for v in tableau.b])
    c = sympy.Matrix([_rational(v) for v in tableau.c])
    return a, b, c


def elementary_weight(tree: Tree, a: sympy.Matrix, b: sympy.Matrix) -> sympy.Rational:
    """Φ(t) = bᵀ g(t) with g([t₁..t_m]) = Π_k A g(t_k) entrywise, g(τ) = 𝟙."""
    cache: dict[Tree, sympy.Matrix] = {}

    def g(t: Tree) -> sympy.Matrix:
        if t not in cache:
            v = sympy.ones(a.rows, 1)
            for child in t:
                v = v.multiply_elementwise(a * g(child))
            cache[t] = v
        return cache[t]

    return (b.T * g(tree))[0, 0]


class OrderReport(NamedTuple):
    """What :func:`order_report` found: ``holds`` (every condition of order ≤ p), ``fails_next``
    (at least one condition of order p + 1 fails) and per-condition ``details``."""

    holds: bool
    fails_next: bool
    details: dict[str, Any]


def order_report(tableau: ButcherTableau, order: int | None = None) -> OrderReport:
    """Check the order conditions Φ(t) = 1/γ(t) of ``tableau`` for all trees with |t| ≤ p + 1.

    p is ``order`` or the tableau's claimed ``tableau.order``. Exact rational arithmetic when all
    coefficients are Fractions/ints; otherwise float coefficients are compared within FLOAT_TOL.
    """
    p = tableau.order if order is None else order
    a, b, _ = tableau_matrices(tableau)
    exact = _is_exact(tableau)
    conditions = []
    for n in range(1, p + 2):
        for tree in rooted_trees(n):
            phi = elementary_weight(tree, a, b)
            target = sympy.Rational(1, tree_density(tree))
            ok = (phi == target) if exact else abs(float(phi - target)) <= FLOAT_TOL
            conditions.append({"tree": tree_label(tree), "order": n, "phi": str(phi),
                               "one_over_gamma": str(target), "holds": bool(ok)})
    upto_p = [c for c in conditions if c["order"] <= p]
    nxt = [c for c in conditions if c["order"] == p + 1]
    holds = all(c["holds"] for c in upto_p)
    n_fail_next = sum(not c["holds"] for c in nxt)
    failed = [f"{c['tree']}: Φ = {c['phi']} ≠ 1/γ = {c['one_over_gamma']}" for c in upto_p if not c["holds"]]
    summary = (f"order {p}: {sum(c['holds'] for c in upto_p)} of {len(upto_p)} conditions hold, "
               f"order {p + 1} fails ({n_fail_next} of {len(nxt)})")
    details = {"method": tableau.name, "claimed_order": p, "exact": exact, "summary": summary,
               "conditions_up_to_p": len(upto_p), "holding_up_to_p": sum(c["holds"] for c in upto_p),
               "failing_at_p_plus_1": n_fail_next, "conditions_at_p_plus_1": len(nxt),
               "failed_up_to_p": failed, "conditions": conditions}
    return OrderReport(holds, n_fail_next > 0, details)


def stability_function(tableau: ButcherTableau, z: sympy.Symbol | None = None) -> sympy.Expr:
    """R(z) = 1 + z bᵀ(I − zA)⁻¹𝟙, simplified (a polynomial of degree ≤ s for explicit methods)."""
    z = sympy.Symbol("z") if z is None else z
    a, b, _ = tableau_matrices(tableau)
    s = tableau.stages
    x = (sympy.eye(s) - z * a).LUsolve(sympy.ones(s, 1))
    return sympy.expand(sympy.cancel(1 + z * (b.T * x)[0, 0]))


def real_stability_interval(r: sympy.Expr, z: sympy.Symbol) -> float:
    """x_min < 0 such that |R(x)| ≤ 1 on [x_min, 0] and |R| > 1 just left of x_min.

    The boundary is a real root of R(x)² − 1 (exact real roots for rational coefficients); roots
    where |R| only touches 1 are skipped by testing |R| between consecutive roots.
    """
    poly = sympy.Poly(sympy.expand(r**2 - 1), z)
    if poly.degree() < 1:
        return -math.inf
    if all(coef.is_Rational for coef in poly.all_coeffs()):
        roots = sorted({float(root.evalf(30)) for root in poly.real_roots()}, reverse=True)
    else:
        roots = sorted({float(v.real) for v in np.roots([float(c) for c in poly.all_coeffs()]) if abs(v.imag) < 1e-9},
                       reverse=True)
    negative = [x for x in roots if x < -1e-12]
    f = sympy.lambdify(z, r, "math")
    for i, x in enumerate(negative):
        left = negative[i + 1] if i + 1 < len(negative) else x - 1.0
        if abs(f(0.5 * (x + left))) > 1.0:
            return x
    return -math.inf  # |R| ≤ 1 on all of (−∞, 0]: impossible for a non-constant polynomial


def stability_report(tableau: ButcherTableau) -> dict[str, Any]:
    """R(z), its agreement with the Taylor polynomial of e^z, and the real stability interval."""
    z = sympy.Symbol("z")
    r = stability_function(tableau, z)
    p, s = tableau.order, tableau.stages
    exact = _is_exact(tableau)
    # explicit methods: (I − zA)⁻¹ = Σ_{k<s} z^k A^k, so R is a polynomial of degree ≤ s
    coeffs = sympy.Poly(r, z).all_coeffs()[::-1]
    taylor = sum(z**k / sympy.factorial(k) for k in range(p + 1))

    def match(k: int) -> bool:
        diff = (coeffs[k] if k < len(coeffs) else 0) - sympy.Rational(1, math.factorial(k))
        return diff == 0 if exact else abs(float(diff)) <= FLOAT_TOL

    agrees = all(match(k) for k in range(p + 1))
    linear_order = 0  # the largest q with R(z) = e^z + O(z^{q+1}); at most s
    while linear_order < s and match(linear_order + 1):
        linear_order += 1
    equals_taylor = sympy.expand(r - taylor) == 0 if exact else None
    ok = agrees and (equals_taylor is not False if s == p else True)
    x_min = real_stability_interval(r, z)
    # numeric cross-check of the interval: |R| ≤ 1 on a grid of [x_min, 0], > 1 just left of it
    inside = outside = False
    if math.isfinite(x_min):
        f = sympy.lambdify(z, r, "numpy")
        inside = float(np.max(np.abs(f(np.linspace(x_min, 0.0, 2001))))) <= 1.0 + 1e-9
        outside = abs(float(f(x_min - 1e-6))) > 1.0
    return {"method": tableau.name, "R": str(r), "order": p, "stages": s, "agrees_to_order_p": agrees,
            "linear_order": linear_order, "equals_taylor_polynomial": equals_taylor,
            "x_min": x_min, "interval_verified_on_grid": bool(inside and outside),
            "passed": bool(ok and inside and outside)}


# --------------------------------------------------------------------------- check 1


@check(
    "solver_theory.order_conditions",
    SECTION,
    "Every registered fixed-step tableau satisfies exactly (rational arithmetic) the Runge–Kutta "
    "order conditions Φ(t) = 1/γ(t) for all rooted trees t with |t| ≤ p, its claimed order, and "
    "fails at least one condition with |t| = p + 1 (order p, not the next).",
)
def order_conditions(profile: Profile) -> Outcome:
    counts = [len(rooted_trees(n)) for n in range(1, 6)]
    per_method, details, passed, total = [], {"tree_counts_1_to_5": counts}, counts == [1, 1, 2, 4, 9], 0
    for name in fixed_step_methods():
        holds, fails_next, info = order_report(get_tableau(name))
        info = {k: v for k, v in info.items() if k != "conditions"}
        details[name] = info
        per_method.append(f"{name} {info['summary']}")
        total += info["holding_up_to_p"]
        passed = passed and holds and fails_next
    return Outcome(passed, "; ".join(per_method), float(total), details)


# --------------------------------------------------------------------------- check 2


@check(
    "solver_theory.stability_function",
    SECTION,
    "For every registered fixed-step tableau the stability function R(z) = 1 + z bᵀ(I − zA)⁻¹𝟙 "
    "(sympy) agrees with e^z through z^p (p the claimed order), equals Σ_{k≤p} z^k/k! exactly when "
    "s = p stages, and its real stability interval [x_min, 0] is found exactly (roots of R² − 1) "
    "and confirmed on a grid (Euler −2, RK4 ≈ −2.785).",
)
def stability_function_check(profile: Profile) -> Outcome:
    details, parts, passed, x_mins = {}, [], True, []
    for name in fixed_step_methods():
        rep = stability_report(get_tableau(name))
        details[name] = rep
        passed = passed and rep["passed"]
        x_mins.append(rep["x_min"])
        parts.append(f"{name} R={rep['R']} [{rep['x_min']:.4f}, 0]")
    value = min(x_mins) if x_mins else None
    return Outcome(passed, "; ".join(parts), value, details)


# --------------------------------------------------------------------------- check 3


def _euler_symbolic() -> dict[str, Any]:
    """Admissible τ for |1 + τλ| ≤ 1 on all λ ∈ [−2, 0], derived with sympy."""
    tau = sympy.Symbol("tau", positive=True)
    r = sympy.Symbol("r", positive=True)  # λ = −r, r ∈ (0, 2]
    x = sympy.Symbol("x", real=True)
    # |1 + τλ| is convex in λ: its maximum over [−2, 0] sits at an endpoint; λ = 0 gives 1.
    worst = sympy.solve_univariate_inequality(sympy.Abs(1 - 2 * tau) <= 1, tau, relational=False)
    worst = sympy.Intersection(worst, sympy.Interval.open(0, sympy.oo))
    # for one λ = −r < 0: |1 − τr| ≤ 1 ⇔ −1 ≤ 1 − τr ≤ 1 ⇔ 0 ≤ τ ≤ 2/r
    per_lambda = sympy.solve_univariate_inequality(sympy.Abs(1 - x * r) <= 1, x, relational=False)
    bound = sympy.minimum(2 / r, r, sympy.Interval.Lopen(0, 2))  # ∩ over r ∈ (0, 2] of (0, 2/r]
    return {"worst_eigenvalue_interval": worst, "per_lambda_interval": per_lambda, "bound": bound,
            "ok": worst == sympy.Interval(0, 1, left_open=True) and bound == 1
            and per_lambda == sympy.Interval(0, 2 / r)}


def even_cycle_operator(n: int) -> np.ndarray:
    """S = D⁻¹A of the cycle C_n without self-loops (= A/2); bipartite for even n: eigenvalue −1."""
    s = np.zeros((n, n))
    for i in range(n):
        s[i, (i + 1) % n] = s[i, (i - 1) % n] = 0.5
    return s


def euler_growth(s: np.ndarray, tau: float, steps: int, z0: torch.Tensor) -> tuple[float, float]:
    """Run explicit Euler Z ← Z + τ(SZ − Z) with :func:`solvers.solve`; return (the late per-step
    growth factor (‖Z_K‖/‖Z_{K/2}‖)^{2/K}, max_k ‖Z_k‖/‖Z_0‖)."""
    m = torch.from_numpy(s - np.eye(s.shape[0]))
    norms = [float(torch.linalg.vector_norm(z0))]
    solvers.solve(lambda t, z: m @ z, z0, tau * steps, method="euler", n_steps=steps,
                  callback=lambda t, z: norms.append(float(torch.linalg.vector_norm(z))))
    half = steps // 2
    growth = (norms[steps] / norms[half]) ** (1.0 / (steps - half))
    return growth, max(norms) / norms[0]


@check(
    "solver_theory.euler_stability_bound",
    SECTION,
    "Explicit Euler Z ← Z + τ(S − I)Z is stable for every spectrum(S − I) ⊂ [−2, 0] iff τ ≤ 1 "
    "(sympy: |1 + τλ| ≤ 1 ∀λ ∈ [−2, 0] ⇔ τ ∈ (0, 1], set by λ = −2); on the bipartite cycle C_8 "
    "(S = D⁻¹A without self-loops, eigenvalue −2 of S − I) τ = 1 stays bounded and τ = 1.05 grows "
    "by |1 − 2τ| = 1.1 per step.",
)
def euler_stability_bound(profile: Profile) -> Outcome:
    sym = _euler_symbolic()
    details: dict[str, Any] = {k: str(v) for k, v in sym.items() if k != "ok"}

    # exact property check: τ ≤ 1 ⇒ |1 + τλ| ≤ 1 on [−2, 0]; τ > 1 ⇒ λ = −2 amplifies.
    def prop(example: tuple[Fraction, Fraction]) -> None:
        lam, tau = example
        amp = abs(1 + tau * lam)
        if tau <= 1:
            assert amp <= 1, f"τ = {tau} ≤ 1 but |1 + τλ| = {amp} > 1 at λ = {lam}"
        assert (abs(1 - 2 * tau) <= 1) == (tau <= 1), f"λ = −2 criterion wrong at τ = {tau}"

    strategy = st.tuples(st.fractions(min_value=-2, max_value=0, max_denominator=1000),
                         st.fractions(min_value=Fraction(1, 1000), max_value=3, max_denominator=1000))
    failure = for_all(strategy, prop, profile)
    if failure:
        details["property_failure"] = failure

    n, steps = 8, 200
    s = even_cycle_operator(n)
    eig = np.linalg.eigvalsh(s - np.eye(n))
    z0 = torch.from_numpy(np.random.default_rng(8).standard_normal((n, 3)))
    runs = {tau: euler_growth(s, tau, steps, z0) for tau in (1.0, 1.05)}
    g1, max1 = runs[1.0]
    g105, max105 = runs[1.05]
    details.update({"graph": f"cycle C_{n}, S = D^-1 A without self-loops", "spectrum_S_minus_I":
                    [round(float(v), 12) for v in eig], "steps": steps,
                    "tau_1": {"growth_per_step": g1, "max_norm_ratio": max1},
                    "tau_1.05": {"growth_per_step": g105, "max_norm_ratio": max105, "predicted": abs(1 - 2 * 1.05)}})
    # context: the library's random_walk adds self-loops, S̃ = (A + I)/3 on C_n, which moves the
    # spectrum of S̃ − I to [−4/3, 0] and relaxes the Euler bound to τ ≤ 1.5 on this graph.
    from diffusion_pde import diffusivity

    ring = torch.tensor([[i for i in range(n)] + [(i + 1) % n for i in range(n)],
                         [(i + 1) % n for i in range(n)] + [i for i in range(n)]])
    looped = diffusivity("random_walk", edge_index=ring, num_nodes=n, dtype=torch.float64).dense().numpy()
    looped_min = float(np.linalg.eigvals(looped - np.eye(n)).real.min())
    details["library_random_walk_with_self_loops"] = {"min_eig_S_minus_I": looped_min, "euler_bound_tau": -2 / looped_min}
    numeric_ok = (abs(eig.min() + 2) < 1e-12 and eig.max() < 1e-12 and max1 <= 1 + 1e-12
                  and abs(g1 - 1.0) < 1e-9 and abs(g105 - 1.1) < 1e-3 and max105 > 1e6)
    passed = bool(sym["ok"] and failure is None and numeric_ok)
    interval = sym["worst_eigenvalue_interval"]
    shown = f"({interval.start}, {interval.end}]" if isinstance(interval, sympy.Interval) else str(interval)
    measure = (f"sympy: stable ∀λ∈[−2,0] iff τ ∈ {shown}; C_{n} Euler growth/step: "
               f"τ=1 → {g1:.6f} (max ‖Z_k‖/‖Z_0‖ = {max1:.3f}), τ=1.05 → {g105:.6f} (predicted 1.1)")
    return Outcome(passed, measure, g105, details)


# --------------------------------------------------------------------------- check 4

ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
# Coarsest step counts, chosen in the asymptotic regime (rk4 from 4 steps is still pre-asymptotic:
# error ratios 18, 17, 16.5 instead of 16 per halving).
COARSEST = {"euler": 16, "midpoint": 8, "heun": 8, "rk4": 8}
SEED = 1
SLOPE_TOL = 0.15
REFERENCE_STEPS = {"fast": 1024}  # rk4 at n/2 and n steps, Richardson-extrapolated (else 2048)
REFERENCE_TOL = 1e-2  # reference error / smallest measured error: biases a slope by < 0.01


def nonlinear_problem(seed: int = SEED, num_nodes: int = 12, channels: int = 4):
    """DiffusionField with a seeded float64 ``difformer_s`` (S depends on Z) and a seeded Z⁰."""
    from diffusion_pde import DiffusionField, diffusivity

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        field = DiffusionField(diffusivity("difformer_s", in_channels=channels, dtype=torch.float64))
        z0 = 2.0 * torch.randn(num_nodes, channels, dtype=torch.float64)
    field.requires_grad_(False)
    return field, z0


def fitted_slope(dts: list[float], errors: list[float]) -> float:
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


@check(
    "solver_theory.nonlinear_orders",
    SECTION,
    "On a nonlinear diffusion (float64 DIFFormer-s field, N = 12, d = 4, t1 = 1) the fixed-step "
    "methods converge at their order: the log–log slope of the max error against dt over 4 halvings "
    "is within 0.15 of 1 (euler), 2 (midpoint, heun), 4 (rk4). Reference: Richardson-extrapolated rk4 "
    "(512/1024 steps; the finer run's estimated error, an upper bound for the extrapolation, must be "
    "≤ 1% of the smallest measured error); torchdiffeq's dopri8 (rtol 1e-12, atol 1e-14) is compared "
    "and used only if within 1e-3 of the smallest error (solvers.solve lands a step on t1; torchdiffeq's "
    "default of interpolating past t1 was ~1e-11 to 1e-9 off on this problem).",
)
def nonlinear_orders(profile: Profile) -> Outcome:
    halvings = 4 if profile.name == "fast" else 5
    ref_steps = REFERENCE_STEPS.get(profile.name, 2048)
    field, z0 = nonlinear_problem()
    details: dict[str, Any] = {"problem": f"difformer_s, seed {SEED}, N=12, d=4, t1=1, float64", "halvings": halvings}
    qk = field.diffusivity
    smallest_qk = [math.inf, math.inf]

    def watch(t: float, z: torch.Tensor) -> None:
        # q̂ = q/‖q‖ is singular at q_i = 0: small ‖q_i‖, ‖k_i‖ along the path mean large
        # higher derivatives of the field and a later asymptotic regime.
        smallest_qk[0] = min(smallest_qk[0], float(torch.linalg.vector_norm(qk.query(z), dim=-1).min()))
        smallest_qk[1] = min(smallest_qk[1], float(torch.linalg.vector_norm(qk.key(z), dim=-1).min()))

    with torch.no_grad():
        coarse = solvers.solve(field, z0, 1.0, method="rk4", n_steps=ref_steps // 2, callback=watch).final
        fine = solvers.solve(field, z0, 1.0, method="rk4", n_steps=ref_steps).final
        richardson = (16 * fine - coarse) / 15
        reference_error = float((fine - coarse).abs().max()) / 15  # error estimate of `fine`
        dopri8 = solvers.solve(field, z0, 1.0, method="dopri8", rtol=1e-12, atol=1e-14, max_steps=100_000)
        dopri8_dev = float((dopri8.final - richardson).abs().max())
        runs = {}
        for method, order in ORDERS.items():
            if method not in fixed_step_methods():
                continue
            dts, errors = [], []
            for k in range(halvings + 1):
                n = COARSEST[method] * 2**k
                errors.append(solvers.solve(field, z0, 1.0, method=method, n_steps=n).final)
                dts.append(1.0 / n)
            runs[method] = (dts, errors)
    smallest = min(float((e[-1] - richardson).abs().max()) for _, e in runs.values())
    use_dopri8 = dopri8_dev <= 1e-3 * smallest
    reference = dopri8.final if use_dopri8 else richardson
    details["reference"] = {
        "used": "dopri8 (rtol 1e-12, atol 1e-14)" if use_dopri8 else f"Richardson rk4 {ref_steps // 2}/{ref_steps}",
        "rk4_fine_error_estimate": reference_error,
        "dopri8_deviation_from_richardson": dopri8_dev,
        "dopri8_nfe": dopri8.stats.nfe,
        "smallest_measured_error": smallest,
    }
    details["min_query_key_norm_along_path"] = smallest_qk
    passed = reference_error <= REFERENCE_TOL * smallest
    parts, worst = [], 0.0
    for method, (dts, states) in runs.items():
        errors = [float((z - reference).abs().max()) for z in states]
        slope = fitted_slope(dts, errors)
        monotone = all(b < a for a, b in zip(errors, errors[1:]))
        ok = abs(slope - ORDERS[method]) <= SLOPE_TOL and monotone
        passed = passed and ok
        worst = max(worst, abs(slope - ORDERS[method]))
        details[method] = {"order": ORDERS[method], "slope": slope, "dts": dts, "errors": errors, "monotone": monotone}
        parts.append(f"{method} {slope:.3f}")
    measure = ("slopes " + ", ".join(parts) + f" (reference {details['reference']['used']}, est. error "
               f"{reference_error:.1e}; dopri8 off by {dopri8_dev:.1e})")
    return Outcome(bool(passed and len(runs) == len(ORDERS)), measure, worst, details)
