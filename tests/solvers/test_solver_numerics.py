"""Sound numerics on every path of solvers.solve: output times given in any precision land on the
grid, time arguments given as tensors carry exact gradients (or are refused), every dtype is
correct or refused up front, degenerate sizes and absurd step counts are handled."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st

import solvers
from solvers._fixed import build_grid
from solver_fields import Counted, decay

STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
FIXED = sorted(STAGES)
ADAPTIVE = list(solvers.ADAPTIVE_METHODS)
LOW = [torch.float16, torch.bfloat16]
# Tight but cheap tolerances per adaptive method (low orders need many steps for small rtol).
ADAPTIVE_RTOL = {"dopri5": 1e-10, "dopri8": 1e-10, "bosh3": 1e-8, "adaptive_heun": 1e-5}
F64 = torch.float64


def rk4_stability(x: float) -> float:
    return 1 + x + x**2 / 2 + x**3 / 6 + x**4 / 24


def rk4_stability_derivative(x: float) -> float:
    return 1 + x + x**2 / 2 + x**3 / 6


# --------------------------------------------------------------------------- 1. output times on the grid


def test_float32_linspace_t_eval_adds_no_steps():
    # Regression: float32 linspace times differ from the float64 grid by ~1e-9 and used to add
    # eight steps of that length (72 evaluations instead of 40).
    field = Counted(decay)
    sol = solvers.solve(field, torch.ones(2), 1.0, method="rk4", n_steps=10, t_eval=torch.linspace(0, 1, 11))
    assert sol.stats.nfe == field.calls == 40 and sol.stats.steps == 10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("t0, t1, n_out, factor", [  # grid points that are not dyadic fractions
    (0.0, 1.0, 10, 1), (0.0, 3.0, 7, 2), (-1.0, 2.0, 9, 1), (0.5, 3.0, 6, 3), (1.0, 2.0, 10, 2), (0.1, 0.7, 6, 1),
])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_linspace_t_eval_in_any_precision_lands_on_the_grid(dtype, t0, t1, n_out, factor, method):
    """t_eval = linspace(t0, t1, n_out + 1) in ``dtype`` on a grid of factor·n_out steps: exactly
    factor·n_out steps, and the states are those of the grid points (float64 times as oracle)."""
    t_eval = torch.linspace(t0, t1, n_out + 1, dtype=dtype)
    n_steps = factor * n_out
    z0 = torch.tensor([1.0, -2.0], dtype=F64)
    field = Counted(decay)
    sol = solvers.solve(field, z0, t1, t0=t0, method=method, n_steps=n_steps, t_eval=t_eval)
    assert sol.stats.steps == n_steps
    assert sol.stats.nfe == field.calls == STAGES[method] * n_steps
    exact_times = [t0 + (t1 - t0) * k / n_out for k in range(n_out + 1)]
    reference = solvers.solve(decay, z0, t1, t0=t0, method=method, n_steps=n_steps, t_eval=exact_times)
    assert reference.stats.steps == n_steps
    torch.testing.assert_close(sol.states, reference.states, rtol=0, atol=0)
    assert sol.times.tolist() == t_eval.double().tolist()  # the times as given


DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@given(
    dtype=st.sampled_from(sorted(DTYPES)),
    t0=st.floats(min_value=-3.0, max_value=3.0, allow_nan=False),
    length=st.floats(min_value=0.05, max_value=3.0, allow_nan=False),
    n_out=st.integers(min_value=1, max_value=30),
    factor=st.integers(min_value=1, max_value=3),
)
@example(dtype="float32", t0=0.0, length=1.0, n_out=10, factor=1)
@example(dtype="bfloat16", t0=-1.0, length=3.0, n_out=6, factor=2)
def test_linspace_snapping_property(dtype, t0, length, n_out, factor):
    """Whenever the dtype resolves the grid (a few of its ulps at the times' magnitude are well
    below h/8), its linspace output times add no step; the states equal those at float64 times."""
    t1 = t0 + length
    n_steps = factor * n_out
    h = length / n_steps
    eps = torch.finfo(DTYPES[dtype]).eps
    assume(8 * eps * max(abs(t0), abs(t1)) <= h / 8)
    t_eval = torch.linspace(t0, t1, n_out + 1, dtype=DTYPES[dtype])
    assume(bool((t_eval[1:] > t_eval[:-1]).all()))
    z0 = torch.tensor([0.5, -1.0], dtype=F64)
    sol = solvers.solve(decay, z0, t1, t0=t0, method="heun", n_steps=n_steps, t_eval=t_eval)
    assert sol.stats.steps == n_steps and sol.stats.nfe == 2 * n_steps
    exact = [t0 + length * k / n_out for k in range(n_out + 1)]
    reference = solvers.solve(decay, z0, t1, t0=t0, method="heun", n_steps=n_steps, t_eval=exact)
    torch.testing.assert_close(sol.states, reference.states, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_times_genuinely_off_the_grid_are_inserted(dtype, fraction):
    """Snapping never merges distinct points: a time (k + fraction)·h off the grid, exactly
    representable in ``dtype``, becomes a grid point of its own even when given in float16."""
    n, t1 = 8, 2.0
    h = t1 / n
    t = (3 + fraction) * h  # 0.8125, 0.875, 0.9375: exact in float16
    sol = solvers.solve(decay, torch.ones(2, dtype=F64), t1, method="rk4", n_steps=n,
                        t_eval=torch.tensor([t, t1], dtype=dtype))
    assert sol.stats.steps == n + 1
    reference = solvers.solve(decay, torch.ones(2, dtype=F64), t1, method="rk4", n_steps=n, t_eval=[t, t1])
    torch.testing.assert_close(sol.states, reference.states, rtol=0, atol=0)
    torch.testing.assert_close(sol.states[0], torch.full((2,), math.exp(-t), dtype=F64), rtol=0, atol=1e-4)


def test_snapping_is_capped_at_an_eighth_of_a_step():
    # Even an absurd tolerance identifies a time only with a grid point closer than h/8.
    grid = build_grid(0.0, 1.0, 4, [0.25 + 0.04, 0.5 + 0.03, 0.75 - 0.1], [1.0, 1.0, 1.0])
    assert len(grid.times) == 5 + 2  # 0.29 and 0.65 inserted; 0.53 is within h/8 = 0.03125 of 0.5
    assert [grid.times[i] for i in grid.save] == [0.29, 0.5, 0.65]
    assert [grid.times[i] for i in grid.base] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_float64_times_snap_only_within_round_off():
    # 5e-10 h off the grid is a distinct time in float64 (it used to be merged): a step of its own.
    sol = solvers.solve(decay, torch.ones(2, dtype=F64), 1.0, method="euler", n_steps=10, t_eval=[0.5 + 5e-11])
    assert sol.stats.steps == 11
    sol = solvers.solve(decay, torch.ones(2, dtype=F64), 1.0, method="euler", n_steps=10, t_eval=[0.1 * 3])
    assert sol.stats.steps == 10  # 0.30000000000000004 is the grid point 0.3 up to round-off


@pytest.mark.parametrize("method, kwargs", [("rk4", {"n_steps": 4}), ("dopri5", {})])
def test_output_times_at_the_ends_within_round_off(method, kwargs):
    """float32(0.3) = 0.30000001 > t1 = 0.3 is t1, not an error or a step past t1; float32(0.1)
    is t0 for t0 = 0.1 (an exact state, no 1e-9 step)."""
    z0 = torch.tensor([1.0, 2.0], dtype=F64)
    steps_taken: list[float] = []
    sol = solvers.solve(decay, z0, 0.3, t0=0.1, method=method, t_eval=torch.tensor([0.1, 0.2, 0.3]),
                        callback=lambda t, z: steps_taken.append(t), **kwargs)
    assert torch.equal(sol.states[0], z0) and torch.equal(sol.states[-1], sol.final)
    assert min(np.diff([0.1] + steps_taken)) > 1e-3
    with pytest.raises(ValueError, match="t_eval"):
        solvers.solve(decay, z0, 0.3, t0=0.1, method=method, t_eval=torch.tensor([0.1, 0.31]), **kwargs)


# --------------------------------------------------------------------------- 2. time arguments as tensors


def _time(value: float, dtype=F64) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, requires_grad=True)


def test_euler_time_gradients_match_closed_form():
    """Euler, n steps of dz/dt = -z: z(T) = (1 - (T - t0)/n)^n z0, so
    dz/dT = -(1 - (T - t0)/n)^(n-1) z0 and dz/dt0 = +(1 - (T - t0)/n)^(n-1) z0."""
    n, t0, t1 = 7, 0.3, 1.9
    z0 = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    t0_, t1_ = _time(t0), _time(t1)
    sol = solvers.solve(decay, z0, t1_, t0=t0_, method="euler", n_steps=n)
    base = (1 - (t1 - t0) / n) ** (n - 1)
    torch.testing.assert_close(sol.final, (1 - (t1 - t0) / n) ** n * z0, rtol=1e-14, atol=0)
    for wrt, sign in ((t1_, -1.0), (t0_, 1.0)):
        weights = torch.tensor([1.0, 2.0, -3.0], dtype=F64)
        (grad,) = torch.autograd.grad((sol.final * weights).sum(), wrt, retain_graph=True)
        assert grad.item() == pytest.approx(sign * base * (z0 * weights).sum().item(), rel=1e-13)


def test_rk4_time_gradients_match_stability_polynomial():
    """RK4 on dz/dt = λz: z(T) = R(λh)^n z0 with h = (T - t0)/n and R the stability polynomial,
    so dz/dT = λ R(λh)^(n-1) R'(λh) z0 = -dz/dt0."""
    n, lam, t0, t1 = 5, -1.3, -0.4, 1.1
    z0 = torch.tensor([0.7, -1.2], dtype=F64)
    t0_, t1_ = _time(t0), _time(t1)
    sol = solvers.solve(lambda t, z: lam * z, z0, t1_, t0=t0_, method="rk4", n_steps=n)
    x = lam * (t1 - t0) / n
    torch.testing.assert_close(sol.final, rk4_stability(x) ** n * z0, rtol=1e-14, atol=0)
    expected = lam * rk4_stability(x) ** (n - 1) * rk4_stability_derivative(x) * z0.sum().item()
    g1, g0 = torch.autograd.grad(sol.final.sum(), (t1_, t0_))
    assert g1.item() == pytest.approx(expected, rel=1e-13)
    assert g0.item() == pytest.approx(-expected, rel=1e-13)


