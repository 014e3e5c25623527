"""solvers.solve: exact work counters, output-grid semantics, gradients, dtypes, batching and
integration failures."""

from __future__ import annotations

import math
import re
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import solvers
from solvers import IntegrationError
from solvers._fixed import build_grid
from solver_fields import Counted, decay


STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
FIXED = sorted(STAGES)


def graph_generator(num_nodes: int, seed: int) -> torch.Tensor:
    """S − I for S = D̃^{-1}(A + I) of a seeded random undirected graph (numpy, float64)."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((num_nodes, num_nodes)) < 0.5, k=1).astype(np.float64)
    a = upper + upper.T + np.eye(num_nodes)
    return torch.from_numpy(a / a.sum(axis=1, keepdims=True) - np.eye(num_nodes))


# --------------------------------------------------------------------------- work counters


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("n_steps", [1, 3, 17])
def test_fixed_step_counts_with_n_steps(method, n_steps):
    field = Counted(decay)
    sol = solvers.solve(field, torch.ones(3, 2, dtype=torch.float64), 1.5, method=method, n_steps=n_steps)
    assert sol.stats.steps == n_steps
    assert sol.stats.accepted == n_steps
    assert sol.stats.rejected == 0
    assert sol.stats.nfe == STAGES[method] * n_steps
    assert field.calls == sol.stats.nfe
    assert sol.status == "success"
    assert sol.method == method


@pytest.mark.parametrize(
    "t0, t1, dt, expected",
    [
        (0.0, 1.0, 0.1, 10),  # 1.0 / 0.1 == 10.0 exactly: 10 steps, not 11
        (0.0, 2.1, 0.3, 7),  # 2.1 / 0.3 == 7.000000000000001 in floating point
        (0.0, 2.1, 0.7, 3),  # 3.0000000000000004
        (0.0, 2.7, 0.3, 9),  # 9.000000000000002
        (0.1, 0.4, 0.1, 3),  # (0.4 - 0.1) / 0.1 == 3.0000000000000004
        (0.0, 0.7, 0.1, 7),  # 6.999999999999999
        (0.0, 1.0, 0.3, 4),  # a genuine remainder: ceil(3.33) = 4
        (0.0, 1.0, 0.4, 3),
        (0.0, 1.0, 2.5, 1),  # dt larger than the interval: one step
    ],
)
def test_fixed_step_count_with_dt(t0, t1, dt, expected):
    # The intended count is ceil of the decimal quotient, computed exactly with fractions.
    assert expected == max(1, math.ceil((Fraction(str(t1)) - Fraction(str(t0))) / Fraction(str(dt))))
    times: list[float] = []
    field = Counted(decay)
    sol = solvers.solve(field, torch.ones(2, dtype=torch.float64), t1, t0=t0, method="heun", dt=dt,
                        callback=lambda t, z: times.append(t))
    assert sol.stats.steps == expected
    assert sol.stats.nfe == 2 * expected == field.calls
    assert len(times) == expected
    # Equal steps of (t1 - t0)/n, never longer than dt.
    h = (t1 - t0) / expected
    np.testing.assert_allclose(np.diff([t0] + times), h, rtol=1e-12)
    assert h <= dt * (1 + 1e-12)
    assert times[-1] == pytest.approx(t1, abs=1e-14)


def test_dopri5_counts_match_own_call_counter():
    # A field with a time-varying rate forces rejections at a loose tolerance.
    field = Counted(lambda t, z: -50.0 * torch.cos(5.0 * t) * z)
    accepted_times: list[float] = []
    sol = solvers.solve(field, torch.ones(3, dtype=torch.float64), 3.0, method="dopri5", rtol=1e-3, atol=1e-6,
                        callback=lambda t, z: accepted_times.append(t))
    s = sol.stats
    assert s.nfe == field.calls > 0
    assert s.accepted + s.rejected == s.steps
    assert s.accepted > 0 and s.rejected > 0  # this problem does reject steps: the split is exercised
    # dopri5 is FSAL: at least 6 new evaluations per attempted step, plus the initial ones.
    assert s.nfe >= 6 * s.steps
    # The callback runs once per accepted step, with increasing times ending at t1.
    assert len(accepted_times) == s.accepted
    assert all(b > a for a, b in zip(accepted_times, accepted_times[1:]))
    assert accepted_times[-1] == pytest.approx(3.0)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun", "dopri8"])
def test_adaptive_methods_counts_and_accuracy(method):
    field = Counted(decay)
    z0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    # adaptive_heun is order 2: a tolerance of 1e-8 would cost ~8000 steps.
    rtol = 1e-6 if method == "adaptive_heun" else 1e-8
    sol = solvers.solve(field, z0, 1.0, method=method, rtol=rtol, atol=rtol * 1e-2)
    assert sol.stats.nfe == field.calls
    assert sol.stats.accepted + sol.stats.rejected == sol.stats.steps > 0
    # torchdiffeq's dopri8 reads t1 off a low-order interpolant past its last step: looser there.
    tol = 1e-5 if method == "dopri8" else 1e-6
    torch.testing.assert_close(sol.final, z0 * math.exp(-1.0), rtol=0, atol=tol)


# --------------------------------------------------------------------------- grid semantics


@st.composite
def grid_cases(draw):
    """(t0, t1, n, how, dt, t_eval units) with t_eval given in units of h/100 from t0, so that
    each output time is either exactly on the base grid (a multiple of 100) or clearly off it."""
    t0 = draw(st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, allow_infinity=False))
    length = draw(st.floats(min_value=0.05, max_value=2.0, allow_nan=False, allow_infinity=False))
    t1 = t0 + length
    n = draw(st.integers(min_value=1, max_value=25))
    how = draw(st.sampled_from(["n_steps", "dt_exact", "dt_remainder"]))
    if how == "n_steps":
        dt = None
    elif how == "dt_exact":
        dt = (t1 - t0) / n
    else:
        dt = (t1 - t0) / (n - draw(st.integers(min_value=5, max_value=95)) / 100)
    units = draw(st.one_of(
        st.none(),
        st.lists(st.integers(min_value=0, max_value=100 * n), min_size=1, max_size=8, unique=True).map(sorted),
    ))
    return t0, t1, n, dt, units


def eval_times(t0: float, t1: float, n: int, units: list[int]) -> list[float]:
    h = (t1 - t0) / n
    out = []
    for u in units:
        if u == 0:
            out.append(t0)
        elif u == 100 * n:
            out.append(t1)
        else:
            out.append(t0 + (u / 100) * h)
    return out


@given(grid_cases())
@example((0.0, 1.0, 10, 0.1, [0, 50, 100, 1000]))
@example((0.0, 1.0, 4, None, [1, 2]))  # two output times inside one base step
@example((-1.0, 0.5, 3, None, None))
def test_grid_semantics_property(case):
    t0, t1, n, dt, units = case
    t_eval = None if units is None else eval_times(t0, t1, n, units)
    h = (t1 - t0) / n
    off_grid = 0 if units is None else sum(1 for u in units if u % 100)
    z0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)

    # build_grid: base grid plus the off-grid output times, each output time found exactly; a
    # time on the base grid up to float64 round-off (a few ulps of max |t|) is that grid point.
    round_off = 8 * np.finfo(np.float64).eps * max(abs(t0), abs(t1))
    built = build_grid(t0, t1, n, t_eval)
    grid, save_index = list(built.times), built.save
    assert grid[0] == t0 and grid[-1] == t1
    assert all(b > a for a, b in zip(grid, grid[1:]))
    assert len(grid) == n + 1 + off_grid
    assert len(built.base) == n + 1
    for k, pos in enumerate(list(built.base)):
        assert abs(grid[pos] - (t0 + k * h)) <= round_off
    wanted = t_eval if t_eval is not None else [t1]
    assert len(save_index) == len(wanted)
    for idx, t in zip(save_index, wanted):
        assert abs(grid[idx] - t) <= round_off

    # solve: same grid, seen through the callback.
    visited: list[float] = []
    shapes: set[tuple[int, ...]] = set()

    def callback(t, z):
        visited.append(float(t))
        shapes.add(tuple(z.shape))

    kwargs = {"n_steps": n} if dt is None else {"dt": dt}
    sol = solvers.solve(decay, z0, t1, t0=t0, method="rk4", t_eval=t_eval, callback=callback, **kwargs)

    assert sol.stats.steps == n + off_grid
    assert sol.stats.nfe == 4 * sol.stats.steps
    assert len(visited) == sol.stats.steps
    assert shapes == {tuple(z0.shape)}
    steps = np.diff([t0] + visited)
    assert (steps > 0).all()
    assert steps.max() <= h * (1 + 1e-9)
    assert visited[-1] == pytest.approx(t1, abs=1e-12 * max(1.0, abs(t1)))
    for t in wanted:
        assert t == t0 or min(abs(v - t) for v in visited) <= round_off

    # Output times are exactly t_eval, states are the exact solution there.
    assert sol.times.dtype == torch.float64
    assert sol.times.tolist() == wanted
    assert sol.states.shape == (len(wanted), *z0.shape)
    exact = torch.stack([z0 * math.exp(-(t - t0)) for t in wanted])
    # RK4 global error on z' = -z is about (t1 - t0) h^4 / 120 per unit of |z0|.
    tol = 3.0 * (t1 - t0) * h**4 / 40 + 1e-13
    assert (sol.states - exact).abs().max().item() <= tol
    assert (sol.final - z0 * math.exp(-(t1 - t0))).abs().max().item() <= tol
    if wanted[-1] == t1:
        assert torch.equal(sol.final, sol.states[-1])


def test_t_eval_as_tensor_and_including_t0():
    z0 = torch.tensor([2.0, -1.0], dtype=torch.float64)
    t_eval = torch.tensor([0.0, 0.25, 0.6], dtype=torch.float64)
    for method, kwargs in [("rk4", {"n_steps": 40}), ("dopri5", {"rtol": 1e-10, "atol": 1e-12})]:
        sol = solvers.solve(decay, z0, 1.0, method=method, t_eval=t_eval, **kwargs)
        assert sol.times.tolist() == t_eval.tolist()
        torch.testing.assert_close(sol.states[0], z0)  # the state at t0 is z0 itself
        exact = torch.stack([z0 * math.exp(-t) for t in t_eval.tolist()])
        torch.testing.assert_close(sol.states, exact, rtol=0, atol=1e-8)
        torch.testing.assert_close(sol.final, z0 * math.exp(-1.0), rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("method", FIXED)
def test_gradcheck_fixed_step_methods(method):
    m = graph_generator(4, seed=3)
    z0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    rate = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def run(z0, rate):
        def field(t, z):
            return rate * (m @ z) + 0.1 * torch.sin(t) * z

        sol = solvers.solve(field, z0, 1.2, method=method, n_steps=3, t_eval=[0.5, 1.2])
        return sol.states

    assert torch.autograd.gradcheck(run, (z0, rate), eps=1e-6, atol=1e-8, rtol=1e-6)
    # And the gradient is the derivative of the discrete map: for euler it is known in closed form.
    if method == "euler":
        (g,) = torch.autograd.grad(solvers.solve(lambda t, z: rate.detach() * (m @ z), z0, 1.0, method="euler",
                                                 n_steps=2).final.sum(), z0)
        step = torch.eye(4, dtype=torch.float64) + 0.5 * 0.7 * m
        expected = (step @ step).T @ torch.ones(4, 2, dtype=torch.float64)
        torch.testing.assert_close(g, expected)


class SmallField(torch.nn.Module):
    def __init__(self, dim: int = 3, hidden: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.lin1 = torch.nn.Linear(dim, hidden).double()
        self.lin2 = torch.nn.Linear(hidden, dim).double()
        self.time_shift = torch.nn.Parameter(torch.randn(hidden, dtype=torch.float64, generator=gen))
        with torch.no_grad():
            for p in (self.lin1.weight, self.lin1.bias, self.lin2.weight, self.lin2.bias):
                p.copy_(0.5 * torch.randn(p.shape, dtype=torch.float64, generator=gen))

    def forward(self, t, z):
        return self.lin2(torch.tanh(self.lin1(z) + t * self.time_shift)) - 0.3 * z


def test_adjoint_gradients_equal_direct_gradients():
    field = SmallField()
    z0_data = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = {}
    for adjoint in (False, True):
        field.zero_grad()
        z0 = z0_data.clone().requires_grad_(True)
        sol = solvers.solve(field, z0, 1.0, method="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint,
                            t_eval=[0.4, 1.0])
        loss = ((sol.states - target) ** 2).sum()
        loss.backward()
        grads[adjoint] = [z0.grad.clone()] + [p.grad.clone() for p in field.parameters()]
    assert len(grads[True]) == 1 + len(list(field.parameters()))
    for direct, adj in zip(grads[False], grads[True]):
        assert adj.abs().max() > 0
        rel = (adj - direct).abs().max() / direct.abs().max()
        assert rel <= 1e-5, rel


@pytest.mark.parametrize("adjoint", [False, True])
def test_adaptive_backprop_emits_no_warning(adjoint):
    """Differentiating through an adaptive solve must not trigger warnings from the solver's own
    bookkeeping (e.g. converting the grad-carrying step time to a float in a step callback).
    torch warns only once per process by default; ``set_warn_always`` makes the check
    independent of test order."""
    field = SmallField()
    z0 = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    previous = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sol = solvers.solve(field, z0, 1.0, method="dopri5", rtol=1e-6, atol=1e-8, adjoint=adjoint)
            sol.final.sum().backward()
    finally:
        torch.set_warn_always(previous)
    assert z0.grad is not None and z0.grad.abs().max() > 0


# --------------------------------------------------------------------------- dtypes, batching


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_float32_preserved(method):
    seen: set[torch.dtype] = set()

    def field(t, z):
        seen.add(t.dtype)
        assert z.dtype == torch.float32
        return -z

    z0 = torch.linspace(-1, 1, 8, dtype=torch.float32).reshape(4, 2)
    kwargs = {"n_steps": 200} if method != "dopri5" else {"rtol": 1e-5, "atol": 1e-7}
    sol = solvers.solve(field, z0, 1.0, method=method, t_eval=[0.5, 1.0], **kwargs)
    assert sol.final.dtype == torch.float32 and sol.states.dtype == torch.float32
    assert seen == {torch.float32}
    tol = 5e-3 if method == "euler" else 1e-5
    torch.testing.assert_close(sol.final, z0 * math.exp(-1.0), rtol=0, atol=tol)


@pytest.mark.parametrize("method, kwargs, tol", [("rk4", {"n_steps": 10}, 1e-13),
                                                 ("dopri5", {"rtol": 1e-10, "atol": 1e-12}, 1e-8)])
def test_batched_state(method, kwargs, tol):
    m = graph_generator(6, seed=11)
    z0 = torch.randn(3, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def field(t, z):
        return torch.matmul(m, z)  # acts on the node axis of [N, d] and [B, N, d] alike

    batched = solvers.solve(field, z0, 1.0, method=method, t_eval=[0.5, 1.0], **kwargs)
    assert batched.final.shape == (3, 6, 2)
    assert batched.states.shape == (2, 3, 6, 2)
    for b in range(3):
        single = solvers.solve(field, z0[b], 1.0, method=method, t_eval=[0.5, 1.0], **kwargs)
        torch.testing.assert_close(batched.states[:, b], single.states, rtol=0, atol=tol)
    exact = torch.matrix_exp(m) @ z0
    torch.testing.assert_close(batched.final, exact, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- failures


def parse_failure(message: str) -> dict[str, float]:
    """The time reached and the counters, read back from an IntegrationError message."""
    found = {}
    number = r"([-+]?\d[\d.]*(?:e[-+]?\d+)?)"
    patterns = {
        "t": rf"\breached t\s*=\s*{number}",
        "steps": r"\bsteps\s*=\s*(\d+)",
        "accepted": r"\baccepted\s*=\s*(\d+)",
        "rejected": r"\brejected\s*=\s*(\d+)",
        "nfe": r"(?:function evaluations|nfe)\s*=\s*(\d+)",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, message, flags=re.IGNORECASE)
        assert match, f"IntegrationError message lacks {key}: {message!r}"
        found[key] = float(match.group(1))
    return found


def parse_first_nonfinite(message: str) -> dict[str, float]:
    """Where the message says the first non-finite value appeared: its time, and the step and
    stage (fixed-step) or the function evaluation (adaptive) when given."""
    number = r"([-+]?\d[\d.]*(?:e[-+]?\d+)?)"
    found = {}
    patterns = {
        "t": rf"non-finite value \(NaN or Inf\) (?:at|before the evaluation at) t={number}",
        "step": r"\bstep (\d+) of \d+",
        "stage": r"\bstage (\d+) of \d+",
        "evaluation": r"function evaluation (\d+)\b",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, message)
        if match:
            found[key] = float(match.group(1))
    assert "t" in found or "step" in found, message
    return found


def test_max_steps_exceeded_adaptive():
    field = Counted(lambda t, z: -1000.0 * z)
    with pytest.raises(IntegrationError, match="max_steps") as info:
        solvers.solve(field, torch.ones(3, dtype=torch.float64), 1.0, method="dopri5", max_steps=3,
                      rtol=1e-8, atol=1e-10)
    got = parse_failure(str(info.value))
    assert 0.0 <= got["t"] < 1.0
    assert got["steps"] == 3  # the whole budget of attempted steps was used
    assert got["accepted"] + got["rejected"] == got["steps"]
    assert got["nfe"] == field.calls
    assert info.value.stats.steps == 3


def test_nan_field_adaptive_raises():
    field = Counted(lambda t, z: z * float("nan"))
    with pytest.raises(IntegrationError, match="field returned a non-finite value") as info:
        solvers.solve(field, torch.ones(3, dtype=torch.float64), 1.0, method="dopri5")
    assert "stiff" not in str(info.value)
    got = parse_failure(str(info.value))
    first = parse_first_nonfinite(str(info.value))
    assert got["t"] == 0.0 and first["t"] == 0.0 and first["evaluation"] == 1
    # The integration's own counters; locating the NaN replayed one more evaluation.
    assert got["nfe"] == info.value.stats.nfe == field.calls - 1 > 0


def test_blow_up_adaptive_raises_near_blow_up_time():
    # dz/dt = z^2, z(0) = 1 has z(t) = 1/(1 - t): no solution past t = 1. The field stays finite
    # on every evaluated state, so the report is a step-size underflow, not a non-finite field.
    field = Counted(lambda t, z: z * z)
    with pytest.raises(IntegrationError, match="(?i)underflow") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 2.0, method="dopri5", max_steps=100_000)
    assert "values were finite" in str(info.value)
    got = parse_failure(str(info.value))
    assert 0.99 <= got["t"] <= 1.0 + 1e-6
    assert got["accepted"] + got["rejected"] == got["steps"] > 0
    # Looking for a non-finite value replayed the whole (deterministic) failed integration once.
    assert field.calls == 2 * got["nfe"]


def test_singular_field_adaptive_reports_where_steps_stall():
    # dz/dt = 1/(t - 0.35): finite wherever evaluated, singular at t = 0.35.
    with pytest.raises(IntegrationError, match="(?i)underflow") as info:
        solvers.solve(lambda t, z: torch.ones_like(z) / (t - 0.35), torch.ones(2, dtype=torch.float64), 1.0,
                      method="dopri5")
    assert parse_failure(str(info.value))["t"] == pytest.approx(0.35, abs=1e-3)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun", "dopri8"])
@pytest.mark.parametrize("adjoint", [False, True])
def test_nan_after_known_time_adaptive_reports_first_bad_evaluation(method, adjoint):
    """A field returning NaN for t > 0.5: the report names the first evaluation at t > 0.5 of the
    integration (its time and index, read off the field's own record), not "stiff"."""
    calls: list[float] = []

    def field(t, z):
        calls.append(float(t))
        return torch.full_like(z, float("nan")) if float(t) > 0.5 else -z

    with pytest.raises(IntegrationError, match="field returned a non-finite value") as info:
        solvers.solve(field, torch.ones(3, dtype=torch.float64), 1.0, method=method, adjoint=adjoint,
                      rtol=1e-6, atol=1e-8)
    message = str(info.value)
    assert "stiff" not in message
    first = parse_first_nonfinite(message)
    integration = calls[1:] if adjoint else calls  # the adjoint's read check traces one evaluation
    index = next(i for i, t in enumerate(integration) if t > 0.5)
    assert first["evaluation"] == index + 1
    assert first["t"] == pytest.approx(integration[index], rel=1e-5)
    assert parse_failure(message)["t"] <= 0.5


def test_fixed_step_overflow_raises_at_first_overflowing_step():
    """Euler on dz/dt = -1e6 z with h = 1e-3: z_k = (-999)^k, and the field's value 1e6 |z_k|
    first exceeds the largest double at the k* computed below: step k* + 1 reports it, although
    the state is only checked at t1."""
    k_star = next(k for k in range(1, 200) if k * math.log(999.0) + math.log(1e6) > math.log(sys.float_info.max))
    field = Counted(lambda t, z: -1.0e6 * z)
    with pytest.raises(IntegrationError, match="field returned a non-finite value") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 1.0, method="euler", n_steps=1000)
    got = parse_failure(str(info.value))
    first = parse_first_nonfinite(str(info.value))
    assert first["step"] == k_star + 1 and first["stage"] == 1
    assert first["t"] == pytest.approx(k_star * 1e-3, rel=1e-12)
    assert got["t"] == pytest.approx(k_star * 1e-3, rel=1e-12)
    assert got["steps"] == got["accepted"] == k_star and got["rejected"] == 0
    assert got["nfe"] == k_star + 1
    # The loop ran to the check at t1 (1000 evaluations), then replayed k* + 1 steps.
    assert field.calls == 1000 + k_star + 1


