"""Reaction–diffusion fields on sequences (Linear Diffusion Networks) and the learned stable step.

- ``Superposition``: S = Σ S_k − (K − 1) I against its parts' dense matrices, inherited properties;
- DIFFormer-s attention and the whole LDN field act on each sequence of a batch separately;
- ``ReactionDiffusionField``: F = diffusion + R(Z) against a hand-formed oracle, Euler through
  ``solvers.solve``, and adjoint gradients equal to direct backpropagation (frozen attention, source);
- the reactions against oracles (numpy convolution), causality of a causal LDN layer end to end;
- ``StableStep``: δt < 2/ρ(K) (exact, from dense eigenvalues) whatever θ and the weights become,
  huge learning rates included; ``StableEulerLayer`` is Z + δt F(Z) with exact gradients in θ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffusion_pde as dp
import solvers
from diffusion_pde.diffusivities import Superposition
from diffusion_pde.ldn import ldn_field, ldn_layer
from diffusion_pde.reaction import DepthwiseConv, ReactionDiffusionField, TokenMLP, reaction
from diffusion_pde.stable_step import StableEulerLayer, StableStep, field_radius_bound, generator_radius_bound
from theory_checks.sequence_diffusion import KernelExample

F64 = torch.float64
D = 4


def kernel(kind: str = "sequence_window", seed: int = 0, **params) -> dp.Diffusivity:
    defaults = {"sequence_window": {"window": 2}, "sequence_global": {"scales": 2}}.get(kind, {})
    return KernelExample(kind, tuple({**defaults, **params}.items()), 8, 0.0, seed).build()


def attention(seed: int = 0, **params) -> dp.Diffusivity:
    torch.manual_seed(seed)
    return dp.diffusivity("difformer_s", in_channels=D, dtype=F64, **params)


def states(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- superposition


@pytest.mark.parametrize("kind", ["sequence_laplacian", "sequence_window", "sequence_global"])
def test_superposition_adds_the_generators(kind: str) -> None:
    k, a = kernel(kind), attention()
    s = Superposition([k, a])
    z = states(2, 7, D)
    expected = k.dense(z) + a.dense(z) - torch.eye(7, dtype=F64)
    torch.testing.assert_close(s.dense(z), expected)
    torch.testing.assert_close(s(z), expected @ z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s(z) - z, (k(z) - z) + (a(z) - z), rtol=1e-12, atol=1e-12)
    props = s.properties
    assert props.rows_sum_to_one and props.depends_on_state and not props.permutation_equivariant
    assert not props.row_stochastic and not props.nonnegative and not props.symmetric and not props.shift_equivariant
    assert s.fresh_output
    only = Superposition([a]).properties
    assert only.row_stochastic and only.nonnegative and only.permutation_equivariant


def test_superposition_refuses_what_is_not_a_list_of_diffusivities() -> None:
    with pytest.raises(TypeError, match=r"parts must be a non-empty list of Diffusivity"):
        Superposition([])
    with pytest.raises(TypeError, match=r"parts must be a non-empty list of Diffusivity"):
        Superposition([kernel(), lambda z: z])


@pytest.mark.parametrize("qk_norm", ["row", "global"])
def test_attention_and_the_ldn_field_do_not_mix_the_sequences_of_a_batch(qk_norm: str) -> None:
    torch.manual_seed(0)
    field = ldn_field(D, kernel="sequence_global", attention_params={"qk_norm": qk_norm}, reaction="conv",
                      dtype=F64)
    z = states(3, 9, D)
    t = torch.zeros((), dtype=F64)
    batched = field(t, z)
    attn = field.diffusivity.parts[1]
    for b in range(3):
        torch.testing.assert_close(attn(z)[b], attn(z[b]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched[b], field(t, z[b]), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the field


@pytest.mark.parametrize("mu", [0.0, 0.4])
@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_reaction_diffusion_field_against_its_formula(name: str, mu: float) -> None:
    torch.manual_seed(1)
    s = Superposition([kernel("sequence_global"), attention()])
    r = reaction(name, D, dtype=F64)
    field = ReactionDiffusionField(s, r, source_weight=mu)
    z0, z = states(2, 8, D, seed=1), states(2, 8, D, seed=2)
    field.set_initial_state(z0)
    t = torch.zeros((), dtype=F64)
    dense = s.dense(z)
    expected = (1 - mu) * (dense @ z - z) + mu * (z0 - z) + r(z)
    torch.testing.assert_close(field(t, z), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(field.euler_step(t, z, 0.3), z + 0.3 * expected, rtol=1e-12, atol=1e-12)
    solved = solvers.solve(field, z0, 0.6, method="euler", n_steps=2).final
    first = z0 + 0.3 * field(t, z0)
    torch.testing.assert_close(solved, first + 0.3 * field(t + 0.3, first), rtol=1e-12, atol=1e-12)
    block = dp.DiffusionBlock(field, "dopri5", t1=0.5, rtol=1e-8, atol=1e-10)
    assert block(z0).shape == z0.shape


def test_without_reaction_it_is_the_diffusion_field() -> None:
    s = kernel("sequence_laplacian")
    z = states(3, 8, D)
    t = torch.zeros((), dtype=F64)
    plain, reacting = dp.DiffusionField(s), ReactionDiffusionField(s)
    torch.testing.assert_close(reacting(t, z), plain(t, z), rtol=0, atol=0)
    torch.testing.assert_close(reacting.euler_step(t, z, 0.2), plain.euler_step(t, z, 0.2), rtol=0, atol=0)


def test_a_reaction_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"reaction must be an nn\.Module"):
        ReactionDiffusionField(kernel(), lambda z: z)
    with pytest.raises(ValueError, match=r"unknown reaction 'rnn'; valid names: mlp, conv"):
        reaction("rnn", D)
    with pytest.raises(ValueError, match=r"activation must be one of gelu"):
        TokenMLP(D, activation="softmax")


@pytest.mark.parametrize("kind, mu", [("sequence_window", 0.0), ("sequence_global", 0.3)])
def test_adjoint_equals_backpropagation(kind: str, mu: float) -> None:
    """Z⁰ from a learned map outside the solve, attention frozen at Z⁰, a reaction: the adjoint's
    gradients (input, encoder, kernel, attention, reaction) equal direct backpropagation."""
    torch.manual_seed(3)
    s = Superposition([kernel(kind), attention(frozen=True)])
    field = ReactionDiffusionField(s, TokenMLP(D, hidden=6, activation="tanh", dtype=F64), source_weight=mu)
    encoder = torch.nn.Linear(3, D, dtype=F64)
    x = states(2, 6, 3, seed=4).requires_grad_()
    weights = states(2, 6, D, seed=5)
    model = torch.nn.ModuleDict({"encoder": encoder, "field": field})
    tensors = [x] + list(model.parameters())
    results = []
    for adjoint in (True, False):
        block = dp.DiffusionBlock(field, "dopri5", t1=1.0, rtol=1e-10, atol=1e-10, adjoint=adjoint)
        loss = (block(0.5 * torch.tanh(encoder(x))) * weights).sum()
        results.append(torch.autograd.grad(loss, tensors))
    scale = torch.sqrt(sum(g.square().sum() for g in results[1]))
    assert max(float((a - b).norm() / scale) for a, b in zip(*results)) <= 1e-6
    assert len(field.adjoint_inputs()) == (3 if mu > 0 else 2)  # Z⁰ (μ > 0) and the frozen q, k


# --------------------------------------------------------------------------- reactions


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
def test_depthwise_conv_against_numpy(causal: bool, kernel_size: int) -> None:
    torch.manual_seed(2)
    conv = DepthwiseConv(D, kernel_size, causal=causal, activation="tanh", dtype=F64)
    z = states(2, 7, D, seed=6)
    taps = conv.conv.weight.detach().numpy()[:, 0]                             # [d, k]
    left = kernel_size - 1 if causal else (kernel_size - 1) // 2
    expected = np.empty((2, 7, D))
    for b in range(2):
        for c in range(D):
            padded = np.concatenate([np.zeros(left), z[b, :, c].numpy(), np.zeros(kernel_size - 1 - left)])
            # nn.Conv1d is a cross-correlation: y_t = Σ_i w_i x_{t+i} on the padded signal
            expected[b, :, c] = np.correlate(padded, taps[c], mode="valid") + conv.conv.bias[c].item()
    expected = np.tanh(expected) @ conv.out.weight.detach().numpy().T + conv.out.bias.detach().numpy()
    np.testing.assert_allclose(conv(z).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert conv(z[0]).shape == (7, D)


@pytest.mark.parametrize("kind", ["sequence_laplacian", "sequence_window", "sequence_global"])
@pytest.mark.parametrize("causal", [False, True])
def test_a_causal_ldn_layer_never_looks_ahead(kind: str, causal: bool) -> None:
    torch.manual_seed(4)
    field = ldn_field(D, kernel=kind, kernel_params={"causal": causal}, attention=False, reaction="conv",
                      reaction_params={"causal": causal, "kernel_size": 3}, dtype=F64)
    layer = ldn_layer(field, n_steps=2)
    z = states(2, 10, D, seed=7)
    moved = z.clone()
    moved[:, 6] += 1.0
    with torch.no_grad():
        change = (layer(moved) - layer(z)).abs().amax(dim=(0, 2))
    assert float(change[6:9].min()) > 1e-3                                  # two steps reach two positions
    if not causal:
        assert float(change[5]) > 1e-3
    elif kind == "sequence_global":  # the FFT spreads round-off over every position, nothing more
        assert float(change[:6].max()) <= 1e-14
    else:
        assert float(change[:6].max()) == 0.0


# --------------------------------------------------------------------------- the stable step


def exact_bound(field: dp.DiffusionField, length: int) -> float:
    """2/ρ of the field's linear part (1 − μ)(S − I) − μI at length L, S from dense (state-independent)."""
    s = field.diffusivity.dense(torch.zeros(length, 1, dtype=F64)).detach()
    mu = field.source_weight
    linear = (1 - mu) * (s - torch.eye(length, dtype=F64)) - mu * torch.eye(length, dtype=F64)
    rho = float(torch.linalg.eigvals(linear).abs().max())
    return 2 / rho if rho > 0 else float("inf")