def time_dependent(t, z):
    return torch.cos(3.0 * t) * z - 0.2 * z * z + torch.sin(t)


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_time_gradients_match_finite_differences(method):
    """Nonlinear, time-dependent field, outputs at t1 and at inserted times: gradcheck of the
    discrete map with respect to t0, t1 and z0 (central differences)."""
    z0 = torch.tensor([[0.4, -0.3], [1.1, 0.2]], dtype=F64, requires_grad=True)

    def run(t0, t1, z0):
        sol = solvers.solve(time_dependent, z0, t1, t0=t0, method=method, n_steps=5, t_eval=[0.35, 0.8, 1.2])
        return sol.states, sol.final

    assert torch.autograd.gradcheck(run, (_time(0.1), _time(1.3), z0), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("method", FIXED)
def test_differentiable_grid_keeps_the_values_of_the_float_grid(method):
    z0 = torch.tensor([0.4, -0.3], dtype=torch.float32)
    plain = solvers.solve(time_dependent, z0, 1.3, t0=0.1, method=method, n_steps=6, t_eval=[0.35, 1.3])
    traced = solvers.solve(time_dependent, z0, _time(1.3, torch.float32), t0=_time(0.1, torch.float32),
                           method=method, n_steps=6, t_eval=[0.35, 1.3])
    assert traced.stats == plain.stats
    torch.testing.assert_close(traced.states, plain.states, rtol=2e-7, atol=1e-7)


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("adjoint", [False, True])
def test_adaptive_time_gradients_are_the_ode_derivatives(method, adjoint):
    """dz/dt = cos(t) z: z(t) = z0 exp(sin t - sin t0), so dz(t1)/dt1 = cos(t1) z(t1),
    dz(t1)/dt0 = -cos(t0) z(t1) (f at t0 matters) and dz(t_m)/dt_m = cos(t_m) z(t_m)."""
    z0 = torch.tensor([1.0, -2.0], dtype=F64)
    t0_, t1_ = _time(0.2), _time(1.4)
    t_eval = torch.tensor([0.6, 1.1], dtype=F64, requires_grad=True)
    field = Counted(lambda t, z: torch.cos(t) * z)
    rtol = ADAPTIVE_RTOL[method]
    sol = solvers.solve(field, z0, t1_, t0=t0_, method=method, t_eval=t_eval, rtol=rtol, atol=rtol * 1e-2,
                        adjoint=adjoint)
    assert sol.stats.nfe == field.calls  # before the adjoint's backward pass evaluates it again
    w = torch.tensor([0.5, 1.5], dtype=F64)
    g1, g0, ge = torch.autograd.grad((sol.final * w).sum() + (sol.states * w).sum(), (t1_, t0_, t_eval))

    def z(t):
        return math.exp(math.sin(t) - math.sin(0.2)) * (z0 * w).sum().item()

    # The adjoint's backward solve (torchdiffeq) adds its own error: measured <= 4e-6 here.
    tol = max(100 * rtol, 1e-5 if adjoint else 0.0)
    assert g1.item() == pytest.approx(math.cos(1.4) * z(1.4), rel=tol)
    assert g0.item() == pytest.approx(-math.cos(0.2) * (z(1.4) + z(0.6) + z(1.1)), rel=tol)
    assert ge.tolist() == pytest.approx([math.cos(0.6) * z(0.6), math.cos(1.1) * z(1.1)], rel=tol)
    # One more evaluation per time that requires grad (t0, t1 and two outputs), all counted.
    plain = solvers.solve(Counted(lambda t, z: torch.cos(t) * z), z0, 1.4, t0=0.2, method=method,
                          t_eval=[0.6, 1.1], rtol=rtol, atol=rtol * 1e-2, adjoint=adjoint)
    assert sol.stats.nfe == plain.stats.nfe + 4
    torch.testing.assert_close(sol.states.detach(), plain.states, rtol=0, atol=0)


def test_adaptive_t1_gradient_matches_closed_form_decay():
    z0 = torch.tensor([1.0, 3.0], dtype=F64)
    t1_ = _time(0.9)
    sol = solvers.solve(decay, z0, t1_, method="dopri5", rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(sol.final.sum(), t1_)
    assert g.item() == pytest.approx(-math.exp(-0.9) * 4.0, rel=1e-8)


def test_time_tensors_without_grad_are_read_by_value():
    z0 = torch.tensor([1.0, -1.0], dtype=F64)
    by_float = solvers.solve(decay, z0, 1.0, t0=0.25, method="rk4", n_steps=4)
    by_tensor = solvers.solve(decay, z0, torch.tensor(1.0, dtype=torch.float32), t0=torch.tensor(0.25),
                              method="rk4", n_steps=4)
    assert torch.equal(by_float.final, by_tensor.final)
    by_int = solvers.solve(decay, z0, torch.tensor(1), t0=np.float32(0.25), method="rk4", n_steps=4)
    assert torch.equal(by_float.final, by_int.final)


def test_dt_requiring_grad_is_refused():
    with pytest.raises(TypeError, match=r"(?s)\bdt\b.*no gradient.*t1.*n_steps") as info:
        solvers.solve(decay, torch.ones(2), 1.0, method="rk4", dt=torch.tensor(0.1, requires_grad=True))
    assert "piecewise constant" in str(info.value)


@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_tolerances_requiring_grad_are_refused(name):
    with pytest.raises(TypeError, match=rf"{name}.*no gradient"):
        solvers.solve(decay, torch.ones(2), 1.0, method="dopri5", **{name: torch.tensor(1e-6, requires_grad=True)})


@pytest.mark.parametrize("t_eval", [
    torch.tensor([0.5, 1.0], dtype=F64, requires_grad=True),
    [0.5, torch.tensor(1.0, dtype=F64, requires_grad=True)],
])
def test_fixed_step_t_eval_requiring_grad_is_refused(t_eval):
    field = Counted(decay)
    with pytest.raises(TypeError, match=r"(?s)t_eval.*require grad.*adaptive"):
        solvers.solve(field, torch.ones(2, dtype=F64), 1.0, method="rk4", n_steps=4, t_eval=t_eval)
    assert field.calls == 0


@pytest.mark.parametrize("name", ["t0", "t1"])
@pytest.mark.parametrize("dtype, device", [(torch.float32, "cpu"), (F64, "meta")])
def test_time_requiring_grad_of_another_dtype_or_device_is_named(name, dtype, device):
    value = torch.tensor(0.0 if name == "t0" else 1.0, dtype=dtype, device=device, requires_grad=True)
    field = Counted(decay)
    with pytest.raises(TypeError, match=rf"(?s){name} requires grad.*{dtype}.*{device}.*z0 is torch.float64 on cpu"):
        solvers.solve(field, torch.ones(2, dtype=F64), **{"t1": 1.0, name: value}, method="rk4", n_steps=2)
    assert field.calls == 0


@pytest.mark.parametrize("name", ["t0", "t1"])
@pytest.mark.parametrize("value", [
    torch.ones(2, dtype=F64, requires_grad=True), torch.ones(2), torch.tensor(1 + 1j), torch.tensor(True),
], ids=["vector-grad", "vector", "complex", "bool"])
def test_time_tensors_that_are_not_real_scalars_are_refused(name, value):
    kwargs = {"t0": -1.0, "t1": 1.0, name: value}
    with pytest.raises(TypeError, match=rf"{name} must be a real number"):
        solvers.solve(decay, torch.ones(2, dtype=F64), kwargs.pop("t1"), **kwargs, method="rk4", n_steps=2)


# --------------------------------------------------------------------------- 3. dtypes


@pytest.mark.parametrize("dtype", LOW + [torch.float32])
@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("n_steps", [4, 16, 64])
def test_fixed_step_low_precision_matches_float64(dtype, method, n_steps):
    """The same discrete map in ``dtype`` and in float64, on a linear system with forcing: the
    round-off stays within n_steps·eps of the state's size (and the field sees ``dtype`` times)."""
    a = torch.tensor([[-1.0, 0.5], [-0.5, -1.0]], dtype=F64)
    z0 = torch.tensor([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.75]], dtype=F64)
    seen = set()

    def field(t, z):
        seen.add((t.dtype, z.dtype))
        return z @ a.to(z.dtype).T + torch.cos(t)

    reference = solvers.solve(field, z0, 2.0, method=method, n_steps=n_steps).final
    seen.clear()
    low = solvers.solve(field, z0.to(dtype), 2.0, method=method, n_steps=n_steps).final
    assert low.dtype == dtype and seen == {(dtype, dtype)}
    eps = torch.finfo(dtype).eps
    error = (low.double() - reference).abs().max().item()
    assert error <= n_steps * eps * reference.abs().max().item()


@pytest.mark.parametrize("dtype", LOW)
def test_fixed_step_low_precision_decay_matches_exact_solution(dtype):
    z0 = torch.linspace(-2, 2, 9, dtype=dtype)
    sol = solvers.solve(decay, z0, 1.0, method="rk4", n_steps=8)
    exact = z0.double() * math.exp(-1.0)
    # RK4 truncation (~1e-5 here) is far below the round-off of a few eps.
    assert (sol.final.double() - exact).abs().max().item() <= 8 * torch.finfo(dtype).eps * 2


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("adjoint", [False, True])
def test_adaptive_low_precision_is_refused_up_front(dtype, method, adjoint):
    # Regression: float16 dopri5 reported "step size underflow ... may be stiff".
    field = Counted(decay)
    with pytest.raises(TypeError, match=rf"(?s)z0.*{dtype}.*z0\.float\(\).*fixed-step"):
        solvers.solve(field, torch.ones(4, dtype=dtype), 1.0, method=method, adjoint=adjoint)
    assert field.calls == 0


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int32, torch.bool])
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_non_real_floating_states_are_refused(dtype, method):
    with pytest.raises(TypeError, match=r"z0.*real floating dtype"):
        solvers.solve(decay, torch.ones(3, dtype=dtype), 1.0, method=method)


