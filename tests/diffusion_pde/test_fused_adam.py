"""The training loop's Adam (torch's fused kernel where the parameters allow it) makes the same
updates as the per-tensor Adam, to float64 round-off."""

from __future__ import annotations

import pytest
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


def test_resume_from_a_checkpoint_without_the_fused_flag_keeps_fused_adam(tmp_path, monkeypatch):
    """A last.pt written by an optimiser without ``fused`` (older versions) resumes with the fused
    kernel still on, and to the same result as an uninterrupted run (regression case: loading the
    state copied fused=None over it)."""
    from saved_graphs import two_community_graph

    from diffusion_pde.models import ModelConfig, build_model
    from diffusion_pde.training import load_checkpoint, train_run
    from diffusion_pde.training import loop
    from diffusion_pde.training.checkpoint import save_atomic

    data, split = two_community_graph()

    def model():
        torch.manual_seed(0)
        return build_model(ModelConfig(num_layers=2, hidden=8, dropout=0.3), data)

    config = TrainConfig(epochs=6, lr=0.01, checkpoint_every=3)
    whole = train_run(model(), data, split, config, seed=0, progress=False)
    def interrupt(epoch: int, metrics: dict) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(model(), data, split, config, seed=0, run_dir=tmp_path, progress=False, on_epoch=interrupt)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    for group in ckpt["optimizer"]["param_groups"]:
        group["fused"] = None
    save_atomic(ckpt, tmp_path / "last.pt")
    made = []
    monkeypatch.setattr(loop, "adam", lambda *args: made.append(adam(*args)) or made[-1])
    resumed = train_run(model(), data, split, config, seed=0, run_dir=tmp_path, resume=True, progress=False)
    assert all(group["fused"] for group in made[-1].param_groups)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
