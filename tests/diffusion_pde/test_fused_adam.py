"""The training loop's Adam (torch's fused kernel where the parameters allow it) makes the same
updates as the per-tensor Adam, to float64 round-off."""

from __future__ import annotations

import torch
from torch import nn

from diffusion_pde.training import TrainConfig
from diffusion_pde.training.loop import adam


def test_fused_adam_equals_per_tensor_adam_in_float64():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    reference = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    reference.load_state_dict(model.state_dict())
    config = TrainConfig(lr=0.01, weight_decay=0.05)
    fused = adam(model, config)
    plain = torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=0.05, foreach=False)
    assert fused.defaults["fused"] is True
    x = torch.randn(20, 6, dtype=torch.float64)
    for _ in range(25):
        for net, opt in ((model, fused), (reference, plain)):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-13, rtol=0)


def test_adam_without_parameters_of_a_fused_kind_falls_back():
    model = nn.Linear(3, 2)
    model.weight.data = model.weight.data.to(torch.complex64)  # complex: no fused kernel
    assert adam(model, TrainConfig()).defaults["fused"] is None
