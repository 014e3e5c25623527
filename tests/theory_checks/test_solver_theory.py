"""Solver-theory checks: each passes in the fast profile, and each can fail.

The failure tests feed deliberately wrong tableaux (built with ``ButcherTableau(...)`` and never
registered, or registered only into a per-test copy of the registry) to the per-tableau functions
and to the checks themselves; known tableaux from the literature are oracles for the
rooted-tree machinery (Butcher's 6-stage fifth-order method must satisfy all 17 conditions).
"""

from __future__ import annotations

import math
import uuid
from fractions import Fraction as F

import numpy as np
import pytest
import sympy
import torch

import solvers
import solvers._tableau as tableau_module
from solvers import ButcherTableau, get_tableau, register_tableau
from theory_checks import Profile, registered_checks, run_check
from theory_checks import solver_theory as th

CHECKS = ["solver_theory.order_conditions", "solver_theory.stability_function",
          "solver_theory.euler_stability_bound", "solver_theory.nonlinear_orders"]


def by_name(name: str):
    return next(c for c in registered_checks() if c.name == name)


# --------------------------------------------------------------------------- tableaux

RK38 = ButcherTableau(
    name="rk38_unregistered", order=4,
    a=((), (F(1, 3),), (F(-1, 3), F(1)), (F(1), F(-1), F(1))),
    b=(F(1, 8), F(3, 8), F(3, 8), F(1, 8)), c=(F(0), F(1, 3), F(2, 3), F(1)),
)
KUTTA3 = ButcherTableau(
    name="kutta3_unregistered", order=3,
    a=((), (F(1, 2),), (F(-1), F(2))), b=(F(1, 6), F(2, 3), F(1, 6)), c=(F(0), F(1, 2), F(1)),
)
BUTCHER5 = ButcherTableau(  # Butcher's 6-stage fifth-order method
    name="butcher5_unregistered", order=5,
    a=((), (F(1, 4),), (F(1, 8), F(1, 8)), (F(0), F(-1, 2), F(1)), (F(3, 16), F(0), F(0), F(9, 16)),
       (F(-3, 7), F(2, 7), F(12, 7), F(-12, 7), F(8, 7))),
    b=(F(7, 90), F(0), F(32, 90), F(12, 90), F(32, 90), F(7, 90)),
    c=(F(0), F(1, 4), F(1, 4), F(1, 2), F(3, 4), F(1)),
)
# claims order 2 but puts all weight on the first stage: Euler in disguise
FAKE_ORDER2 = ButcherTableau(name="fake2_unregistered", order=2, a=((), (F(1, 2),)), b=(F(1), F(0)),
                             c=(F(0), F(1, 2)))
# classical RK4 with b perturbed by ±1/100 (still sums to 1, so the tableau is accepted)
PERTURBED_RK4 = ButcherTableau(
    name="rk4_perturbed_unregistered", order=4,
    a=((), (F(1, 2),), (F(0), F(1, 2)), (F(0), F(0), F(1))),
    b=(F(1, 6) + F(1, 100), F(1, 3) - F(1, 100), F(1, 3), F(1, 6)), c=(F(0), F(1, 2), F(1, 2), F(1)),
)


# --------------------------------------------------------------------------- the checks pass


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes_in_fast_profile(name):
    result = run_check(by_name(name), Profile.fast())
    assert result.passed, (result.measure, result.details)
    assert result.section == "solver theory" and result.measure and result.value is not None


def test_order_conditions_measure_names_every_builtin():
    outcome = th.order_conditions(Profile.fast())
    assert "rk4 order 4: 8 of 8 conditions hold, order 5 fails (9 of 9)" in outcome.measure
    assert "euler order 1: 1 of 1 conditions hold, order 2 fails (1 of 1)" in outcome.measure
    for name in ("midpoint", "heun"):
        assert f"{name} order 2: 2 of 2 conditions hold, order 3 fails (2 of 2)" in outcome.measure


def test_stability_function_builtins():
    z = sympy.Symbol("z")
    for name in ("euler", "midpoint", "heun", "rk4"):
        tab = get_tableau(name)
        r = th.stability_function(tab, z)
        taylor = sum(z**k / sympy.factorial(k) for k in range(tab.order + 1))
        assert sympy.expand(r - taylor) == 0, (name, r)
    outcome = th.stability_function_check(Profile.fast())
    assert outcome.details["euler"]["x_min"] == pytest.approx(-2.0, abs=1e-12)
    assert outcome.details["heun"]["x_min"] == pytest.approx(-2.0, abs=1e-12)
    assert outcome.details["rk4"]["x_min"] == pytest.approx(-2.785293563405, abs=1e-9)
    assert outcome.details["rk4"]["R"] == "z**4/24 + z**3/6 + z**2/2 + z + 1"


