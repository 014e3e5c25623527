"""DiffusionField / DiffusionBlock against hand-derived Euler steps and matrix exponentials, and
the Dirichlet energy against dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import solvers
from diffusion_pde import (DiffusionBlock, DiffusionField, diffusivity, dirichlet_energy, exact_solution,
                           normalised_dirichlet_energy)




NAMES = ["gcn", "random_walk"]


def undirected_graph(seed: int, num_nodes: int = 10, p: float = 0.3):
    """A seeded random undirected graph as (edge_index [2, E] numpy, dense adjacency A)."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((num_nodes, num_nodes)) < p, k=1)
    a = (upper | upper.T).astype(np.float64)
    src, dst = np.nonzero(a.T)  # a[i, j] = 1 for edge j -> i
    return np.stack([src, dst]), a


def dense_operator(name: str, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, Ã) built with numpy from an adjacency without self-loops."""
    a_tilde = a + np.eye(a.shape[0])
    deg = a_tilde.sum(axis=1)
    if name == "gcn":
        return a_tilde / np.sqrt(np.outer(deg, deg)), a_tilde
    return a_tilde / deg[:, None], a_tilde


def make(name: str, seed: int = 0, num_nodes: int = 10, dtype=torch.float64):
    edge_index, a = undirected_graph(seed, num_nodes)
    op = diffusivity(name, edge_index=torch.from_numpy(edge_index), num_nodes=num_nodes, dtype=dtype)
    s, a_tilde = dense_operator(name, a)
    return op, torch.from_numpy(s).to(dtype), torch.from_numpy(a_tilde).to(dtype)


def randn(*shape, seed: int = 0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def expm_reference(s: np.ndarray, z0: np.ndarray, t: float, mu: float) -> np.ndarray:
    """Z(t) for dZ/dt = (1 − μ)(S − I)Z + μ(Z⁰ − Z) by one expm of the augmented linear system
    d/dt [Z; Z⁰] = [[M, μ I], [0, 0]] [Z; Z⁰] (no inverse of M needed)."""
    n = s.shape[0]
    m = (1 - mu) * (s - np.eye(n)) - mu * np.eye(n)
    aug = np.zeros((2 * n, 2 * n))
    aug[:n, :n] = m
    aug[:n, n:] = mu * np.eye(n)
    return (scipy.linalg.expm(t * aug) @ np.vstack([z0, z0]))[:n]


# --------------------------------------------------------------------------- the field


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_one_euler_step(name, mu, tau):
    """Z + τ F(Z) = Z + τ((1 − μ)(SZ − Z) + μ(Z⁰ − Z)) = (1 − τ)Z + τ((1 − μ)SZ + μZ⁰)."""
    op, s, _ = make(name, seed=1)
    z_source = randn(10, 3, seed=1)
    z = randn(10, 3, seed=2)  # a state different from Z⁰, so the source term is non-zero
    field = DiffusionField(op, source_weight=mu).set_initial_state(z_source)
    expected = (1 - tau) * z + tau * ((1 - mu) * (s @ z) + mu * z_source)
    torch.testing.assert_close(z + tau * field(torch.tensor(0.0, dtype=torch.float64), z), expected)
    sol = solvers.solve(field, z, tau, method="euler", n_steps=1)
    torch.testing.assert_close(sol.final, expected, rtol=1e-13, atol=1e-13)
    if mu == 0.0 and tau == 1.0:
        torch.testing.assert_close(sol.final, s @ z)  # one message-passing layer


@pytest.mark.parametrize("mu", [0.0, 0.4])
def test_two_euler_steps_from_initial_state(mu):
    op, s, _ = make("random_walk", seed=2)
    z0 = randn(10, 2, seed=3)
    block = DiffusionBlock(DiffusionField(op, source_weight=mu), method="euler", t1=1.0, n_steps=2)
    z1 = 0.5 * z0 + 0.5 * ((1 - mu) * (s @ z0) + mu * z0)
    z2 = 0.5 * z1 + 0.5 * ((1 - mu) * (s @ z1) + mu * z0)
    torch.testing.assert_close(block(z0), z2, rtol=1e-13, atol=1e-13)


def test_batched_field():
    op, s, _ = make("gcn", seed=4)
    z0 = randn(3, 10, 2, seed=5)
    field = DiffusionField(op, source_weight=0.2).set_initial_state(z0)
    z = randn(3, 10, 2, seed=6)
    out = field(torch.tensor(0.0, dtype=torch.float64), z)
    torch.testing.assert_close(out, 0.8 * (s @ z - z) + 0.2 * (z0 - z))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_solve_matches_matrix_exponential(name, mu):
    op, s, _ = make(name, seed=7, num_nodes=12)
    z0 = randn(12, 4, seed=8)
    t1 = 1.3
    mine = torch.from_numpy(expm_reference(s.numpy(), z0.numpy(), t1, mu))
    library = exact_solution(op, z0, t1, source_weight=mu)
    torch.testing.assert_close(library, mine, rtol=1e-12, atol=1e-12)

    field = DiffusionField(op, source_weight=mu).set_initial_state(z0)
    rk4 = solvers.solve(field, z0, t1, method="rk4", n_steps=60).final
    torch.testing.assert_close(rk4, mine, rtol=0, atol=1e-8)
    dopri5 = solvers.solve(field, z0, t1, method="dopri5", rtol=1e-10, atol=1e-12).final
    torch.testing.assert_close(dopri5, mine, rtol=0, atol=1e-8)
    if mu > 0:
        # The source term matters: the answer differs from pure diffusion.
        pure = torch.from_numpy(expm_reference(s.numpy(), z0.numpy(), t1, 0.0))
        assert (rk4 - pure).abs().max() > 1e-3


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_source_weight_out_of_range_rejected(bad):
    op, _, _ = make("gcn")
    with pytest.raises(ValueError, match="source_weight"):
        DiffusionField(op, source_weight=bad)


@pytest.mark.parametrize("bad", ["0.5", None, True, torch.tensor([0.1, 0.2])])
def test_source_weight_not_a_number_rejected(bad):
    op, _, _ = make("gcn")
    with pytest.raises(TypeError, match="source_weight"):
        DiffusionField(op, source_weight=bad)


def test_source_weight_edges_accepted():
    op, _, _ = make("gcn")
    assert DiffusionField(op, source_weight=0).source_weight == 0.0
    assert DiffusionField(op, source_weight=1).source_weight == 1.0


def test_source_needs_initial_state():
    op, _, _ = make("gcn")
    field = DiffusionField(op, source_weight=0.3)
    z = randn(10, 2)
    with pytest.raises(RuntimeError, match="set_initial_state"):
        field(torch.tensor(0.0, dtype=torch.float64), z)
    with pytest.raises(RuntimeError, match="set_initial_state"):
        solvers.solve(field, z, 1.0, method="euler", n_steps=2)


def test_field_needs_a_diffusivity():
    with pytest.raises(TypeError, match="(?i)diffusivity"):
        DiffusionField(lambda z: z)


def test_block_rejects_unknown_method():
    op, _, _ = make("gcn")
    with pytest.raises(ValueError, match=r"(?s)method.*rk4"):
        DiffusionBlock(DiffusionField(op), method="rk5")


@pytest.mark.parametrize("method, options", [("rk4", {"n_steps": 12}), ("dopri5", {"rtol": 1e-9, "atol": 1e-11})])
def test_block_forward_equals_solve(method, options):
    op, s, _ = make("random_walk", seed=9)
    z0 = randn(10, 3, seed=10)
    field = DiffusionField(op, source_weight=0.25)
    block = DiffusionBlock(field, method=method, t1=0.8, **options)
    out = block(z0)
    field.set_initial_state(z0)
    direct = solvers.solve(field, z0, 0.8, method=method, **options).final
    torch.testing.assert_close(out, direct, rtol=0, atol=1e-14)
    torch.testing.assert_close(out, torch.from_numpy(expm_reference(s.numpy(), z0.numpy(), 0.8, 0.25)),
                               rtol=0, atol=1e-6)
    # forward uses the Z⁰ it is given, not one left over from an earlier call.
    other = randn(10, 3, seed=11)
    torch.testing.assert_close(block(other), torch.from_numpy(expm_reference(s.numpy(), other.numpy(), 0.8, 0.25)),
                               rtol=0, atol=1e-6)


def test_block_backpropagates_to_input():
    op, _, _ = make("gcn", seed=12)
    block = DiffusionBlock(DiffusionField(op, source_weight=0.1), method="rk4", t1=1.0, n_steps=4)
    z0 = randn(10, 2, seed=13).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (z0,))


# --------------------------------------------------------------------------- Dirichlet energy


@pytest.mark.parametrize("seed", [0, 1])
def test_dirichlet_energy_gcn_is_trace_form(seed):
    op, s, _ = make("gcn", seed=seed)
    z = randn(10, 3, seed=seed + 20)
    expected = torch.trace(z.T @ (torch.eye(10, dtype=torch.float64) - s) @ z)
    energy = dirichlet_energy(z, op)
    assert energy.shape == ()
    torch.testing.assert_close(energy, expected, rtol=1e-12, atol=1e-12)
    assert energy >= 0  # spec(S) ⊂ (−1, 1] makes I − S positive semi-definite


@pytest.mark.parametrize("seed", [0, 1])
def test_dirichlet_energy_random_walk_is_edge_sum(seed):
    op, _, a_tilde = make("random_walk", seed=seed)
    z = randn(10, 3, seed=seed + 30)
    diff = z[:, None, :] - z[None, :, :]
    expected = 0.5 * (a_tilde * (diff**2).sum(-1)).sum()
    torch.testing.assert_close(dirichlet_energy(z, op), expected, rtol=1e-12, atol=1e-12)
    # Zero exactly on constants.
    const = torch.full((10, 3), -1.7, dtype=torch.float64)
    assert abs(float(dirichlet_energy(const, op))) < 1e-12


def test_normalised_dirichlet_energy_is_scale_free_and_zero_only_on_constants():
    op, _, a_tilde = make("random_walk", seed=4)
    d = a_tilde.sum(1)
    z = randn(10, 3, seed=60)
    diff = z[:, None, :] - z[None, :, :]
    expected = 0.5 * (a_tilde * (diff**2).sum(-1)).sum() / (d[:, None] * z**2).sum()
    torch.testing.assert_close(normalised_dirichlet_energy(z, op), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(normalised_dirichlet_energy(7.5 * z, op), expected, rtol=1e-12, atol=1e-12)
    assert 0 < float(expected) < 2
    const = torch.full((10, 3), 2.3, dtype=torch.float64)
    assert abs(float(normalised_dirichlet_energy(const, op))) < 1e-12
    # The symmetric GCN operator fixes D̃^{1/2}1, not constants: a constant state keeps energy.
    gcn, _, _ = make("gcn", seed=4)
    assert float(normalised_dirichlet_energy(const, gcn)) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_dirichlet_energy_batched(name):
    op, _, _ = make(name, seed=3)
    zb = randn(4, 10, 2, seed=40)
    energies = dirichlet_energy(zb, op)
    assert energies.shape == (4,)
    for b in range(4):
        torch.testing.assert_close(energies[b], dirichlet_energy(zb[b], op))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tau", [0.3, 0.7, 1.0])
def test_dirichlet_energy_non_increasing_along_euler(name, tau):
    op, _, _ = make(name, seed=5, num_nodes=14)
    z0 = randn(14, 3, seed=50)
    steps = 25
    states = [z0]
    field = DiffusionField(op, source_weight=0.0)
    solvers.solve(field, z0, steps * tau, method="euler", n_steps=steps, callback=lambda t, z: states.append(z))
    energies = [float(dirichlet_energy(z, op)) for z in states]
    assert len(energies) == steps + 1
    for before, after in zip(energies, energies[1:]):
        assert after <= before * (1 + 1e-12) + 1e-14, energies
    assert energies[-1] < energies[0]  # it actually decreases (the graph has edges)


def test_identity_has_no_dirichlet_energy():
    op = diffusivity("identity")
    with pytest.raises(ValueError, match=r"(?s)identity.*Dirichlet|Dirichlet.*identity"):
        dirichlet_energy(randn(5, 2), op)


@pytest.mark.parametrize("name", ["gcn", "random_walk", "gin", "gat", "transformer", "difformer_s", "difformer_a", "mix"])
def test_a_state_whose_dtype_differs_from_the_field_is_named_before_any_work(name: str) -> None:
    """float64 field, float32 state: a TypeError naming both dtypes and the fix, before solving."""
    from torch_geometric.data import Data

    from diffusion_pde.diffusivities import diffusivity_for

    graph = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    field = DiffusionField(diffusivity_for(name, graph=graph, in_channels=2, dtype=torch.float64), source_weight=0.1)
    calls = []
    with pytest.raises(TypeError, match=r"float32.*float64.*\.to\("):
        solvers.solve(lambda t, z: calls.append(t) or field(t, z), field.set_initial_state(torch.ones(3, 2)).initial_state,
                      1.0, method="euler", n_steps=2)
    assert calls == []


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"t1": -1.0}, ValueError, r"t1 \(the integration time.*> 0, got -1\.0"),
    ({"t1": float("nan")}, ValueError, r"t1 .* must be a finite number > 0"),
    ({"t1": "1"}, ValueError, r"t1 .* got '1'"),
    ({"nsteps": 4}, TypeError, r"unknown solver option\(s\) nsteps; solvers.solve accepts .*n_steps"),
    ({"n_steps": 3, "adjoint": True}, ValueError, r"adjoint=True needs an adaptive method"),
    ({"n_steps": 3, "rtol": 1e-3}, ValueError, r"rtol and atol apply to adaptive methods only"),
    ({}, ValueError, r"fixed-step method 'rk4' needs dt=\.\.\. or n_steps"),
])
def test_diffusion_block_refuses_bad_settings_at_construction(kwargs: dict, error: type, match: str) -> None:
    field = DiffusionField(diffusivity("identity"))
    with pytest.raises(error, match=match):
        DiffusionBlock(field, "rk4", **kwargs)


def test_diffusion_block_refuses_step_options_its_method_does_not_use() -> None:
    with pytest.raises(ValueError, match="dt and n_steps apply to fixed-step methods only"):
        DiffusionBlock(DiffusionField(diffusivity("identity")), "dopri5", n_steps=3)
    block = DiffusionBlock(DiffusionField(diffusivity("identity")), "rk4", n_steps=2)
    with pytest.raises(TypeError, match="the integration time is the block's t1"):
        block.solve(torch.ones(2, 1), t1=2.0)