@pytest.mark.parametrize("kind, params", [("sequence_laplacian", {}), ("sequence_window", {"window": 3}),
                                          ("sequence_global", {"symmetric": True}), ("sequence_window", {"causal": True})])
@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_training_cannot_leave_the_stable_region(kind: str, params: dict, mu: float) -> None:
    """SGD with lr = 1e6 on θ and 100 on the kernel weights, with a loss that rewards large steps
    and strong kernels: every δt stays below 2/ρ̂_F ≤ 2/ρ at every length (ρ from dense eigenvalues)."""
    torch.manual_seed(5)
    field = dp.DiffusionField(dp.diffusivity(kind, dtype=F64, **params), source_weight=mu)
    step = StableStep(dtype=F64)
    optimiser = torch.optim.SGD([{"params": step.parameters(), "lr": 1e6}, {"params": field.parameters(), "lr": 1e2}])
    seen = [float(step(field, 16))]
    for _ in range(12):
        dt = step(field)
        loss = -dt - field_radius_bound(field, 16)  # larger steps and a stronger kernel, at once
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            for length in (2, 5, 16):
                dt = float(step(field, length))
                assert 0 < dt < float(step.bound(field, length)) and dt < exact_bound(field, length)
                seen.append(dt)
            assert float(step(field)) <= float(step(field, 16))  # any length: the most cautious
    assert float(torch.sigmoid(step.theta)) == 1.0  # θ was pushed to saturation and δt still kept out
    assert min(seen) < 1e-3 < max(seen)             # the kernel grew by orders of magnitude


