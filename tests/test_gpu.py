"""The same code paths on CUDA (run with ``make test-gpu`` / ``pytest -m gpu``; skipped without CUDA).

CPU results are the oracle: every solver and diffusivity must give the same numbers on the GPU."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

import diffusion_pde as dp
import solvers
from diffusion_pde.diffusivities import diffusivity_for

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


def graph(n: int = 40, e: int = 160) -> Data:
    gen = torch.Generator().manual_seed(0)
    return Data(edge_index=torch.randint(0, n, (2, e), generator=gen), num_nodes=n)


@pytest.mark.parametrize("method", solvers.available_methods())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solvers_match_cpu(method: str, dtype: torch.dtype) -> None:
    data = graph()
    s = dp.diffusivity("random_walk", graph=data, dtype=dtype)
    z0 = torch.randn(40, 8, dtype=dtype, generator=torch.Generator().manual_seed(1))
    kwargs = {"n_steps": 10} if method in solvers.fixed_step_methods() else {"rtol": 1e-7, "atol": 1e-9}
    cpu = solvers.solve(dp.DiffusionField(s), z0, 1.0, method=method, t_eval=[0.5, 1.0], **kwargs)
    gpu = solvers.solve(dp.DiffusionField(s.to(CUDA)), z0.to(CUDA), 1.0, method=method, t_eval=[0.5, 1.0], **kwargs)
    assert gpu.final.device.type == "cuda" and gpu.final.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(gpu.states.cpu(), cpu.states, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", dp.available_diffusivities())
def test_every_diffusivity_matches_cpu(name: str) -> None:
    data = graph()
    torch.manual_seed(0)
    s = diffusivity_for(name, graph=data, in_channels=8, dtype=torch.float64)
    z = torch.nn.functional.normalize(torch.randn(40, 8, dtype=torch.float64), dim=-1)
    s.set_initial_state(z)
    expected = s(z)
    s_gpu = s.to(CUDA)
    s_gpu.set_initial_state(z.to(CUDA))
    assert torch.allclose(s_gpu(z.to(CUDA)).cpu(), expected, atol=1e-10, rtol=1e-10)


def test_adjoint_gradients_on_gpu() -> None:
    torch.manual_seed(0)
    s = dp.diffusivity("difformer_s", in_channels=8, dtype=torch.float64).to(CUDA)
    z0 = torch.randn(40, 8, dtype=torch.float64, device=CUDA, requires_grad=True)
    grads = []
    for adjoint in (False, True):
        block = dp.DiffusionBlock(dp.DiffusionField(s, source_weight=0.1), method="dopri5", t1=1.0,
                                  rtol=1e-10, atol=1e-12, adjoint=adjoint)
        (g,) = torch.autograd.grad(block(z0).square().sum(), z0)
        grads.append(g)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)