def test_nonlinear_orders_reference_is_verified():
    outcome = th.nonlinear_orders(Profile.fast())
    ref = outcome.details["reference"]
    assert ref["rk4_fine_error_estimate"] <= th.REFERENCE_TOL * ref["smallest_measured_error"]
    for method, order in th.ORDERS.items():
        info = outcome.details[method]
        assert len(info["dts"]) >= 5 and info["monotone"]
        assert abs(info["slope"] - order) <= th.SLOPE_TOL


# --------------------------------------------------------------------------- rooted trees


def test_rooted_tree_counts():
    assert [len(th.rooted_trees(n)) for n in range(1, 8)] == [1, 1, 2, 4, 9, 20, 48]
    assert all(th.tree_order(t) == n for n in range(1, 7) for t in th.rooted_trees(n))


def test_trees_are_distinct_canonical_forms():
    for n in range(1, 7):
        trees = th.rooted_trees(n)
        assert len(set(trees)) == len(trees)
        assert all(t == th._canonical(t) for t in trees)


def test_monotone_labellings_sum_to_factorial():
    # α(t) = |t|!/(σ(t)γ(t)) counts the increasing labellings of t; Σ_{|t|=n} α(t) = (n−1)!.
    for n in range(1, 8):
        total = sum(F(math.factorial(n), th.tree_symmetry(t) * th.tree_density(t)) for t in th.rooted_trees(n))
        assert total == math.factorial(n - 1), n


def test_densities_and_labels_of_small_trees():
    gamma = {th.tree_label(t): th.tree_density(t) for n in range(1, 5) for t in th.rooted_trees(n)}
    assert gamma == {"τ": 1, "[τ]": 2, "[τ²]": 3, "[[τ]]": 6, "[τ³]": 4, "[τ[τ]]": 8, "[[τ²]]": 12, "[[[τ]]]": 24}


def test_elementary_weights_of_rk4_match_the_classical_sums():
    # Φ for trees of order ≤ 4 written out by hand: bᵀ1, bᵀc, bᵀc², bᵀAc, bᵀc³, bᵀ(c∘Ac), bᵀAc², bᵀA²c
    a, b, c = th.tableau_matrices(get_tableau("rk4"))
    ac = a * c
    expected = {
        "τ": sum(b), "[τ]": (b.T * c)[0], "[τ²]": (b.T * c.applyfunc(lambda x: x**2))[0], "[[τ]]": (b.T * ac)[0],
        "[τ³]": (b.T * c.applyfunc(lambda x: x**3))[0], "[τ[τ]]": (b.T * c.multiply_elementwise(ac))[0],
        "[[τ²]]": (b.T * a * c.applyfunc(lambda x: x**2))[0], "[[[τ]]]": (b.T * a * ac)[0],
    }
    for n in range(1, 5):
        for t in th.rooted_trees(n):
            assert th.elementary_weight(t, a, b) == expected[th.tree_label(t)]
            assert expected[th.tree_label(t)] == sympy.Rational(1, th.tree_density(t))


# --------------------------------------------------------------------------- order_report


@pytest.mark.parametrize("tab, conditions", [(RK38, 8), (KUTTA3, 4), (BUTCHER5, 17)])
def test_known_methods_have_their_order_and_not_the_next(tab, conditions):
    holds, fails_next, details = th.order_report(tab)
    assert holds and fails_next, details["summary"]
    assert details["exact"] and details["conditions_up_to_p"] == conditions


def test_method_claiming_order_two_with_euler_weights_fails():
    holds, fails_next, details = th.order_report(FAKE_ORDER2)
    assert not holds
    assert details["failed_up_to_p"] == ["[τ]: Φ = 0 ≠ 1/γ = 1/2"]
    assert details["summary"].startswith("order 2: 1 of 2 conditions hold")


def test_rk4_with_perturbed_weights_fails():
    holds, _, details = th.order_report(PERTURBED_RK4)
    assert not holds
    assert sum(b for b in PERTURBED_RK4.b) == 1  # first-order condition still holds ...
    assert any(f.startswith("[τ]:") for f in details["failed_up_to_p"])  # ... but bᵀc = 1/2 does not