def test_stable_step_formula_and_bounds() -> None:
    k = dp.diffusivity("sequence_laplacian", init_rate=1.0, dtype=F64)        # α = 0.5: ρ̂ = 2
    field = dp.DiffusionField(Superposition([k, attention()]), source_weight=0.25)
    step = StableStep(init=0.3, margin=0.1, max_step=1.0, dtype=F64)
    rho_hat = 0.75 * (2.0 + 2.0) + 2 * 0.25                                  # (1 − μ)(ρ̂_K + 2) + 2μ
    assert float(field_radius_bound(field)) == pytest.approx(rho_hat)
    assert float(step(field)) == pytest.approx(2 / rho_hat * 0.3 * 0.9)
    weak = dp.DiffusionField(dp.diffusivity("sequence_laplacian", init_rate=1e-4, dtype=F64))
    assert float(step.bound(weak)) == 1.0                                    # max_step caps a weak kernel
    assert float(generator_radius_bound(attention())) == 2.0
    graph = dp.diffusivity("gcn", edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    with pytest.raises(TypeError, match=r"no Gershgorin bound for the generator of 'gcn'"):
        generator_radius_bound(graph)
    with pytest.raises(TypeError, match=r"no Gershgorin bound"):
        StableEulerLayer(dp.DiffusionField(graph))
    for bad in ({"init": 1.0}, {"margin": 0.0}, {"max_step": 0.0}):
        with pytest.raises(ValueError, match=r"must be a"):
            StableStep(**bad)


def test_stable_euler_layer_is_one_euler_step_with_exact_gradients() -> None:
    torch.manual_seed(6)
    field = ldn_field(D, kernel="sequence_global", reaction="mlp", dtype=F64)
    layer = ldn_layer(field, init_step=0.4)
    z = states(2, 9, D, seed=8)
    t = torch.zeros((), dtype=F64)
    with torch.no_grad():
        dt = layer.step(field, 9)
        expected = z + dt * field(t, z)
    torch.testing.assert_close(layer(z), expected, rtol=1e-13, atol=1e-13)
    weights = states(2, 9, D, seed=9)
    (grad,) = torch.autograd.grad((layer(z) * weights).sum(), layer.step.theta)
    s = torch.sigmoid(layer.step.theta.detach())
    analytic = float(dt) * (1 - s) * (field(t, z).detach() * weights).sum()   # dδt/dθ = δt (1 − σ)
    torch.testing.assert_close(grad, analytic, rtol=1e-12, atol=1e-12)
    two = ldn_layer(field, init_step=0.4, n_steps=2)
    with torch.no_grad():
        first = z + dt * field(t, z)
        torch.testing.assert_close(two(z), first + dt * field(t + dt, first), rtol=1e-13, atol=1e-13)
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradcheck(lambda z: layer(z), (z[:1, :5].clone().requires_grad_(),))
    assert all(p.grad is None for p in params)


def test_ldn_field_refuses_a_kernel_that_is_not_positional() -> None:
    with pytest.raises(ValueError, match=r"kernel must name a position kernel"):
        ldn_field(D, kernel="identity")
