"""The adjoint gives the gradients of direct backpropagation, for every tensor the field reads.

Table: every registered diffusivity × source weight μ ∈ {0, 0.5} × frozen ∈ {False, True} (where
the diffusivity can be frozen at Z⁰), and the parameters of every continuous-depth model, encoder
included. Z⁰ is built outside the solve from a learned map, so the source term and the frozen
attention read a tensor that is neither the state nor a parameter of the field.

``python tests/diffusion_pde/test_adjoint.py`` prints the table of measured gaps for
``docs/solvers.md``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

import diffusion_pde as dp
import solvers
from diffusion_pde.diffusivities import diffusivity_class, diffusivity_for
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.models.config import CONTINUOUS_MODELS

TOL = 1e-10          # rtol = atol of both solves
MAX_GAP = 1e-6       # acceptance: relative difference adjoint vs direct backpropagation
N, D = 6, 4


def _graph() -> Data:
    edge_index = to_undirected(torch.tensor([[0, 1, 2, 3, 4, 0, 2], [1, 2, 3, 4, 5, 3, 5]]))
    return Data(edge_index=edge_index, num_nodes=N)


def _can_freeze(name: str) -> bool:
    target = "difformer_s" if name == "mix" else name
    return "frozen" in inspect.signature(diffusivity_class(target).__init__).parameters


CASES = [(name, mu, frozen) for name in dp.available_diffusivities() for mu in (0.0, 0.5)
         for frozen in ((False, True) if _can_freeze(name) else (False,))]


def _diffusivity(name: str, frozen: bool) -> dp.Diffusivity:
    """``name`` on the test graph (float64, width D). GAT gets LeakyReLU slope 1: its default kink
    at 0 makes the field only piecewise smooth, and where a logit changes sign during the solve
    adaptive steps lose order (gap 6.7e-6 at rtol 1e-10 for μ = 0, see docs/solvers.md)."""
    graph = _graph()
    params = {"frozen": True} if frozen else {}
    if name == "gat":
        params["negative_slope"] = 1.0
    if name == "mix":
        params = {"first": diffusivity_for("difformer_s", in_channels=D, dtype=torch.float64, **params)}
    return diffusivity_for(name, graph=graph, in_channels=D, dtype=torch.float64, **params)


def _gradients(module: torch.nn.Module, x: torch.Tensor, loss_of) -> list[torch.Tensor]:
    """Gradients of ``loss_of()`` w.r.t. x and every parameter of ``module`` (zeros where unused)."""
    tensors = [x] + [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_of(), tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


def relative_gap(adjoint: list[torch.Tensor], direct: list[torch.Tensor]) -> float:
    """max_i ‖g_i^adj − g_i^bp‖ / ‖g^bp‖ over the gradient tensors (norm of all of them together)."""
    scale = torch.sqrt(sum(g.square().sum() for g in direct))
    assert scale > 0, "the loss must depend on the inputs"
    return max(float((a - b).norm() / scale) for a, b in zip(adjoint, direct))


def diffusivity_gap(name: str, mu: float, frozen: bool) -> float:
    """Gap for one case: Z⁰ = 0.4·tanh(X W) (W learned, outside the solve), loss = ⟨R, Z(1)⟩."""
    torch.manual_seed(0)
    diffusivity = _diffusivity(name, frozen)
    encoder = torch.nn.Linear(3, D, dtype=torch.float64)
    x = torch.randn(N, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(N, D, dtype=torch.float64)
    model = torch.nn.ModuleDict({"encoder": encoder, "diffusivity": diffusivity})
    results = []
    for adjoint in (True, False):
        block = dp.DiffusionBlock(dp.DiffusionField(diffusivity, source_weight=mu), method="dopri5", t1=1.0,
                                  rtol=TOL, atol=TOL, adjoint=adjoint)
        results.append(_gradients(model, x, lambda: (block(0.4 * torch.tanh(encoder(x))) * weights).sum()))
    return relative_gap(*results)


def _small_data() -> Data:
    torch.manual_seed(1)
    data = _graph()
    data.x = torch.randn(N, 5, dtype=torch.float64)
    data.y = torch.tensor([0, 1, 2, 0, 1, 2])
    return data


def model_gap(model: str, mu: float) -> float:
    """Gap for a continuous-depth classifier: gradients of a cross-entropy loss w.r.t. the input
    and every parameter (encoder, attention, decoder)."""
    data = _small_data()
    results = []
    for adjoint in (True, False):
        torch.manual_seed(2)
        config = ModelConfig(model=model, depth="continuous", method="dopri5", rtol=TOL, atol=TOL, adjoint=adjoint,
                             t1=1.0, hidden=4, dropout=0.0, source_weight=mu, num_layers=1)
        net = build_model(config, data, dtype=torch.float64)
        x = data.x.clone().requires_grad_(True)
        results.append(_gradients(net, x, lambda: torch.nn.functional.cross_entropy(net(x), data.y)))
    return relative_gap(*results)


@pytest.mark.parametrize(("name", "mu", "frozen"), CASES)
def test_adjoint_equals_backpropagation_for_every_diffusivity(name: str, mu: float, frozen: bool) -> None:
    assert diffusivity_gap(name, mu, frozen) <= MAX_GAP


@pytest.mark.parametrize("mu", [0.0, 0.3])
@pytest.mark.parametrize("model", CONTINUOUS_MODELS)
def test_adjoint_equals_backpropagation_for_every_continuous_model(model: str, mu: float) -> None:
    assert model_gap(model, mu) <= MAX_GAP


def test_source_term_regression_against_the_matrix_exponential() -> None:
    """Issue 16, input 1: path graph 0–1–2, gcn, μ = 0.5, x = [1, 0, −1]ᵀ. Z(1) is linear in x:
    with the augmented system d/dt [Z; Z⁰] = [[A, μI], [0, 0]] [Z; Z⁰], A = (1 − μ)(S − I) − μI,
    Z(1) = (E₁₁ + E₁₂) x for E = expm of that matrix, so d(sum Z(1))/dx = column sums of E₁₁ + E₁₂."""
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    S = dp.diffusivity("gcn", edge_index=edge_index, num_nodes=3, dtype=torch.float64)
    mu = 0.5
    a = (1 - mu) * (S.dense().numpy() - np.eye(3)) - mu * np.eye(3)
    big = np.block([[a, mu * np.eye(3)], [np.zeros((3, 3)), np.zeros((3, 3))]])
    propagator = expm(big)[:3, :3] + expm(big)[:3, 3:]     # Z(1) = P Z⁰ with Z(0) = Z⁰
    expected = propagator.sum(axis=0)
    np.testing.assert_allclose(expected, [0.9720, 1.0457, 0.9720], atol=1e-4)
    for adjoint in (False, True):
        x = torch.tensor([[1.0], [0.0], [-1.0]], dtype=torch.float64, requires_grad=True)
        block = dp.DiffusionBlock(dp.DiffusionField(S, source_weight=mu), method="dopri5", t1=1.0,
                                  rtol=1e-11, atol=1e-11, adjoint=adjoint)
        block(x).sum().backward()
        np.testing.assert_allclose(x.grad.flatten().numpy(), expected, rtol=1e-8)


def test_two_forward_passes_then_one_backward() -> None:
    """The adjoint differentiates the field as it was during its own forward pass, even after the
    field was re-initialised at another Z⁰ by a second forward pass."""
    diffusivity = _diffusivity("difformer_s", frozen=True)
    weights = torch.randn(N, D, dtype=torch.float64)
    grads = []
    for adjoint in (True, False):
        torch.manual_seed(3)
        x1 = torch.randn(N, D, dtype=torch.float64, requires_grad=True)
        x2 = torch.randn(N, D, dtype=torch.float64, requires_grad=True)
        block = dp.DiffusionBlock(dp.DiffusionField(diffusivity, source_weight=0.3), method="dopri5", t1=1.0,
                                  rtol=TOL, atol=TOL, adjoint=adjoint)
        loss = (block(x1) * weights).sum() + (block(x2) * weights.flip(0)).sum()
        grads.append(torch.autograd.grad(loss, [x1, x2, *diffusivity.parameters()]))
    assert relative_gap(*grads) <= MAX_GAP


def test_a_field_reading_an_undeclared_tensor_is_refused() -> None:
    """A closure over a tensor that requires grad would get a silently wrong (zero) gradient."""
    rate = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    z0 = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="adjoint=True: the field reads 1 tensor"):
        solvers.solve(lambda t, z: -rate * z, z0, 1.0, method="dopri5", adjoint=True)
    # Registered as a parameter of a module field, the same rate gets the exact gradient.
    field = torch.nn.Module()
    field.rate = torch.nn.Parameter(rate.detach().clone())
    field.forward = lambda t, z: -field.rate * z
    solution = solvers.solve(field, z0, 1.0, method="dopri5", adjoint=True, rtol=TOL, atol=TOL)
    solution.final.sum().backward()
    assert torch.allclose(field.rate.grad, -3 * torch.exp(torch.tensor(-2.0, dtype=torch.float64)), rtol=1e-8)


if __name__ == "__main__":
    print("| diffusivity | μ | frozen | max relative gap |")
    print("|---|---|---|---|")
    for name, mu, frozen in CASES:
        print(f"| `{name}` | {mu} | {'yes' if frozen else 'no'} | {diffusivity_gap(name, mu, frozen):.1e} |")
    print()
    print("| continuous model | μ | max relative gap |")
    print("|---|---|---|")
    for model in CONTINUOUS_MODELS:
        for mu in (0.0, 0.3):
            print(f"| `{model}` | {mu} | {model_gap(model, mu):.1e} |")