def test_interval_collapsing_in_the_state_dtype_is_refused():
    field = Counted(decay)
    with pytest.raises(ValueError, match=r"(?s)t0.*t1.*float32"):
        solvers.solve(field, torch.ones(2), 1e9 + 1.0, t0=1e9, method="dopri5")
    assert field.calls == 0


# --------------------------------------------------------------------------- 4. degenerate sizes and counts


SHAPES = [(0, 3), (4, 0), (0,), (), (1, 3), (1, 1, 3)]


# Global error on dz/dt = -z over [0, 1] with 50 fixed steps, or at the adaptive rtol below.
DEGENERATE_TOL = {"euler": 1e-2, "midpoint": 1e-4, "heun": 1e-4, "rk4": 1e-8, "adaptive_heun": 1e-3}


def _kwargs(method):
    if method in STAGES:
        return {"n_steps": 50}
    rtol = ADAPTIVE_RTOL[method]
    return {"rtol": rtol, "atol": rtol * 1e-2}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("method", solvers.available_methods())
def test_every_method_on_degenerate_shapes(shape, method):
    """Empty, 0-d and batch-of-one states: the exact solution z0·e^{-t} (empty stays empty), with
    the shape kept, autograd connected to z0 and t1, and honest counters."""
    z0 = torch.linspace(0.5, 1.5, math.prod(shape), dtype=F64).reshape(shape).requires_grad_(True)
    t1 = _time(1.0)
    field = Counted(decay)
    sol = solvers.solve(field, z0, t1, method=method, t_eval=[0.0, 0.5, 1.0], **_kwargs(method))
    assert sol.final.shape == shape and sol.states.shape == (3, *shape)
    assert sol.stats.nfe == field.calls
    assert sol.stats.accepted + sol.stats.rejected == sol.stats.steps
    exact = torch.stack([z0.detach() * math.exp(-t) for t in (0.0, 0.5, 1.0)])
    tol = DEGENERATE_TOL.get(method, 1e-6)
    torch.testing.assert_close(sol.states.detach(), exact, rtol=0, atol=tol)
    g_z, g_t = torch.autograd.grad(sol.final.sum(), (z0, t1))
    assert g_z.shape == shape
    if z0.numel() == 0:
        assert g_t.item() == 0.0
        if method not in STAGES:  # its own exact solution: no steps, no evaluations
            assert sol.stats.steps == 0 and field.calls == 0
    else:
        assert g_t.item() == pytest.approx(-math.exp(-1.0) * z0.sum().item(), rel=10 * tol)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_empty_state_adaptive_with_adjoint_and_start_time_gradient(method):
    z0 = torch.zeros(0, 4, dtype=F64, requires_grad=True)
    t0 = _time(0.5)
    sol = solvers.solve(decay, z0, 2.0, t0=t0, method=method, adjoint=True)
    assert sol.final.shape == (0, 4) and sol.stats.as_dict() == {"steps": 0, "accepted": 0, "rejected": 0, "nfe": 0}
    g_z, g_t = torch.autograd.grad(sol.final.sum(), (z0, t0))
    assert g_z.shape == (0, 4) and g_t.item() == 0.0