def test_singular_field_fixed_step_reports_the_step_that_hits_the_singularity():
    """f = 1/(t - 0.35) on 20 Euler steps over [0, 1]: t_7 = 7/20 is the double 0.35, so step 8
    (stage 1, t = 0.35) is the first evaluation that returns Inf; detected only at t1."""
    field = Counted(lambda t, z: torch.ones_like(z) / (t - 0.35))
    with pytest.raises(IntegrationError, match="field returned a non-finite value") as info:
        solvers.solve(field, torch.zeros(3, dtype=torch.float64), 1.0, method="euler", n_steps=20)
    first = parse_first_nonfinite(str(info.value))
    got = parse_failure(str(info.value))
    assert (first["step"], first["stage"], first["t"]) == (8, 1, 0.35)
    assert (got["t"], got["steps"], got["nfe"]) == (0.35, 7, 8)


@pytest.mark.parametrize("method, step, stage, t, where", [
    # f = 1e307 (finite): z_k = 1e307 k overflows the largest double (1.797e308) at k = 18. Euler:
    # in the update of step 18. RK4: the stage-4 state z_17 + h k_3 = 1.8e308 of step 18.
    ("euler", 18, None, None, "in the update of step 18 of 30, from t=17 to t=18"),
    ("rk4", 18, 4, 18.0, "before the evaluation at t=18"),
])
def test_fixed_step_state_overflow_is_told_from_a_non_finite_field(method, step, stage, t, where):
    with pytest.raises(IntegrationError, match="state overflowed") as info:
        solvers.solve(lambda t, z: torch.full_like(z, 1e307), torch.zeros(2, dtype=torch.float64), 30.0,
                      method=method, n_steps=30)
    message = str(info.value)
    assert where in message and "field returned" not in message
    first = parse_first_nonfinite(message)
    assert first["step"] == step and first.get("stage") == stage and first.get("t") == t
    got = parse_failure(message)
    assert got["t"] == 17.0 and got["steps"] == 17
    assert got["nfe"] == STAGES[method] * 17 + (STAGES[method] if stage is None else stage - 1)


