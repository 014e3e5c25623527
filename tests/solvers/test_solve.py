"""solvers.solve: exact work counters, output-grid semantics, gradients, dtypes, batching and
integration failures."""

from __future__ import annotations

import math
import re
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




STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
FIXED = sorted(STAGES)


class Counted:
    """A field wrapper that counts its own calls (independent of the solver's counters)."""

    def __init__(self, field):
        self.field = field
        self.calls = 0

    def __call__(self, t, z):
        self.calls += 1
        return self.field(t, z)


def decay(t, z):
    return -z


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

    # build_grid: base grid plus the off-grid output times, each output time found exactly.
    grid, save_index = build_grid(t0, t1, n, t_eval)
    assert grid[0] == t0 and grid[-1] == t1
    assert all(b > a for a, b in zip(grid, grid[1:]))
    assert len(grid) == n + 1 + off_grid
    for k in range(n + 1):
        assert min(abs(g - (t0 + k * h)) for g in grid) <= 1e-9 * h
    wanted = t_eval if t_eval is not None else [t1]
    assert len(save_index) == len(wanted)
    for idx, t in zip(save_index, wanted):
        assert abs(grid[idx] - t) <= 1e-9 * h

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
        assert t == t0 or min(abs(v - t) for v in visited) <= 1e-9 * h

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
    patterns = {
        "t": r"\bt\s*=\s*([-+]?\d[\d.]*(?:e[-+]?\d+)?)",
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
    with pytest.raises(IntegrationError, match="(?i)underflow|non-finite") as info:
        solvers.solve(field, torch.ones(3, dtype=torch.float64), 1.0, method="dopri5")
    got = parse_failure(str(info.value))
    assert got["t"] == 0.0
    assert got["nfe"] == field.calls > 0


def test_blow_up_adaptive_raises_near_blow_up_time():
    # dz/dt = z^2, z(0) = 1 has z(t) = 1/(1 - t): no solution past t = 1.
    field = Counted(lambda t, z: z * z)
    with pytest.raises(IntegrationError, match="(?i)underflow|non-finite|max_steps") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 2.0, method="dopri5", max_steps=100_000)
    got = parse_failure(str(info.value))
    assert 0.99 <= got["t"] <= 1.0 + 1e-6
    assert got["accepted"] + got["rejected"] == got["steps"] > 0
    assert got["nfe"] == field.calls


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fixed_step_overflow_raises(method):
    # Far outside the stability region: |1 + h λ| = 999 per step overflows float64 to inf, then NaN.
    field = Counted(lambda t, z: -1.0e6 * z)
    with pytest.raises(IntegrationError, match="(?i)non-finite") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 1.0, method=method, n_steps=1000)
    got = parse_failure(str(info.value))
    assert 0.0 < got["t"] <= 1.0
    assert got["nfe"] == field.calls == STAGES[method] * got["steps"]
    assert got["accepted"] == got["steps"] and got["rejected"] == 0
    # The reported time is where the counters say the integration stopped.
    assert got["t"] == pytest.approx(got["steps"] * 1e-3, rel=1e-5)


def test_nan_field_fixed_step_raises_at_intermediate_output():
    def field(t, z):
        return torch.full_like(z, float("nan")) if float(t) >= 0.5 else -z

    with pytest.raises(IntegrationError, match="(?i)non-finite") as info:
        solvers.solve(field, torch.ones(2, dtype=torch.float64), 1.0, method="euler", n_steps=10,
                      t_eval=[0.3, 0.7, 1.0])
    got = parse_failure(str(info.value))
    # NaN first appears after the step from 0.5; it is reported no later than the next output time.
    assert 0.5 < got["t"] <= 0.7 + 1e-12