@pytest.mark.parametrize("kwargs, names", [
    ({"dt": 1e-12}, ("dt", "max_steps")),
    ({"dt": 1e-320}, ("dt", "max_steps")),  # (t1 - t0)/dt overflows to inf
    ({"n_steps": 10**15}, ("n_steps", "max_steps")),
    ({"n_steps": 101, "max_steps": 100}, ("n_steps", "max_steps=100")),
    ({"dt": 0.001, "max_steps": 999}, ("dt", "max_steps=999")),
])
def test_absurd_step_counts_are_refused_before_any_work(kwargs, names):
    field = Counted(decay)
    with pytest.raises(ValueError) as info:
        solvers.solve(field, torch.ones(2), 1.0, method="rk4", **kwargs)
    assert field.calls == 0
    for name in names:
        assert name in str(info.value)


def test_step_count_at_the_budget_is_accepted():
    assert solvers.solve(decay, torch.ones(2), 1.0, method="euler", n_steps=100, max_steps=100).stats.steps == 100
    assert solvers.solve(decay, torch.ones(2), 1.0, method="euler", dt=0.01, max_steps=100).stats.steps == 100


def test_steps_below_float64_resolution_are_refused():
    with pytest.raises(ValueError, match=r"(?s)n_steps=100.*too short.*float64"):
        solvers.solve(decay, torch.ones(2, dtype=F64), 1e15 + 1.0, t0=1e15, method="rk4", n_steps=100)
    # One step needs no resolution of interior points.
    assert solvers.solve(decay, torch.ones(2, dtype=F64), 1e15 + 1.0, t0=1e15, method="rk4", n_steps=1).stats.steps == 1