@pytest.mark.parametrize("method, step, stage, t", [
    ("euler", 6, 1, 0.5),  # step 6 starts at t_5 = 0.5: its only stage is the first at t >= 0.5
    ("rk4", 5, 4, 0.5),  # step 5 from t_4 = 0.4: stages at 0.4, 0.45, 0.45 and t_4 + h = 0.5
])
def test_nan_field_fixed_step_reports_first_bad_step(method, step, stage, t):
    """NaN for t >= 0.5 with 10 steps over [0, 1] and outputs at 0.3, 0.7, 1: the report names the
    first step and stage evaluated at t >= 0.5, not the output time 0.7 where it was detected."""
    field = Counted(lambda t, z: torch.full_like(z, float("nan")) if float(t) >= 0.5 else -z)
    with pytest.raises(IntegrationError, match="field returned a non-finite value") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 1.0, method=method, n_steps=10,
                      t_eval=[0.3, 0.7, 1.0])
    first = parse_first_nonfinite(str(info.value))
    got = parse_failure(str(info.value))
    assert (first["step"], first["stage"]) == (step, stage)
    assert first["t"] == pytest.approx(t, abs=1e-12)
    assert got["t"] == pytest.approx((step - 1) / 10, abs=1e-12)
    assert got["nfe"] == STAGES[method] * (step - 1) + stage
    # Detected at the output 0.7 (7 steps), replayed from the output 0.3 up to the bad stage.
    assert field.calls == STAGES[method] * 7 + STAGES[method] * (step - 1 - 3) + stage


def test_non_finite_state_not_reproduced_on_replay_says_so():
    """A field that returns NaN on its third call only (not a function of t and z): the replay
    that looks for the first bad step meets none, and the error says so instead of guessing."""
    calls = {"n": 0}

    def field(t, z):
        calls["n"] += 1
        return torch.full_like(z, float("nan")) if calls["n"] == 3 else -z

    with pytest.raises(IntegrationError, match=r"did not reproduce it \(is the field deterministic\?\)") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 1.0, method="euler", n_steps=4, t_eval=[0.5, 1.0])
    got = parse_failure(str(info.value))
    # Detected at the output t = 1 after the last good output t = 0.5 (2 steps), where it stops.
    assert got["t"] == 0.5 and got["steps"] == 2 and got["nfe"] == 2
