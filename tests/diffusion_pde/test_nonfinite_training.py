"""A NaN or Inf during training stops the run at the epoch it appeared in, naming where (a module's
output, the loss, a parameter's gradient, a parameter), and leaves the last good checkpoints as
they were, so that the run can be resumed from them."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch_geometric.data import Data

from diffusion_pde.cli import main
from diffusion_pde.data import Split
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.training import NonFiniteError, TrainConfig, load_checkpoint, train_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIG = TrainConfig(epochs=5, lr=0.01, weight_decay=0.0, checkpoint_every=1)


def ring(n: int = 40) -> tuple[Data, Split]:
    """A cycle graph with random features and alternating labels."""
    g = torch.Generator().manual_seed(5)
    nodes = torch.arange(n)
    edges = torch.stack([nodes, (nodes + 1) % n])
    data = Data(x=torch.rand(n, 5, generator=g), edge_index=torch.cat([edges, edges.flip(0)], dim=1),
                y=nodes % 2, num_nodes=n)
    perm = torch.randperm(n, generator=g)
    return data, Split("random", 0, perm[:10], perm[10:20], perm[20:])


def difformer(data: Data):
    torch.manual_seed(0)
    return build_model(ModelConfig(num_layers=2, hidden=8, dropout=0.2), data)


class Clock:
    """The epoch in progress, for hooks that break one epoch (``on_epoch`` advances it)."""

    def __init__(self) -> None:
        self.epoch = 1

    def tick(self, epoch: int, metrics: dict) -> None:
        self.epoch = epoch + 1


def test_a_nonfinite_hidden_state_stops_the_run_and_keeps_the_last_checkpoints(tmp_path):
    data, split = ring()
    reference = train_run(difformer(data), data, split, CONFIG, seed=0, progress=False)
    model, clock, kept = difformer(data), Clock(), {}

    def keep_epoch_2(epoch: int, metrics: dict) -> None:
        clock.tick(epoch, metrics)
        if epoch == 2:
            kept.update({name: (tmp_path / name).read_bytes() for name in ("last.pt", "best.pt")})

    model.encoder.register_forward_hook(lambda module, inputs, out: out * float("inf") if clock.epoch == 3 else None)
    with pytest.raises(NonFiniteError) as info:
        train_run(model, data, split, CONFIG, seed=0, run_dir=tmp_path, progress=False, on_epoch=keep_epoch_2)
    err = info.value
    assert (err.epoch, err.quantity, err.name) == (3, "output", "encoder")
    assert "output of module 'encoder' became non-finite (NaN or Inf) at epoch 3" in str(err)
    assert "keeps last.pt (epoch 2)" in str(err)
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    # without the fault, --resume continues from epoch 2 and ends where the unbroken run ends
    resumed = train_run(difformer(data), data, split, CONFIG, seed=0, run_dir=tmp_path, resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)


def test_a_nonfinite_gradient_names_the_parameter(tmp_path):
    data, split = ring()
    model, clock = difformer(data), Clock()
    weights = dict(model.named_parameters())
    name = "decoder.weight"
    weights[name].register_hook(lambda grad: grad * float("nan") if clock.epoch == 2 else grad)
    with pytest.raises(NonFiniteError) as info:
        train_run(model, data, split, CONFIG, seed=0, run_dir=tmp_path, progress=False, on_epoch=clock.tick)
    assert (info.value.epoch, info.value.quantity, info.value.name) == (2, "gradient", name)
    assert f"the gradient of parameter '{name}' became non-finite" in str(info.value)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert torch.isfinite(weights[name]).all()  # the bad gradient was never applied


def test_a_loss_that_overflows_from_finite_logits_is_the_loss():
    data, split = ring()
    model, clock = difformer(data), Clock()
    huge = torch.where(data.y[:, None] == torch.arange(2), -3e38, 3e38)  # finite logits, true class far below
    model.decoder.register_forward_hook(lambda module, inputs, out: huge if clock.epoch == 2 else None)
    with pytest.raises(NonFiniteError) as info:
        train_run(model, data, split, CONFIG, seed=0, progress=False, on_epoch=clock.tick)
    assert (info.value.epoch, info.value.quantity) == (2, "loss")
    assert "the training loss became non-finite (NaN or Inf) at epoch 2 (the training loss is inf)" in str(info.value)


def test_a_huge_learning_rate_is_caught_at_the_first_evaluation():
    data, split = ring()
    with pytest.raises(NonFiniteError) as info:
        train_run(difformer(data), data, split, TrainConfig(epochs=3, lr=1e30), seed=0, progress=False)
    # the step leaves weights near 1e30: the encoder's LayerNorm (encoder.1) squares them to inf
    assert (info.value.epoch, info.value.quantity, info.value.name) == (1, "output", "encoder.1")
    assert "'encoder.1' became non-finite (NaN or Inf) at epoch 1 after the optimiser step" in str(info.value)


def test_a_parameter_broken_by_the_step_is_named(tmp_path):
    data, split = ring()
    model, clock = difformer(data), Clock()
    name = "encoder.0.bias"
    weight = dict(model.named_parameters())[name]

    def break_at_epoch_2(optimizer, args, kwargs):
        if clock.epoch == 2:
            with torch.no_grad():
                weight[0] = float("inf")

    handle = register_optimizer_step_post_hook(break_at_epoch_2)
    try:
        with pytest.raises(NonFiniteError) as info:
            train_run(model, data, split, CONFIG, seed=0, run_dir=tmp_path, progress=False, on_epoch=clock.tick)
    finally:
        handle.remove()
    assert (info.value.epoch, info.value.quantity, info.value.name) == (2, "parameter", name)
    assert f"parameter '{name}' became non-finite (NaN or Inf) at epoch 2 after the optimiser step" in str(info.value)
    assert torch.isfinite(load_checkpoint(tmp_path / "last.pt")["model"][name]).all()


def test_the_train_command_reports_it_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "gcn", "--epochs", "3", "--lr", "1e30", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("diffusion-pde train: error: split 0 run 0: ") and "non-finite (NaN or Inf) at epoch 1" in err
    assert not (out / "split0" / "run0" / "last.pt").exists()


def test_non_finite_features_are_refused_before_training():
    """Through the Python API a NaN feature is named as such before any work (it was reported as a
    module output blamed on the learning rate: regression case)."""
    data, split = ring()
    data.x[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data.x contains 1 non-finite .* clean them"):
        train_run(difformer(data), data, split, CONFIG, seed=0, progress=False)