def test_the_grid_is_never_built_point_by_point() -> None:
    """A billion steps: the grid answers any index from its formula and the few inserted times,
    without a list of n + 1 Python floats (that list alone would need ~32 GB)."""
    n = 10**9
    grid = build_grid(0.0, 2.0, n, [0.5, 1.0 + 1e-3 / n, 2.0])
    assert len(grid.times) == n + 2 and len(grid.base) == n + 1
    assert grid.times[grid.save[0]] == 0.5 and grid.times[grid.save[1]] == 1.0 + 1e-3 / n
    assert grid.save[2] == len(grid.times) - 1 and grid.times[-1] == 2.0
    assert grid.times[grid.save[1] - 1] == 1.0 and grid.times[grid.save[1] + 1] == 1.0 + 2.0 / n
    assert grid.base[n // 2 + 1] == grid.save[1] + 1


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_time_gradients_at_output_times_on_the_grid(method):
    """Output times that are interior grid points stay fixed times when t0 or t1 require grad
    (newcomer regression: rk4, n_steps=100, t_eval=[0.5, 0.9] gave d z(0.5)/d t1 = −0.91 where
    the ODE and finite differences give 0). There the discrete map has a kink (the output time
    changes sides of a moving grid point); autograd gives the one-sided derivative with the
    grid point before the output time, i.e. the backward difference in t0 and t1, and both agree
    with the ODE's derivative to O(h)."""
    z0 = torch.ones(3, dtype=F64)
    n, eps = 100, 1e-7

    def states(t0, t1):
        return solvers.solve(decay, z0, t1, t0=t0, method=method, n_steps=n, t_eval=[0.5, 0.9]).states

    t0, t1 = _time(0.0), _time(1.0)
    d_t0, d_t1 = torch.autograd.grad(states(t0, t1).sum(), (t0, t1))
    with torch.no_grad():
        base = states(0.0, 1.0).sum()
        backward_t0 = (base - states(-eps, 1.0).sum()) / eps
        backward_t1 = (base - states(0.0, 1.0 - eps).sum()) / eps
    assert abs(float(d_t0 - backward_t0)) <= 1e-5 and abs(float(d_t1 - backward_t1)) <= 1e-5
    exact_t0 = 3 * (math.exp(-0.5) + math.exp(-0.9))          # d/dt0 of e^{−(t_m − t0)}, summed
    assert abs(float(d_t0) - exact_t0) <= 10 / n and abs(float(d_t1)) <= 10 / n
    plain = solvers.solve(decay, z0, 1.0, method=method, n_steps=n, t_eval=[0.5, 0.9])
    torch.testing.assert_close(states(t0, t1).detach(), plain.states, rtol=1e-13, atol=0)


def test_check_options_refuses_what_the_method_does_not_use():
    for kwargs, match in [({"method": "rk4", "n_steps": 4, "rtol": 1e-3}, "rtol and atol apply to adaptive methods"),
                          ({"method": "dopri5", "n_steps": 3}, "dt and n_steps apply to fixed-step methods"),
                          ({"method": "rk4", "n_steps": 3, "adjoint": True}, "adjoint=True needs an adaptive"),
                          ({"method": "rk4"}, "needs dt=... or n_steps=..."),
                          ({"method": "rk5"}, "unknown method 'rk5'")]:
        with pytest.raises(ValueError, match=match):
            solvers.check_options(**kwargs)
        with pytest.raises(ValueError, match=match):
            solvers.solve(decay, torch.ones(2), 1.0, **kwargs)
    assert solvers.check_options("dopri5") == (1e-6, 1e-8)
    assert solvers.check_options("euler", dt=0.1) == (None, None)
