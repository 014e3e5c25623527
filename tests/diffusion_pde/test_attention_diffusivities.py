"""difformer_s, difformer_a, energy and mix against brute-force matrices built here from their
weights with plain numpy loops (independent of the library's vectorised code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diffusion_pde as dp
import solvers
from diffusion_pde import graph as graph_module
from diffusion_pde.diffusivities import difformer_a as difformer_a_module

TOL = 1e-10


def _weights(lin: torch.nn.Linear, heads: int) -> np.ndarray:
    """[H, d, d_k] numpy weights of a bias-free Linear d -> H*d_k."""
    w = lin.weight.detach().numpy()  # [H*d_k, d]
    return w.reshape(heads, -1, w.shape[1]).transpose(0, 2, 1)


def brute_force_s(z: np.ndarray, wq: np.ndarray, wk: np.ndarray, kernel: str, norm: str) -> np.ndarray:
    """S = mean over heads of the row-normalised kernel matrix, entry by entry."""
    n = z.shape[0]
    heads = wq.shape[0]
    qs = [z @ wq[h] for h in range(heads)]
    ks = [z @ wk[h] for h in range(heads)]
    if norm == "row":
        qs = [q / np.linalg.norm(q, axis=1, keepdims=True) for q in qs]
        ks = [k / np.linalg.norm(k, axis=1, keepdims=True) for k in ks]
    elif norm == "global":
        q_total = math.sqrt(sum((q**2).sum() for q in qs))
        k_total = math.sqrt(sum((k**2).sum() for k in ks))
        qs = [q / q_total for q in qs]
        ks = [k / k_total for k in ks]
    s = np.zeros((n, n))
    for h in range(heads):
        block = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                score = float(qs[h][i] @ ks[h][j])
                block[i, j] = 1.0 + score if kernel == "simple" else 1.0 / (1.0 + math.exp(-score))
            block[i] /= block[i].sum()
        s += block / heads
    return s


@pytest.mark.parametrize("norm", ["row", "global"])
@pytest.mark.parametrize("heads", [1, 3])
def test_difformer_s_equals_brute_force(norm: str, heads: int) -> None:
    torch.manual_seed(heads)
    s = dp.diffusivity("difformer_s", in_channels=5, heads=heads, key_channels=4, qk_norm=norm).double()
    z = torch.randn(23, 5, dtype=torch.float64)
    v = torch.randn(23, 7, dtype=torch.float64)
    reference = brute_force_s(z.numpy(), _weights(s.query, heads), _weights(s.key, heads), "simple", norm)
    assert np.abs(s.dense(z).detach().numpy() - reference).max() <= TOL
    assert np.abs(s(z, v).detach().numpy() - reference @ v.numpy()).max() <= TOL
    assert np.abs(s(z).detach().numpy() - reference @ z.numpy()).max() <= TOL


def test_difformer_s_batched_matches_each_graph_and_is_row_stochastic() -> None:
    torch.manual_seed(0)
    s = dp.diffusivity("difformer_s", in_channels=4, heads=2).double()
    z = torch.randn(3, 11, 4, dtype=torch.float64)
    out = s(z)
    for b in range(3):
        assert torch.allclose(out[b], s(z[b]), atol=TOL, rtol=0)
    dense = s.dense(z)
    assert dense.shape == (3, 11, 11)
    assert torch.allclose(dense.sum(-1), torch.ones(3, 11, dtype=torch.float64), atol=1e-12)
    assert bool((dense >= 0).all())


def test_global_norm_makes_s_nearly_uniform_but_row_norm_does_not() -> None:
    torch.manual_seed(1)
    z = torch.randn(200, 8, dtype=torch.float64)
    spread = {}
    for norm in ("row", "global"):
        torch.manual_seed(2)
        s = dp.diffusivity("difformer_s", in_channels=8, qk_norm=norm).double()
        spread[norm] = float((s.dense(z).detach() * 200 - 1).abs().max())
    assert spread["global"] < 0.05 < spread["row"]


@pytest.mark.parametrize("norm", ["none", "row"])
def test_difformer_a_equals_brute_force_also_in_blocks(norm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    s = dp.diffusivity("difformer_a", in_channels=4, heads=2, key_channels=3, qk_norm=norm).double()
    z = torch.randn(17, 4, dtype=torch.float64)
    v = torch.randn(17, 2, dtype=torch.float64)
    reference = brute_force_s(z.numpy(), _weights(s.query, 2), _weights(s.key, 2), "sigmoid", norm)
    assert np.abs(s(z, v).detach().numpy() - reference @ v.numpy()).max() <= TOL
    monkeypatch.setattr(difformer_a_module, "BLOCK_ELEMENTS", 40)  # forces blocks of one row
    assert np.abs(s(z, v).detach().numpy() - reference @ v.numpy()).max() <= TOL


@pytest.mark.parametrize(
    "delta, derivative",
    [
        ("difformer", lambda s: 2 - s / 2),
        ("log", lambda s: 1 / (1 + s)),
        ("sqrt", lambda s: 0.5 / np.sqrt(s + 1e-6)),
        (lambda s: torch.log1p(s) + 0.5 * s, lambda s: 1 / (1 + s) + 0.5),
    ],
)
def test_energy_diffusivity_is_normalised_penalty_derivative(delta, derivative) -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(12, 3))
    z /= np.linalg.norm(z, axis=1, keepdims=True)  # unit rows: distances in [0, 4]
    sq = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    reference = derivative(sq)
    reference = reference / reference.sum(1, keepdims=True)
    s = dp.diffusivity("energy", delta=delta)
    zt = torch.from_numpy(z)
    assert np.abs(s.dense(zt).numpy() - reference).max() <= 1e-9
    v = torch.randn(12, 2, dtype=torch.float64)
    assert np.abs(s(zt, v).numpy() - reference @ v.numpy()).max() <= 1e-9


def test_energy_difformer_penalty_outside_its_domain_is_an_error() -> None:
    s = dp.diffusivity("energy", delta="difformer")
    far = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)  # squared distance 9 > 4
    with pytest.raises(ValueError, match="squared distances up to 4"):
        s(far)
    with pytest.raises(ValueError, match="unknown penalty"):
        dp.diffusivity("energy", delta="cubic")


def test_mix_is_the_convex_combination() -> None:
    torch.manual_seed(5)
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    graph = dp.diffusivity("random_walk", edge_index=edge_index, num_nodes=6, dtype=torch.float64)
    attention = dp.diffusivity("difformer_s", in_channels=3).double()
    mix = dp.diffusivity("mix", first=attention, second=graph, weight=0.25)
    z = torch.randn(6, 3, dtype=torch.float64)
    expected = 0.75 * attention.dense(z) + 0.25 * graph.dense(z)
    assert torch.allclose(mix.dense(z), expected, atol=TOL, rtol=0)
    assert torch.allclose(mix(z), expected @ z, atol=TOL, rtol=0)
    assert mix.properties.row_stochastic and mix.properties.depends_on_state
    with pytest.raises(ValueError, match="weight"):
        dp.diffusivity("mix", first=attention, second=graph, weight=1.5)
    with pytest.raises(TypeError, match="second"):
        dp.diffusivity("mix", first=attention, second="gcn")


def test_frozen_attention_holds_s_fixed_at_z0() -> None:
    torch.manual_seed(6)
    z0 = torch.randn(9, 4, dtype=torch.float64)
    live = dp.diffusivity("difformer_s", in_channels=4).double()
    frozen = dp.diffusivity("difformer_s", in_channels=4, frozen=True).double()
    frozen.load_state_dict(live.state_dict())
    with pytest.raises(RuntimeError, match="set_initial_state"):
        frozen(z0)
    runs = {}
    for name, s in (("live", live), ("frozen", frozen)):
        field = dp.DiffusionField(s).set_initial_state(z0)
        one = solvers.solve(field, z0, 1.0, method="euler", n_steps=1).final
        three = solvers.solve(field, z0, 3.0, method="euler", n_steps=3).final
        runs[name] = (one, three)
    assert torch.allclose(runs["live"][0], runs["frozen"][0], atol=TOL, rtol=0)
    assert not torch.allclose(runs["live"][1], runs["frozen"][1], atol=1e-6)
    s0 = live.dense(z0)
    expected = z0
    for _ in range(3):
        expected = s0 @ expected
    assert torch.allclose(runs["frozen"][1], expected, atol=TOL, rtol=0)


def test_gradients_reach_query_and_key_weights() -> None:
    torch.manual_seed(7)
    s = dp.diffusivity("difformer_s", in_channels=4, heads=2).double()
    z0 = torch.randn(10, 4, dtype=torch.float64)
    block = dp.DiffusionBlock(dp.DiffusionField(s, source_weight=0.2), method="rk4", t1=1.0, n_steps=3)
    block(z0).square().sum().backward()
    for weight in (s.query.weight, s.key.weight):
        assert weight.grad is not None and bool(torch.isfinite(weight.grad).all()) and float(weight.grad.abs().max()) > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_channels": 0}, "in_channels"),
        ({"in_channels": 4, "heads": 0}, "heads"),
        ({"in_channels": 4, "key_channels": -1}, "key_channels"),
        ({"in_channels": 4, "qk_norm": "l1"}, "qk_norm"),
    ],
)
def test_bad_attention_arguments_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dp.diffusivity("difformer_s", **kwargs)


def test_wrong_state_width_is_named() -> None:
    s = dp.diffusivity("difformer_s", in_channels=4)
    with pytest.raises(ValueError, match="in_channels = 4"):
        s(torch.randn(5, 3))


@pytest.mark.parametrize("name, kwargs", [
    ("difformer_s", {"qk_norm": "row"}), ("difformer_s", {"qk_norm": "global"}), ("difformer_a", {}),
])
def test_gradcheck_through_attention_diffusivities(name: str, kwargs: dict) -> None:
    torch.manual_seed(8)
    s = dp.diffusivity(name, in_channels=4, heads=2, key_channels=3, **kwargs).double()
    z = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, v: s(z, v), (z, v))


@pytest.mark.parametrize("norm", ["row", "global"])
def test_zero_state_rows_keep_s_finite(norm: str) -> None:
    """A zero query/key has no direction: it is normalised to 0 (as F.normalize does), so its
    kernel entries are 1 and S stays finite and row-stochastic, with finite gradients."""
    torch.manual_seed(9)
    s = dp.diffusivity("difformer_s", in_channels=3, qk_norm=norm).double()
    z = torch.randn(6, 3, dtype=torch.float64)
    z[2] = 0.0
    if norm == "global":
        z = torch.zeros_like(z)
    z.requires_grad_()
    dense = s.dense(z)
    assert bool(torch.isfinite(dense).all()) and torch.allclose(dense.sum(-1), torch.ones(6, dtype=torch.float64))
    s(z).sum().backward()
    assert bool(torch.isfinite(z.grad).all())


# DIFFormer-s with global norms runs as one autograd node with a hand-written backward pass
# (diffusivities._global_attention.GlobalAttention); the streamed form, sums then apply, is the same
# function in plain autograd operations. Values and every gradient must agree.
GLOBAL_CASES = [  # id, heads, key channels, bias, separate values, batch shape
    ("one-head", 1, 4, False, False, ()),
    ("bias-values", 1, 4, True, True, ()),
    ("heads-bias-values-batched", 3, 2, True, True, (2,)),
    ("heads-bias-batched", 3, 2, True, False, (2,)),
    ("heads-no-bias", 2, 3, False, True, ()),
]


def _fused_and_streamed_gradients(s, z: torch.Tensor, v: torch.Tensor | None):
    weights = [p for p in (s.query.weight, s.key.weight, s.query.bias, s.key.bias) if p is not None]
    inputs = [z] + ([] if v is None else [v]) + weights
    fused = s(z, v)
    streamed = s.apply(z, s.sums(z, z if v is None else v))
    probe = torch.randn_like(fused)
    return (fused, streamed, torch.autograd.grad((fused * probe).sum(), inputs),
            torch.autograd.grad((streamed * probe).sum(), inputs))


@pytest.mark.parametrize("row_block", [4, 16384])  # rows in blocks of 4 (3 blocks), or one block
@pytest.mark.parametrize("case, heads, key_channels, bias, separate, batch", GLOBAL_CASES, ids=[c[0] for c in GLOBAL_CASES])
def test_global_attention_backward_is_autograd_of_the_streamed_form(case, heads, key_channels, bias, separate, batch,
                                                                    row_block, monkeypatch):
    monkeypatch.setattr(graph_module, "ROW_BLOCK", row_block)
    torch.manual_seed(len(case))
    s = dp.diffusivity("difformer_s", in_channels=5, heads=heads, key_channels=key_channels, qk_norm="global",
                       bias=bias).double()
    z = torch.randn(*batch, 9, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(*batch, 9, 3, dtype=torch.float64, requires_grad=True) if separate else None
    fused, streamed, got, want = _fused_and_streamed_gradients(s, z, v)
    torch.testing.assert_close(fused, streamed, rtol=1e-13, atol=1e-13)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("heads", [1, 2])
def test_global_attention_gradients_on_rows_without_attention_mass(heads: int) -> None:
    """Global norms bound |r q_iᵀk_j| summed over all i, j by 1, so a kernel row sum N + r q_iᵀΣ_j k_j
    can vanish only for one node: with d = 1 and W_k = −W_q/4 in the first head (zero weights in
    the second) its sum is 1 − 1 = 0, the row is uniform (Σ_j v_j / N = v), and the hand-written
    gradients, including those through the uniform row, equal autograd's of the streamed form."""
    torch.manual_seed(3)
    s = dp.diffusivity("difformer_s", in_channels=1, heads=heads, key_channels=1, qk_norm="global").double()
    with torch.no_grad():
        s.query.weight.copy_(torch.tensor([[2.0], [0.0]][:heads]))
        s.key.weight.copy_(torch.tensor([[-0.5], [0.0]][:heads]))
    z = torch.full((1, 1), 0.7, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    fused, streamed, got, want = _fused_and_streamed_gradients(s, z, v)
    torch.testing.assert_close(fused, v.detach(), rtol=0, atol=1e-15)
    assert float(got[1].abs().sum()) > 0  # the gradient reaches v through the uniform row
    torch.testing.assert_close(fused, streamed, rtol=0, atol=1e-15)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
