r"""Energy descent, the paper's main theorem (Wu, Wipf, Yan), as executable checks.

Setting. For a concave non-decreasing penalty δ and λ > 0 the layer energy is

    E(Z; Z^k) = ‖Z − Z^k‖²_F + λ Σ_{i,j} δ(d_ij(Z)),      d_ij(Z) = ‖z_i − z_j‖²

(:func:`diffusion_pde.energy`, all ordered pairs, i = j included). Theorem: with S the
``energy(δ)`` diffusivity evaluated at Z^k, the explicit Euler step Z^{k+1} = Z^k + τ(SZ^k − Z^k)
descends for every τ in an admissible range (0, τ*]:  E(Z^{k+1}; Z^k) ≤ E(Z^k; Z^{k−1}).

Proof by majorisation (derived with sympy in :func:`derivation`):

* δ concave ⇒ δ(s) ≤ δ(s₀) + δ'(s₀)(s − s₀) (tangent at s₀ = d_ij(Z^k)). With the weights
  w_ij = δ'(d_ij(Z^k)) (W symmetric, w_ii = δ'(0)), D = diag(row sums of W), L = D − W and
  Σ_ij w_ij ‖z_i − z_j‖² = 2 tr(Zᵀ L Z):
      E(Z; Z^k) − E(Z^k; Z^k) ≤ ‖Z − Z^k‖² + 2λ [tr(ZᵀLZ) − tr(Z^kᵀ L Z^k)].
* The ``energy`` diffusivity is S = D⁻¹W, so the Euler direction is U = SZ^k − Z^k = −D⁻¹LZ^k.
  Along Z(τ) = Z^k + τU the bound is the quadratic
      h(τ) = τ² (‖U‖² + 2λ tr(UᵀLU)) + 4λτ tr(Z^kᵀ L U),   tr(Z^kᵀ L U) = −‖D^{-1/2} L Z^k‖² ≤ 0,
  so h ≤ 0 on [0, τ*] with τ* = 4λ‖D^{-1/2}LZ^k‖² / (‖U‖² + 2λ tr(UᵀLU)).
* Then E(Z^{k+1}; Z^k) ≤ E(Z^k; Z^k) = λΣδ(d(Z^k)) ≤ E(Z^k; Z^{k−1}).

The coefficients of h and τ* used numerically are read off the sympy derivation
(``sympy.Poly(h, tau)``, ``sympy.solve``) and lambdified, not typed in.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp
import torch
from hypothesis import strategies as st

from diffusion_pde import diffusivity, energy
from diffusion_pde.penalties import BUILT_IN, Penalty, TensorFn, penalty

from ._registry import Outcome, Profile, check, for_all

SECTION = "energy descent"
DEFAULT_FRACTIONS = (0.01, 0.1, 0.5, 0.9, 1.0)
DESCENT_TOL = 1e-12  # a gap counts as ≤ 0 when ≤ DESCENT_TOL · (magnitude of the energies involved)
TIGHT_TOL = 1e-9
_EPS = float(np.finfo(np.float64).eps)

DeltaSpec = str | Penalty | TensorFn


# ---------------------------------------------------------------------------------------------
# the sympy derivation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derivation:
    """The majoriser along the Euler direction, derived symbolically.

    ``quadratic``/``linear``: sympy coefficients of τ², τ in h(τ) over the invariants
    (λ, ‖U‖², tr(UᵀLU), tr(ZᵀLU)); ``tau_star``: the nonzero root of h; ``*_fn``: their
    lambdified forms ``f(lam, uu, ulu, zlu)``; ``residuals``: name → sympy residual of each
    identity verified on the symbolic instance (all must be 0); ``pair_factor``: the derived c
    in Σ_ij w_ij ‖z_i − z_j‖² = c · tr(ZᵀLZ)."""

    tau: sp.Symbol
    invariants: tuple[sp.Symbol, ...]
    quadratic: sp.Expr
    linear: sp.Expr
    tau_star: sp.Expr
    pair_factor: sp.Expr
    residuals: dict[str, sp.Expr]
    quadratic_fn: Callable[..., float]
    linear_fn: Callable[..., float]
    tau_star_fn: Callable[..., float]


def _trace(m: sp.Matrix) -> sp.Expr:
    return sp.expand(m.trace())


@functools.lru_cache(maxsize=None)
def derivation(n: int = 3, d: int = 2) -> Derivation:
    """Derive h(τ), its coefficients and τ* with sympy (cached; well under a second).

    1. Generic: expand h(τ) = ‖τU‖² + λ c [⟨Z+τU, Z+τU⟩_L − ⟨Z, Z⟩_L] by bilinearity and
       symmetry of ⟨·,·⟩_L (Gram symbols ‖U‖², tr(UᵀLU), tr(ZᵀLU), tr(ZᵀLZ)), read off the
       coefficients with ``Poly(h, tau)`` and solve h = 0 for τ*.
    2. On a symbolic instance (``n`` nodes, ``d`` channels, symbolic states z, direction u and
       symmetric weights w incl. the diagonal, a symbolic δ) verify: the tangent surrogate minus
       E(Z^k; Z^k) is exactly the pair sum h_inst(τ) (the δ(s₀) terms cancel); the pair identity
       Σ w_ij ‖z_i − z_j‖² = c tr(ZᵀLZ) (c derived as the simplified ratio); h_inst equals the
       generic h with the instance's invariants substituted; the Euler direction of S = D⁻¹W is
       −D⁻¹LZ; tr(ZᵀLU) = −‖D^{-1/2}LZ‖² along it.
    """
    tau, lam = sp.symbols("tau lambda", positive=True)
    uu, ulu, zlu, zlz = sp.symbols("uu ulu zlu zlz", real=True)
    residuals: dict[str, sp.Expr] = {}

    # --- symbolic instance --------------------------------------------------------------
    z = sp.Matrix(n, d, lambda i, a: sp.Symbol(f"z{i}{a}", real=True))
    u = sp.Matrix(n, d, lambda i, a: sp.Symbol(f"u{i}{a}", real=True))
    w_sym = {}
    for i in range(n):
        for j in range(i, n):
            w_sym[(i, j)] = w_sym[(j, i)] = sp.Symbol(f"w{i}{j}", positive=True)
    w = sp.Matrix(n, n, lambda i, j: w_sym[(i, j)])
    deg = sp.diag(*[sum(w.row(i)) for i in range(n)])
    lap = deg - w

    def pair_sq(m: sp.Matrix, i: int, j: int) -> sp.Expr:
        return sum((m[i, a] - m[j, a]) ** 2 for a in range(d))

    # pair identity, its factor derived (not typed): c = Σ w d / tr(ZᵀLZ)
    pair_sum = sp.expand(sum(w[i, j] * pair_sq(z, i, j) for i in range(n) for j in range(n)))
    tr_zlz = _trace(z.T * lap * z)
    pair_factor = sp.cancel(pair_sum / tr_zlz)
    if pair_factor.free_symbols:
        raise AssertionError(f"Σ w_ij ‖z_i − z_j‖² is not a constant multiple of tr(ZᵀLZ): ratio {pair_factor}")
    residuals["sum_ij w_ij |z_i - z_j|^2 - c tr(Z^T L Z)"] = sp.expand(pair_sum - pair_factor * tr_zlz)

    # tangent surrogate of E along Z(τ) = Z + τU minus E(Z; Z) = λ Σ δ(s0): the δ(s0) cancel
    delta = sp.Function("delta")
    s0 = {(i, j): sp.Symbol(f"s{min(i, j)}{max(i, j)}", nonnegative=True) for i in range(n) for j in range(n)}
    zt = z + tau * u
    fidelity = sp.expand(sum((tau * u[i, a]) ** 2 for i in range(n) for a in range(d)))
    surrogate = fidelity + lam * sum(
        delta(s0[(i, j)]) + w[i, j] * (pair_sq(zt, i, j) - s0[(i, j)]) for i in range(n) for j in range(n)
    )
    e_k = lam * sum(delta(s0[(i, j)]) for i in range(n) for j in range(n))
    # s0 stands for d_ij(Z^k): substitute it after the δ(s0) terms have cancelled
    h_inst = sp.expand((surrogate - e_k).subs({s0[(i, j)]: pair_sq(z, i, j) for i in range(n) for j in range(n)}))
    if h_inst.has(delta):
        raise AssertionError("the δ(s₀) terms of the tangent surrogate did not cancel")

    # --- generic h(τ) by bilinear expansion over the Gram symbols ------------------------
    gram_l = {("Z", "Z"): zlz, ("Z", "U"): zlu, ("U", "Z"): zlu, ("U", "U"): ulu}  # ⟨·,·⟩_L, L = Lᵀ

    def form(x: dict[str, sp.Expr], y: dict[str, sp.Expr], gram: dict[tuple[str, str], sp.Expr]) -> sp.Expr:
        return sp.expand(sum(cx * cy * gram[(a, b)] for a, cx in x.items() for b, cy in y.items()))

    z_tau = {"Z": sp.Integer(1), "U": tau}
    z_0 = {"Z": sp.Integer(1)}
    h = sp.expand(tau**2 * uu + lam * pair_factor * (form(z_tau, z_tau, gram_l) - form(z_0, z_0, gram_l)))
    poly = sp.Poly(h, tau)
    quadratic, linear, constant = (poly.coeff_monomial(tau**k) for k in (2, 1, 0))
    residuals["h(0)"] = constant
    if poly.degree() != 2:
        raise AssertionError(f"h(τ) is not a quadratic in τ: {h}")
    roots = [r for r in sp.solve(sp.Eq(h, 0), tau) if sp.simplify(r) != 0]
    if len(roots) != 1:
        raise AssertionError(f"expected one nonzero root of h, got {roots}")
    tau_star = sp.simplify(roots[0])
    residuals["tau* + linear/quadratic"] = sp.simplify(tau_star + linear / quadratic)

    # generic h with the instance's invariants = the instance's pair-sum surrogate
    inst = {
        uu: sp.expand(sum(u[i, a] ** 2 for i in range(n) for a in range(d))),
        ulu: _trace(u.T * lap * u),
        zlu: _trace(z.T * lap * u),
        zlz: tr_zlz,
    }
    residuals["h_instance - h(invariants)"] = sp.expand(h_inst - h.subs(inst))
    residuals["tr(U^T L Z) - tr(Z^T L U)"] = sp.expand(_trace(u.T * lap * z) - inst[zlu])

    # the Euler direction of the energy diffusivity S = D⁻¹W, and tr(ZᵀLU) = −‖D^{-1/2}LZ‖²
    s_mat = deg.inv() * w
    u_euler = s_mat * z - z
    residuals["(SZ - Z) + D^-1 L Z"] = sp.simplify(u_euler + deg.inv() * lap * z)
    lz = lap * z
    d_half_norm = sum(lz[i, a] ** 2 / deg[i, i] for i in range(n) for a in range(d))
    residuals["tr(Z^T L U) + |D^-1/2 L Z|^2"] = sp.cancel(_trace(z.T * lap * u_euler) + d_half_norm)
    residuals["S row sums - 1"] = sp.simplify(s_mat * sp.ones(n, 1) - sp.ones(n, 1))

    args = (lam, uu, ulu, zlu)
    return Derivation(
        tau=tau,
        invariants=args,
        quadratic=quadratic,
        linear=linear,
        tau_star=tau_star,
        pair_factor=pair_factor,
        residuals=residuals,
        quadratic_fn=sp.lambdify(args, quadratic, "math"),
        linear_fn=sp.lambdify(args, linear, "math"),
        tau_star_fn=sp.lambdify(args, tau_star, "math"),
    )


def _is_zero(expr: Any) -> bool:
    if isinstance(expr, sp.MatrixBase):
        return all(_is_zero(e) for e in expr)
    return sp.simplify(expr) == 0


# sympy forms of the built-in penalties and their domains, for the premise check (δ' ≥ 0, δ'' ≤ 0)
_S = sp.Symbol("s", real=True)
SYMPY_PENALTIES: dict[str, tuple[sp.Expr, sp.Interval]] = {
    "difformer": (2 * _S - _S**2 / 4, sp.Interval(0, 4)),
    "log": (sp.log(1 + _S), sp.Interval(0, sp.oo)),
    "sqrt": (sp.sqrt(_S + sp.Rational(1, 10**6)), sp.Interval(0, sp.oo)),
    "quadratic": (_S, sp.Interval(0, sp.oo)),
}


# ---------------------------------------------------------------------------------------------
# numerics (float64)
# ---------------------------------------------------------------------------------------------


def _state(z: Any) -> torch.Tensor:
    z = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).to(torch.float64)
    if z.dim() != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"z_k must have shape [N, d] with N, d ≥ 1, got {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("z_k contains non-finite entries")
    return z


def _lam(lam: Any) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
    return float(lam)


def _sq_dist(z: torch.Tensor) -> torch.Tensor:
    return (z[:, None, :] - z[None, :, :]).square().sum(-1)


@dataclass(frozen=True)
class _Linearisation:
    """W, D, L at Z^k, the Euler direction U = D⁻¹WZ − Z and the invariants of h."""

    weights: torch.Tensor
    degree: torch.Tensor
    laplacian: torch.Tensor
    direction: torch.Tensor
    uu: float
    ulu: float
    zlu: float  # tr(ZᵀLU) computed directly
    d_half: float  # ‖D^{-1/2} L Z‖²


def _linearise(z: torch.Tensor, pen: Penalty) -> _Linearisation:
    sq = _sq_dist(z)
    pen.check_domain(sq)
    w = pen.derivative(sq).to(torch.float64)
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"penalty {pen.name!r} has a non-finite derivative at these distances")
    if bool((w < 0).any()):
        raise ValueError(f"penalty {pen.name!r} has a negative derivative here: δ must be non-decreasing")
    deg = w.sum(dim=1)
    if bool((deg <= 0).any()):
        raise ValueError(f"penalty {pen.name!r}: a row of δ'(d_ij) sums to 0, the energy diffusivity is undefined")
    lap = torch.diag(deg) - w
    u = (w @ z) / deg[:, None] - z
    lz = lap @ z
    lu = lap @ u
    return _Linearisation(
        w, deg, lap, u,
        uu=float(u.square().sum()),
        ulu=float((u * lu).sum()),
        zlu=float((z * lu).sum()),
        d_half=float((lz.square() / deg[:, None]).sum()),
    )


def admissible_step(z_k: Any, delta: DeltaSpec = "difformer", lam: float = 1.0) -> float:
    r"""τ*, the end of the admissible range (0, τ*] of Euler steps that provably descend.

    With w_ij = δ'(‖z_i − z_j‖²) at Z^k, D = diag(Σ_j w_ij), L = D − W, U = D⁻¹WZ^k − Z^k
    (the Euler direction of the ``energy(δ)`` diffusivity):

        τ* = 4λ ‖D^{-1/2} L Z^k‖² / (‖U‖²_F + 2λ tr(Uᵀ L U))

    the positive root of the tangent majoriser h(τ) = τ²(‖U‖² + 2λ tr(UᵀLU)) + 4λτ tr(Z^kᵀLU)
    of E(Z^k + τU; Z^k) − E(Z^k; Z^k) (formula lambdified from :func:`derivation`; the identity
    tr(Z^kᵀLU) = −‖D^{-1/2}LZ^k‖² is used for the linear coefficient, so τ* > 0 exactly). For
    concave δ every τ ∈ (0, τ*] gives E(Z^k + τU; Z^k) ≤ E(Z^k; Z^k). Returns ``math.inf`` at a
    fixed point (U = 0: every step leaves Z^k unchanged). ``z_k``: [N, d] tensor or array,
    computed in float64. Raises ValueError for lam ≤ 0 or a δ with δ' < 0 at these distances.

    τ* can exceed 1 (for large λ, and more so when Z^k forms weakly coupled clusters). For a penalty with a bounded domain (``difformer``,
    s ≤ 4 on unit-norm states) a step with τ > 1 can leave it; τ ≤ 1 keeps rows in the unit ball
    (convex combinations), so use min(1, τ*) there.
    """
    z = _state(z_k)
    lam = _lam(lam)
    lin = _linearise(z, penalty(delta))
    if lin.d_half == 0.0 or lin.uu == 0.0:
        return math.inf
    return float(derivation().tau_star_fn(lam, lin.uu, lin.ulu, -lin.d_half))


def surrogate_gap(z_k: Any, delta: DeltaSpec, lam: float, tau: float) -> float:
    """h(τ): the tangent majoriser of :func:`descent_gap` along the Euler direction (derived coefficients)."""
    z = _state(z_k)
    lam = _lam(lam)
    lin = _linearise(z, penalty(delta))
    der = derivation()
    return float(der.quadratic_fn(lam, lin.uu, lin.ulu, lin.zlu) * tau**2 + der.linear_fn(lam, lin.uu, lin.ulu, lin.zlu) * tau)


@dataclass(frozen=True)
class StepReport:
    """One Euler step Z^k → Z^k + τU measured on the real energy.

    ``gap`` = E(Z^k + τU; Z^k) − E(Z^k; Z^k); ``surrogate`` = h(τ); ``scale`` = the magnitude of
    the terms combined in ``gap`` plus their first-order sensitivity to a relative rounding of Z
    (λ Σ_ij 2|δ'(d_ij)| √d_ij (‖z_i‖ + ‖z_j‖) = |∇E|·|Z|, which dominates once the states have
    collapsed to within round-off of each other) plus ε‖Z‖²_F (the fidelity of a step whose
    direction is pure rounding noise, at a fixed point); tolerances are relative to it; ``tangent_excess`` =
    max over pairs of δ(s) − [δ(s₀) + δ'(s₀)(s − s₀)] (> 0 means δ is not concave there)
    relative to |δ(s)| + |tangent| (``tangent_excess_abs``: the absolute max), with the pair's (s₀, s)."""

    tau: float
    gap: float
    surrogate: float
    scale: float
    tangent_excess: float
    tangent_excess_abs: float
    tangent_pair: tuple[float, float]
    z_next: torch.Tensor


def euler_step(z_k: Any, delta: DeltaSpec, lam: float, tau: float) -> StepReport:
    """Take Z^{k+1} = Z^k + τ(SZ^k − Z^k) with S = the ``energy(δ)`` diffusivity at Z^k and
    measure the real energy gap with :func:`diffusion_pde.energy` (not the surrogate)."""
    z = _state(z_k)
    lam = _lam(lam)
    pen = penalty(delta)
    s_mat = diffusivity("energy", delta=pen).dense(z)
    z_next = z + tau * (s_mat @ z - z)
    e_next = energy(z_next, z, pen, lam)
    e_k = energy(z, z, pen, lam)
    sq0, sq1 = _sq_dist(z), _sq_dist(z_next)
    v0, v1 = pen.value(sq0), pen.value(sq1)
    fidelity = float((z_next - z).square().sum())
    norms = z.norm(dim=1)
    sensitivity = 2 * pen.derivative(sq0).abs() * sq0.sqrt() * (norms[:, None] + norms[None, :])
    floor = _EPS * float(z.square().sum())  # rows equal up to round-off: Sz − z is ε‖z‖-sized noise
    scale = fidelity + lam * float(v0.abs().sum() + v1.abs().sum() + sensitivity.sum()) + floor
    tangent = v0 + pen.derivative(sq0) * (sq1 - sq0)
    excess = (v1 - tangent) / (v1.abs() + tangent.abs()).clamp_min(1e-300)
    flat = int(torch.argmax(excess))
    i, j = divmod(flat, excess.shape[1])
    der = derivation()
    lin = _linearise(z, pen)
    h = der.quadratic_fn(lam, lin.uu, lin.ulu, lin.zlu) * tau**2 + der.linear_fn(lam, lin.uu, lin.ulu, lin.zlu) * tau
    return StepReport(
        tau=float(tau),
        gap=float(e_next - e_k),
        surrogate=float(h),
        scale=scale,
        tangent_excess=float(excess.max()),
        tangent_excess_abs=float((v1 - tangent).max()),
        tangent_pair=(float(sq0[i, j]), float(sq1[i, j])),
        z_next=z_next,
    )


def descent_gap(z_k: Any, delta: DeltaSpec, lam: float, tau: float) -> float:
    """E(Z^k + τU; Z^k) − E(Z^k; Z^k) with U = SZ^k − Z^k, S the ``energy(δ)`` diffusivity at
    Z^k, both energies by :func:`diffusion_pde.energy` (the real energy, not the surrogate).
    ≤ 0 for concave δ and τ ∈ (0, τ*] (:func:`admissible_step`)."""
    return euler_step(z_k, delta, lam, tau).gap


def verify_descent(
    delta: DeltaSpec,
    lam: float,
    z: Any,
    taus: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    relative: bool = True,
    tol: float = DESCENT_TOL,
) -> Outcome:
    """Run the descent test for a (user-supplied) penalty δ at the state ``z``.

    For each τ (multiples of τ* when ``relative``, else absolute steps) it takes the Euler step
    of the ``energy(δ)`` diffusivity and checks the theorem's two statements on the real energy:
    descent, gap = E(Z^k + τU; Z^k) − E(Z^k; Z^k) ≤ tol·scale, and majorisation, gap ≤ h(τ) +
    tol·scale. A δ that is not concave breaks the majoriser (and, at τ*, where h(τ*) = 0, the
    descent): the outcome then fails, and ``details["concavity"]`` shows the pair of squared
    distances (s₀, s) where δ lies above its tangent. A δ with δ' < 0 raises ValueError (the
    ``energy`` diffusivity is undefined). ``value`` is the worst gap/scale."""
    z = _state(z)
    lam = _lam(lam)
    pen = penalty(delta)
    tau_star = admissible_step(z, pen, lam)
    increases: list[str] = []
    majoriser_breaks: list[str] = []
    steps: list[dict[str, float]] = []
    worst = -math.inf
    worst_excess = (-math.inf, (0.0, 0.0))
    for t in taus:
        tau = float(t) if not relative or math.isinf(tau_star) else t * tau_star  # τ* = ∞: fixed point
        rep = euler_step(z, pen, lam, tau)
        rel = rep.gap / rep.scale
        worst = max(worst, rel)
        # count a tangent excess only where it matters for the energy (not round-off of collapsed states)
        if rep.tangent_excess > worst_excess[0] and lam * rep.tangent_excess_abs > tol * rep.scale:
            worst_excess = (rep.tangent_excess, rep.tangent_pair)
        steps.append({"tau": tau, "gap": rep.gap, "surrogate": rep.surrogate, "scale": rep.scale})
        if rep.gap > tol * rep.scale:
            increases.append(f"energy increased at τ = {tau:.6g} ({tau / tau_star:.4g}·τ*): gap = {rep.gap:.3e} > 0")
        if rep.gap > rep.surrogate + tol * rep.scale:
            majoriser_breaks.append(
                f"majoriser broken at τ = {tau:.6g}: gap {rep.gap:.3e} > surrogate h(τ) = {rep.surrogate:.3e}"
            )
    details: dict[str, Any] = {"delta": pen.name, "lam": lam, "tau_star": tau_star, "steps": steps}
    excess, (s0, s1) = worst_excess
    concave_here = excess <= 1e-10  # relative; round-off is ~1e-16
    if not concave_here:
        details["concavity"] = (
            f"δ = {pen.name!r} is not concave on the distances reached: δ(s) exceeds its tangent at "
            f"s₀ = {s0:.6g} by {excess:.3e} (relative) at s = {s1:.6g}"
        )
    violations = increases + majoriser_breaks
    if violations:
        details["violations"] = violations
        why = "" if concave_here else " (δ is not concave)"
        return Outcome(False, f"VIOLATION{why}: {violations[0]}; worst gap/scale {worst:.3e}", worst, details)
    return Outcome(True, f"descent at all {len(steps)} steps (τ* = {tau_star:.6g}); worst gap/scale {worst:.3e}",
                   worst, details)


# ---------------------------------------------------------------------------------------------
# random states for the properties
# ---------------------------------------------------------------------------------------------

STATES = st.fixed_dictionaries({
    "n": st.integers(2, 12),
    "d": st.integers(1, 4),
    "log10_scale": st.floats(-3.0, 3.0),
    "log10_lam": st.floats(-3.0, 2.0),
    "seed": st.integers(0, 2**31 - 1),
})


def build_state(example: dict[str, Any], delta: str) -> tuple[torch.Tensor, float]:
    """Gaussian Z (float64, seeded) times 10^scale; for ``difformer`` unit-norm rows (d ≥ 2:
    in d = 1 unit rows are ±1, pairs at distance 4 get weight δ'(4) = 0 and every state is a
    fixed point of S), so squared distances stay in [0, 4]."""
    gen = torch.Generator().manual_seed(example["seed"])
    d = max(example["d"], 2) if delta == "difformer" else example["d"]
    z = torch.randn(example["n"], d, generator=gen, dtype=torch.float64) * 10.0 ** example["log10_scale"]
    if delta == "difformer":
        z = z / z.norm(dim=1, keepdim=True)
    return z, 10.0 ** example["log10_lam"]


def _difformer_cap(delta: str, tau_star: float) -> float:
    """For ``difformer`` steps beyond τ = 1 can leave the unit ball (squared distances > 4, outside
    the penalty's domain); cap there. Other penalties use the full range."""
    return min(tau_star, 1.0) if delta == "difformer" else tau_star


# ---------------------------------------------------------------------------------------------
# registered checks
# ---------------------------------------------------------------------------------------------


@check(
    "energy_descent.majoriser_symbolic",
    SECTION,
    "The tangent majoriser of E along the Euler direction U = SZ − Z is h(τ) = τ²(‖U‖² + 2λtr(UᵀLU)) "
    "+ 4λτ tr(ZᵀLU) with tr(ZᵀLU) = −‖D^{-1/2}LZ‖² (sympy), and the built-in δ are concave, non-decreasing.",
)
def majoriser_symbolic(profile: Profile) -> Outcome:
    der = derivation()
    bad = [name for name, res in der.residuals.items() if not _is_zero(res)]
    # the premise: every built-in δ is concave and non-decreasing on its domain (sympy), and the
    # sympy forms agree with the torch penalties
    premise: dict[str, str] = {}
    for name, (expr, dom) in SYMPY_PENALTIES.items():
        d1, d2 = sp.diff(expr, _S), sp.diff(expr, _S, 2)
        inf_d1 = sp.calculus.util.minimum(d1, _S, dom)
        sup_d2 = sp.calculus.util.maximum(d2, _S, dom)
        pen = BUILT_IN[name]
        pts = torch.tensor([0.0, 0.3, 1.0, 2.5, 3.9], dtype=torch.float64)
        ref_v = torch.tensor([float(expr.subs(_S, float(p))) for p in pts], dtype=torch.float64)
        ref_d = torch.tensor([float(d1.subs(_S, float(p))) for p in pts], dtype=torch.float64)
        mismatch = float(torch.maximum((pen.value(pts) - ref_v).abs().max(), (pen.derivative(pts) - ref_d).abs().max()))
        if not (inf_d1 >= 0 and sup_d2 <= 0 and mismatch <= 1e-9):
            premise[name] = f"inf δ' = {inf_d1}, sup δ'' = {sup_d2}, torch/sympy mismatch {mismatch:.2e}"
    measure = (f"surrogate coefficients derived: τ²·({sp.sstr(der.quadratic)}) + τ·({sp.sstr(der.linear)}), "
               f"pair factor {der.pair_factor}; identity residual "
               f"{'0' if not bad else 'NONZERO'} ({len(der.residuals)} identities); premises of "
               f"{len(SYMPY_PENALTIES)} built-in δ {'hold' if not premise else 'FAIL'}")
    details = {"tau_star": sp.sstr(der.tau_star), "nonzero_residuals": bad, "premise_failures": premise}
    return Outcome(not bad and not premise, measure, float(len(bad) + len(premise)), details)


@check(
    "energy_descent.tau_star_positive",
    SECTION,
    "The admissible range is non-empty: τ* = 4λ‖D^{-1/2}LZ‖² / (‖U‖² + 2λtr(UᵀLU)) > 0, with "
    "tr(ZᵀLU) = −‖D^{-1/2}LZ‖² numerically, for random Z and every built-in δ.",
)
def tau_star_positive(profile: Profile) -> Outcome:
    seen: list[float] = []
    worst_identity = [0.0]

    def prop(example: dict[str, Any]) -> None:
        for delta in BUILT_IN:
            z, lam = build_state(example, delta)
            tau_star = admissible_step(z, delta, lam)
            assert tau_star > 0 and not math.isnan(tau_star), f"{delta}: τ* = {tau_star}"
            lin = _linearise(z, BUILT_IN[delta])
            ident = abs(lin.zlu + lin.d_half) / max(lin.d_half, 1e-300)
            worst_identity[0] = max(worst_identity[0], ident)
            assert ident <= 1e-8, f"{delta}: tr(ZᵀLU) = {lin.zlu:.6e} but −‖D^-1/2 LZ‖² = {-lin.d_half:.6e}"
            assert lin.ulu >= -1e-12 * max(lin.uu, 1e-300), f"{delta}: tr(UᵀLU) = {lin.ulu} < 0"
            seen.append(tau_star)

    failure = for_all(STATES, prop, profile)
    smallest = min(seen) if seen else math.nan
    measure = f"smallest τ* = {smallest:.4g} over {len(seen)} (Z, δ) cases; worst rel. trace-identity error {worst_identity[0]:.1e}"
    return Outcome(failure is None, measure, smallest, failure or {"largest_tau_star": max(seen, default=math.nan)})


@check(
    "energy_descent.steps_in_range_descend",
    SECTION,
    "Every Euler step with τ ∈ (0, τ*] (τ*·{0.01, 0.1, 0.5, 0.9, 1}) decreases the real energy: "
    "E(Z^k + τU; Z^k) − E(Z^k; Z^k) ≤ h(τ) ≤ 0 (up to 1e-12 relative round-off).",
)
def steps_in_range_descend(profile: Profile) -> Outcome:
    worst = [-math.inf]
    smallest_rel_decrease = [math.inf]

    def prop(example: dict[str, Any]) -> None:
        for delta in BUILT_IN:
            z, lam = build_state(example, delta)
            tau_max = _difformer_cap(delta, admissible_step(z, delta, lam))
            for frac in DEFAULT_FRACTIONS:
                rep = euler_step(z, delta, lam, frac * tau_max)
                rel = rep.gap / rep.scale
                worst[0] = max(worst[0], rel)
                if frac < 1:  # at τ* itself the decrease may be 0 (δ = quadratic)
                    smallest_rel_decrease[0] = min(smallest_rel_decrease[0], -rel)
                assert rep.gap <= DESCENT_TOL * rep.scale, (
                    f"{delta}: energy increased at τ = {frac}·τ*: gap {rep.gap:.3e} (scale {rep.scale:.3e})")
                assert rep.gap <= rep.surrogate + DESCENT_TOL * rep.scale, (
                    f"{delta}: gap {rep.gap:.3e} above the majoriser h = {rep.surrogate:.3e} at τ = {frac}·τ*")

    failure = for_all(STATES, prop, profile)
    measure = (f"worst gap/scale = {worst[0]:.2e} (≤ 1e-12 required); smallest relative decrease "
               f"for τ < τ* = {smallest_rel_decrease[0]:.2e}")
    return Outcome(failure is None, measure, worst[0], failure or {})


@check(
    "energy_descent.quadratic_tight",
    SECTION,
    "For δ(s) = s the majoriser is exact: the gap at τ* is 0 (relative 1e-9), τ* = 4λN/(1 + 2λN), "
    "and a step 0.1% beyond τ* increases the energy.",
)
def quadratic_tight(profile: Profile) -> Outcome:
    worst = [0.0]
    smallest_beyond = [math.inf]

    def prop(example: dict[str, Any]) -> None:
        z, lam = build_state(example, "quadratic")
        n = z.shape[0]
        tau_star = admissible_step(z, "quadratic", lam)
        closed = 4 * lam * n / (1 + 2 * lam * n)
        assert abs(tau_star - closed) <= 1e-10 * closed, f"τ* = {tau_star!r}, closed form 4λN/(1+2λN) = {closed!r}"
        at = euler_step(z, "quadratic", lam, tau_star)
        rel = abs(at.gap) / at.scale
        worst[0] = max(worst[0], rel)
        assert rel <= TIGHT_TOL, f"gap(τ*) = {at.gap:.3e}, relative {rel:.2e} > {TIGHT_TOL}"
        beyond = euler_step(z, "quadratic", lam, tau_star * (1 + 1e-3))
        smallest_beyond[0] = min(smallest_beyond[0], beyond.gap / beyond.scale)
        assert beyond.gap > 0, f"gap(τ*(1+1e-3)) = {beyond.gap:.3e} is not > 0"
        assert abs(beyond.gap - beyond.surrogate) <= TIGHT_TOL * beyond.scale, (
            f"gap(τ*(1+1e-3)) = {beyond.gap:.6e} differs from h = {beyond.surrogate:.6e}")

    failure = for_all(STATES, prop, profile)
    measure = (f"worst relative |gap(τ*)| = {worst[0]:.2e} (≤ 1e-9 required); smallest relative "
               f"gap(τ*(1+1e-3)) = {smallest_beyond[0]:.2e} (> 0 required)")
    return Outcome(failure is None, measure, worst[0], failure or {})


TRAJECTORY_STEPS = 20


def descent_trajectory(z0: torch.Tensor, delta: DeltaSpec, lam: float, steps: int = TRAJECTORY_STEPS) -> list[tuple[float, float, float]]:
    """E_k for the Euler trajectory with τ_k = min(1, τ*_k) and S re-evaluated at each Z^k:
    returns [(E_k, scale_k, τ_k)], E_0 = E(Z^0; Z^{-1}) := λΣδ(d(Z^0)), E_{k+1} = E(Z^{k+1}; Z^k)."""
    pen = penalty(delta)
    z = _state(z0)
    e0 = float(energy(z, z, pen, lam))
    out = [(e0, abs(e0), math.nan)]
    for _ in range(steps):
        tau = min(1.0, admissible_step(z, pen, lam))
        rep = euler_step(z, pen, lam, tau)
        e_next = float(energy(rep.z_next, z, pen, lam))
        out.append((e_next, rep.scale, tau))
        z = rep.z_next
    return out


@check(
    "energy_descent.trajectory_monotone",
    SECTION,
    f"Along a {TRAJECTORY_STEPS}-step Euler trajectory with S = energy(δ) at the current Z^k and "
    "τ_k = min(1, τ*_k): E(Z^{k+1}; Z^k) ≤ E(Z^k; Z^{k−1}), E(Z^0; Z^{-1}) := λΣδ(d(Z^0)).",
)
def trajectory_monotone(profile: Profile) -> Outcome:
    smallest = [math.inf]
    least_total = [math.inf]

    def prop(example: dict[str, Any]) -> None:
        for delta in BUILT_IN:
            z, lam = build_state(example, delta)
            traj = descent_trajectory(z, delta, lam)
            least_total[0] = min(least_total[0], (traj[0][0] - traj[-1][0]) / max(abs(traj[0][0]), 1e-300))
            for k in range(1, len(traj)):
                (e_prev, s_prev, _), (e_next, s_next, tau) = traj[k - 1], traj[k]
                scale = max(s_prev, s_next, 1e-300)
                smallest[0] = min(smallest[0], (e_prev - e_next) / scale)
                assert e_next <= e_prev + DESCENT_TOL * scale, (
                    f"{delta}: E_{k} = {e_next:.12e} > E_{k - 1} = {e_prev:.12e} (τ = {tau:.4g})")

    failure = for_all(STATES, prop, profile)
    measure = (f"smallest relative step decrease E_k − E_(k+1) = {smallest[0]:.2e} (≥ −1e-12 required; "
               f"≈ 0 once states have collapsed); least total decrease (E_0 − E_{TRAJECTORY_STEPS})/E_0 = "
               f"{least_total[0]:.3g}")
    return Outcome(failure is None, measure, smallest[0], failure or {})


__all__ = [
    "Derivation",
    "StepReport",
    "admissible_step",
    "build_state",
    "derivation",
    "descent_gap",
    "descent_trajectory",
    "euler_step",
    "surrogate_gap",
    "verify_descent",
]