def test_under_claimed_order_is_reported():
    # RK4 claimed as order 3 satisfies all order-4 conditions: "and not the next" must fail.
    under = ButcherTableau(name="rk4_as_order3_unregistered", order=3, a=get_tableau("rk4").a,
                           b=get_tableau("rk4").b, c=get_tableau("rk4").c)
    holds, fails_next, details = th.order_report(under)
    assert holds and not fails_next
    assert details["failing_at_p_plus_1"] == 0 and details["conditions_at_p_plus_1"] == 4


def test_float_tableau_is_checked_within_tolerance():
    ralston = ButcherTableau(name="ralston_float_unregistered", order=2, a=((), (2 / 3,)), b=(0.25, 0.75),
                             c=(0.0, 2 / 3))
    holds, fails_next, details = th.order_report(ralston)
    assert holds and fails_next and not details["exact"]


# --------------------------------------------------------------------------- stability_report


def test_stability_of_wrong_and_higher_order_tableaux():
    assert not th.stability_report(PERTURBED_RK4)["passed"]
    assert not th.stability_report(FAKE_ORDER2)["agrees_to_order_p"]
    rep = th.stability_report(BUTCHER5)  # s = 6 > p = 5: agrees through z^5, not a Taylor polynomial
    assert rep["passed"] and rep["linear_order"] == 5 and rep["equals_taylor_polynomial"] is False
    kutta = th.stability_report(KUTTA3)
    assert kutta["R"] == "z**3/6 + z**2/2 + z + 1"
    assert kutta["x_min"] == pytest.approx(-2.5127453266, abs=1e-8)


def test_real_stability_interval_skips_touching_roots():
    z = sympy.Symbol("z")
    # R = 1 + z + z²/2 reaches |R| = 1 only at 0 and −2; R = (1 + z/2)² touches 0 but stays ≤ 1 to −4
    assert th.real_stability_interval(1 + z + z**2 / 2, z) == pytest.approx(-2.0)
    assert th.real_stability_interval(sympy.expand((1 + z / 2) ** 2), z) == pytest.approx(-4.0)


# --------------------------------------------------------------------------- registry-level failures


@pytest.fixture
def private_registry(monkeypatch):
    """Registrations inside the test go into a copy of the registry, restored afterwards."""
    monkeypatch.setattr(tableau_module, "_TABLEAUX", dict(tableau_module._TABLEAUX))


def test_user_registered_wrong_tableau_fails_the_checks(private_registry):
    name = f"rk4_perturbed_{uuid.uuid4().hex[:12]}"

    @register_tableau
    def perturbed() -> ButcherTableau:
        return ButcherTableau(name=name, order=4, a=PERTURBED_RK4.a, b=PERTURBED_RK4.b, c=PERTURBED_RK4.c)

    assert name in solvers.fixed_step_methods()
    order = th.order_conditions(Profile.fast())
    assert not order.passed and name in order.details and f"{name} order 4: " in order.measure
    assert th.stability_function_check(Profile.fast()).passed is False


def test_user_registered_correct_tableau_is_covered(private_registry):
    name = f"rk38_{uuid.uuid4().hex[:12]}"

    @register_tableau
    def rk38() -> ButcherTableau:
        return ButcherTableau(name=name, order=4, a=RK38.a, b=RK38.b, c=RK38.c)

    order = th.order_conditions(Profile.fast())
    assert order.passed and f"{name} order 4: 8 of 8 conditions hold" in order.measure
    stab = th.stability_function_check(Profile.fast())
    assert stab.passed and stab.details[name]["x_min"] == pytest.approx(-2.785293563405, abs=1e-9)


# --------------------------------------------------------------------------- Euler bound


def test_euler_symbolic_bound():
    sym = th._euler_symbolic()
    assert sym["ok"] and sym["bound"] == 1
    assert sym["worst_eigenvalue_interval"] == sympy.Interval.Lopen(0, 1)


def test_even_cycle_spectrum_and_growth():
    s = th.even_cycle_operator(6)
    eig = np.linalg.eigvalsh(s - np.eye(6))
    assert eig.min() == pytest.approx(-2.0) and eig.max() == pytest.approx(0.0, abs=1e-12)
    z0 = torch.from_numpy(np.random.default_rng(0).standard_normal((6, 2)))
    growth_stable, peak_stable = th.euler_growth(s, 0.9, 100, z0)
    growth_unstable, peak_unstable = th.euler_growth(s, 1.2, 100, z0)
    assert peak_stable <= 1 + 1e-12 and growth_stable <= 1 + 1e-9
    assert growth_unstable == pytest.approx(abs(1 - 2 * 1.2), rel=1e-6) and peak_unstable > 1e6
