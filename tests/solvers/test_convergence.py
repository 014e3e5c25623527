"""Measured convergence orders of the fixed-step Runge–Kutta methods (float64).

The reference solutions are independent of the library: ``scipy.linalg.expm`` of a dense
row-normalised graph operator built here with numpy, and the closed form exp(sin t) z0 of a
time-dependent scalar-rate field. The order is the least-squares log–log slope of the max-abs
error against the step size over four halvings of dt.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import solvers




ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
# Coarsest step counts: large enough to be in the asymptotic regime (|h λ_max| ≤ 0.1 for Euler)
# and small enough that the finest error (n0 · 16 steps) stays far above float64 round-off.
GRAPH_N0 = {"euler": 16, "midpoint": 8, "heun": 8, "rk4": 4}
TIME_N0 = {"euler": 16, "midpoint": 8, "heun": 8, "rk4": 4}
HALVINGS = 4
SLOPE_TOL = 0.15


def random_walk_operator(num_nodes: int = 30, p: float = 0.15, seed: int = 1234) -> np.ndarray:
    """Dense S = D̃^{-1}(A + I) of a seeded random undirected graph, built with numpy only."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((num_nodes, num_nodes)) < p, k=1).astype(np.float64)
    adjacency = upper + upper.T + np.eye(num_nodes)
    return adjacency / adjacency.sum(axis=1, keepdims=True)


def fitted_slope(dts: list[float], errors: list[float]) -> float:
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


def measure(method: str, field, z0: torch.Tensor, exact: np.ndarray, n0: int, t0: float, t1: float):
    dts, errors = [], []
    for k in range(HALVINGS + 1):
        n = n0 * 2**k
        sol = solvers.solve(field, z0, t1, t0=t0, method=method, n_steps=n)
        assert sol.final.dtype == torch.float64
        errors.append(float(np.abs(sol.final.numpy() - exact).max()))
        dts.append((t1 - t0) / n)
    return dts, errors


@pytest.fixture(scope="module")
def graph_problem():
    s = random_walk_operator()
    n = s.shape[0]
    generator = np.random.default_rng(99)
    z0 = generator.standard_normal((n, 4))
    generator_matrix = s - np.eye(n)
    exact = scipy.linalg.expm(1.0 * generator_matrix) @ z0
    # The solver must see the same operator, as a torch function (t unused: autonomous).
    m = torch.from_numpy(generator_matrix)
    return (lambda t, z: m @ z), torch.from_numpy(z0), exact


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_order_on_graph_diffusion_against_expm(method, graph_problem):
    field, z0, exact = graph_problem
    dts, errors = measure(method, field, z0, exact, GRAPH_N0[method], 0.0, 1.0)
    # Errors well above round-off so the slope measures truncation error only.
    assert min(errors) > 1e-12, errors
    # Each halving must reduce the error (monotone convergence), not just the fit.
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    slope = fitted_slope(dts, errors)
    assert abs(slope - ORDERS[method]) <= SLOPE_TOL, (method, slope, errors)


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_order_on_time_dependent_field(method):
    """dz/dt = cos(t) z has z(t) = exp(sin t − sin t0) z0: stage times t + c_i h must be right
    (evaluating every stage at t, say, drops every method to order 1)."""
    # An interval without a turning point of sin t, so that the leading error constant does not
    # pass through zero and the slope is in its asymptotic regime from the coarsest grid on.
    t0, t1 = 0.25, 1.75
    z0_np = np.random.default_rng(7).standard_normal((5, 3))
    exact = np.exp(np.sin(t1) - np.sin(t0)) * z0_np
    seen_dtypes = set()

    def field(t, z):
        assert isinstance(t, torch.Tensor) and t.dim() == 0
        seen_dtypes.add(t.dtype)
        return torch.cos(t) * z

    dts, errors = measure(method, field, torch.from_numpy(z0_np), exact, TIME_N0[method], t0, t1)
    assert seen_dtypes == {torch.float64}
    assert min(errors) > 1e-12, errors
    slope = fitted_slope(dts, errors)
    assert abs(slope - ORDERS[method]) <= SLOPE_TOL, (method, slope, errors)


def test_stage_times_are_t_plus_c_h():
    """The field is called at exactly t_n + c_i h for every step n and stage i."""
    t0, t1, n = 0.5, 1.7, 3
    h = (t1 - t0) / n
    c = {"euler": [0.0], "midpoint": [0.0, 0.5], "heun": [0.0, 1.0], "rk4": [0.0, 0.5, 0.5, 1.0]}
    for method, nodes in c.items():
        calls: list[float] = []

        def field(t, z):
            calls.append(float(t))
            return -z

        solvers.solve(field, torch.ones(2, dtype=torch.float64), t1, t0=t0, method=method, n_steps=n)
        expected = [t0 + k * h + ci * h for k in range(n) for ci in nodes]
        np.testing.assert_allclose(calls, expected, rtol=0, atol=1e-12, err_msg=method)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(ORDERS))
def test_order_on_graph_diffusion_long_refinement(method, graph_problem):
    """Six halvings, starting coarser: the slope stays within the tolerance over a wider range."""
    field, z0, exact = graph_problem
    dts, errors = [], []
    n0 = max(GRAPH_N0[method] // 2, 4)
    for k in range(7):
        n = n0 * 2**k
        sol = solvers.solve(field, z0, 1.0, method=method, n_steps=n)
        errors.append(float(np.abs(sol.final.numpy() - exact).max()))
        dts.append(1.0 / n)
    keep = [i for i, e in enumerate(errors) if e > 1e-11]
    slope = fitted_slope([dts[i] for i in keep], [errors[i] for i in keep])
    assert abs(slope - ORDERS[method]) <= SLOPE_TOL, (method, slope, errors)
