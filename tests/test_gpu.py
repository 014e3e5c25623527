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


def test_mini_batch_training_on_gpu_matches_cpu() -> None:
    """Mini-batch training on CUDA (partitions moved to the device, subgraph operators built
    there) follows the CPU run: the same partitions, the same losses up to float32 round-off."""
    from diffusion_pde.data import Split
    from diffusion_pde.models import ModelConfig, build_model
    from diffusion_pde.training import TrainConfig, train_run

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    data = Data(x=torch.randn(300, 8, generator=gen) + y[:, None].float(), y=y,
                edge_index=torch.randint(0, 300, (2, 1500), generator=gen), num_nodes=300)
    split = Split("random", 0, torch.arange(0, 60), torch.arange(60, 150), torch.arange(150, 300))
    losses = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="difformer_s", num_layers=2, hidden=16, dropout=0.0), data).to(device)
        result = train_run(model, data.to(device), split, TrainConfig(epochs=3, batch_size=100), seed=0, progress=False)
        losses.append([row["loss"] for row in result.history])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_torchrun_with_nccl(tmp_path) -> None:
    """torchrun on the GPUs (one process per GPU, at most 2; nccl) trains mini-batches with DDP and
    writes the results once."""
    import json
    import os
    import subprocess
    import sys

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2
    torch.save(Data(x=torch.randn(400, 6, generator=gen) + y[:, None].float(), y=y,
                    edge_index=torch.randint(0, 400, (2, 2000), generator=gen)), tmp_path / "g.pt")
    procs = min(2, torch.cuda.device_count())
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), "-m",
         "diffusion_pde.cli", "train", "--dataset", str(tmp_path / "g.pt"), "--model", "difformer_s", "--layers", "2",
         "--hidden", "16", "--epochs", "3", "--batch-size", "100", "--device", "cuda", "--quiet", "--json",
         "--out", str(tmp_path / "out")], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    assert payload["world_size"] == procs and payload["device"].startswith("cuda")
    assert (tmp_path / "out" / "split0" / "run0" / "last.pt").exists()
