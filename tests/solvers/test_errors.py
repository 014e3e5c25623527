"""Bad input to solvers.solve and to the tableau registry: clear errors that name the argument."""

from __future__ import annotations

import math
import uuid
from fractions import Fraction

import numpy as np
import pytest
import torch

import solvers
from solvers import ButcherTableau, register_tableau




def decay(t, z):
    return -z


Z0 = torch.ones(3, 2, dtype=torch.float64)


def run(**overrides):
    kwargs = {"field": decay, "z0": Z0, "t1": 1.0, "method": "rk4", "n_steps": 4}
    kwargs.update(overrides)
    field, z0, t1 = kwargs.pop("field"), kwargs.pop("z0"), kwargs.pop("t1")
    return solvers.solve(field, z0, t1, **kwargs)


# --------------------------------------------------------------------------- state


def test_int_state_rejected():
    with pytest.raises(TypeError, match=r"z0.*float"):
        run(z0=torch.ones(3, 2, dtype=torch.int64))


@pytest.mark.parametrize("value", [[[1.0, 2.0]], np.ones((2, 2)), 1.0])
def test_non_tensor_state_rejected(value):
    with pytest.raises(TypeError, match=r"z0.*torch\.Tensor"):
        run(z0=value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_state_rejected(bad):
    z0 = Z0.clone()
    z0[1, 0] = bad
    with pytest.raises(ValueError, match=r"z0.*(?i:nan|inf|non-finite)"):
        run(z0=z0)


# --------------------------------------------------------------------------- step control


@pytest.mark.parametrize("dt", [-0.1, 0.0])
def test_non_positive_dt_rejected(dt):
    with pytest.raises(ValueError, match=r"\bdt\b"):
        run(n_steps=None, dt=dt)


@pytest.mark.parametrize("dt", [float("nan"), float("inf")])
def test_non_finite_dt_rejected(dt):
    with pytest.raises(ValueError, match=r"\bdt\b"):
        run(n_steps=None, dt=dt)


@pytest.mark.parametrize("n_steps", [0, -1])
def test_non_positive_n_steps_rejected(n_steps):
    with pytest.raises(ValueError, match="n_steps"):
        run(n_steps=n_steps)


@pytest.mark.parametrize("n_steps", [2.5, "4", True])
def test_non_integer_n_steps_rejected(n_steps):
    with pytest.raises(TypeError, match="n_steps"):
        run(n_steps=n_steps)


def test_numpy_integer_n_steps_accepted():
    sol = run(n_steps=np.int64(4))
    assert sol.stats.steps == 4


def test_both_dt_and_n_steps_rejected():
    with pytest.raises(ValueError, match=r"(?s)(\bdt\b.*n_steps|n_steps.*\bdt\b)"):
        run(n_steps=4, dt=0.25)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_neither_dt_nor_n_steps_rejected_for_fixed(method):
    with pytest.raises(ValueError, match=r"(?s)(\bdt\b.*n_steps|n_steps.*\bdt\b)"):
        run(method=method, n_steps=None)


@pytest.mark.parametrize("kwargs", [{"dt": 0.1}, {"n_steps": 10}])
def test_step_control_rejected_for_adaptive(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        solvers.solve(decay, Z0, 1.0, method="dopri5", **kwargs)


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [0.0, -1e-6])
def test_non_positive_tolerances_rejected(name, value):
    with pytest.raises(ValueError, match=name):
        solvers.solve(decay, Z0, 1.0, method="dopri5", **{name: value})


@pytest.mark.parametrize("value", [0, -5, 2.5])
def test_bad_max_steps_rejected(value):
    with pytest.raises((TypeError, ValueError), match="max_steps"):
        solvers.solve(decay, Z0, 1.0, method="dopri5", max_steps=value)


# --------------------------------------------------------------------------- times


@pytest.mark.parametrize("t_eval", [[0.5, 1.5], [-0.1, 0.5], [1.0000001]])
def test_t_eval_outside_interval_rejected(t_eval):
    with pytest.raises(ValueError, match="t_eval"):
        run(t_eval=t_eval)


@pytest.mark.parametrize("t_eval", [[0.5, 0.2], [0.1, 0.3, 0.2, 0.9]])
def test_t_eval_not_increasing_rejected(t_eval):
    with pytest.raises(ValueError, match=r"t_eval.*increasing"):
        run(t_eval=t_eval)


@pytest.mark.parametrize("t_eval", [[0.5, 0.5], torch.tensor([0.2, 0.7, 0.7, 1.0])])
def test_t_eval_duplicates_rejected(t_eval):
    with pytest.raises(ValueError, match="t_eval"):
        run(t_eval=t_eval)


def test_t_eval_non_finite_and_empty_rejected():
    with pytest.raises(ValueError, match="t_eval"):
        run(t_eval=[0.2, float("nan")])
    with pytest.raises(ValueError, match="t_eval"):
        run(t_eval=[])
    with pytest.raises(ValueError, match="t_eval"):
        run(t_eval=torch.zeros(2, 2))
    with pytest.raises(TypeError, match="t_eval"):
        run(t_eval=["a"])


@pytest.mark.parametrize("t0, t1", [(0.0, 0.0), (1.0, 0.5), (0.0, -1.0)])
def test_t1_not_after_t0_rejected(t0, t1):
    with pytest.raises(ValueError, match=r"\bt1\b"):
        run(t0=t0, t1=t1)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_t1_rejected(value):
    with pytest.raises(ValueError, match=r"\bt1\b"):
        run(t1=value)


def test_non_number_t0_rejected():
    with pytest.raises(TypeError, match=r"\bt0\b"):
        run(t0="0")


# --------------------------------------------------------------------------- method, field


@pytest.mark.parametrize("method", ["rk5", "RK4", "", None])
def test_unknown_method_lists_valid_names(method):
    with pytest.raises(ValueError, match=r"(?s)method.*'?rk4'?.*dopri5") as info:
        run(method=method)
    for name in ("euler", "midpoint", "heun", "rk4", "dopri5", "bosh3"):
        assert name in str(info.value)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_adjoint_with_fixed_method_rejected(method):
    with pytest.raises(ValueError, match="adjoint"):
        run(method=method, adjoint=True)


def test_non_callable_field_rejected():
    with pytest.raises(TypeError, match="field"):
        run(field=torch.ones(3))


def test_non_callable_callback_rejected():
    with pytest.raises(TypeError, match="callback"):
        run(callback=3)


@pytest.mark.parametrize("method, kwargs", [("euler", {"n_steps": 2}), ("rk4", {"n_steps": 2}), ("dopri5", {})])
def test_field_returning_wrong_shape_rejected(method, kwargs):
    def field(t, z):
        return z.sum(dim=-1)

    with pytest.raises(ValueError, match=r"field.*shape.*\(3, 2\)"):
        solvers.solve(field, Z0, 1.0, method=method, **kwargs)


@pytest.mark.parametrize("method, kwargs", [("euler", {"n_steps": 2}), ("dopri5", {})])
def test_field_returning_non_tensor_rejected(method, kwargs):
    with pytest.raises((TypeError, ValueError), match="field"):
        solvers.solve(lambda t, z: 0.0, Z0, 1.0, method=method, **kwargs)


# --------------------------------------------------------------------------- tableau registry

F = Fraction


def test_duplicate_tableau_name_rejected():
    before = solvers.get_tableau("rk4")

    def make():
        return ButcherTableau(name="rk4", order=1, a=((),), b=(F(1),), c=(F(0),))

    with pytest.raises(ValueError, match=r"rk4.*already registered"):
        register_tableau(make)
    assert solvers.get_tableau("rk4") is before  # the original method is untouched


@pytest.mark.parametrize(
    "a, b, c, pattern",
    [
        # c[1] is not the row sum of a[1]
        (((), (F(1, 2),)), (F(0), F(1)), (F(0), F(1)), r"c\[1\].*row"),
        # weights do not sum to 1
        (((), (F(1),)), (F(1, 2), F(1, 4)), (F(0), F(1)), r"\bb\b.*sum to 1"),
        # a given as a full square matrix with a diagonal entry: not strictly lower triangular
        (((F(1, 2), F(0)), (F(1, 2), F(0))), (F(1, 2), F(1, 2)), (F(1, 2), F(1, 2)), r"row 0 of a"),
        # an entry above the diagonal in the last row
        (((), (F(1), F(0))), (F(1, 2), F(1, 2)), (F(0), F(1)), r"row 1 of a"),
        # stage counts disagree
        (((), (F(1),)), (F(1),), (F(0), F(1)), r"stages"),
    ],
)
def test_inconsistent_tableau_rejected(a, b, c, pattern):
    name = f"broken_{uuid.uuid4().hex}"

    def make():
        return ButcherTableau(name=name, order=2, a=a, b=b, c=c)

    with pytest.raises(ValueError, match=pattern):
        register_tableau(make)
    assert name not in solvers.fixed_step_methods()
    assert name not in solvers.available_methods()


def test_register_non_tableau_rejected():
    def make():
        return {"a": ((),), "b": (1,), "c": (0,)}

    with pytest.raises(TypeError, match="ButcherTableau"):
        register_tableau(make)


def ralston_reference(f, t0: float, y0: float, t1: float, n: int) -> float:
    """Ralston's 2nd-order method written out by hand (scalar, Python floats)."""
    h = (t1 - t0) / n
    t, y = t0, y0
    for k in range(n):
        t = t0 + k * h
        k1 = f(t, y)
        k2 = f(t + 2 * h / 3, y + 2 * h / 3 * k1)
        y = y + h * (k1 / 4 + 3 * k2 / 4)
    return y


def test_user_registered_tableau_is_usable():
    # Registration is global: a name unique to this test (and to this process).
    name = f"ralston2_test_errors_{uuid.uuid4().hex[:12]}"

    @register_tableau
    def ralston() -> ButcherTableau:
        return ButcherTableau(name=name, order=2, a=((), (F(2, 3),)), b=(F(1, 4), F(3, 4)), c=(F(0), F(2, 3)))

    assert name in solvers.fixed_step_methods()
    assert name in solvers.available_methods()
    assert solvers.get_tableau(name).stages == 2

    # A time-dependent nonlinear field distinguishes Ralston from midpoint and Heun.
    def f_float(t, y):
        return math.cos(t) * y - 0.5 * y * y

    def f_torch(t, z):
        return torch.cos(t) * z - 0.5 * z * z

    z0 = torch.tensor([0.8], dtype=torch.float64)
    sol = solvers.solve(f_torch, z0, 2.0, t0=0.5, method=name, n_steps=7)
    assert sol.stats.nfe == 14 and sol.stats.steps == 7
    expected = ralston_reference(f_float, 0.5, 0.8, 2.0, 7)
    assert sol.final.item() == pytest.approx(expected, rel=1e-13, abs=1e-14)
    for other in ("midpoint", "heun"):
        other_final = solvers.solve(f_torch, z0, 2.0, t0=0.5, method=other, n_steps=7).final.item()
        assert abs(other_final - expected) > 1e-8

    # And it converges at order 2 against a very fine rk4 reference.
    reference = solvers.solve(f_torch, z0, 2.0, t0=0.5, method="rk4", n_steps=4000).final.item()
    errors = [abs(solvers.solve(f_torch, z0, 2.0, t0=0.5, method=name, n_steps=n).final.item() - reference)
              for n in (16, 32, 64, 128, 256)]
    slope = np.polyfit(np.log([1 / n for n in (16, 32, 64, 128, 256)]), np.log(errors), 1)[0]
    assert abs(slope - 2) <= 0.15, (slope, errors)
