"""Resuming with a larger epoch budget (``--resume --epochs N`` with N above the checkpoint's)
continues the run to exactly what a run with that budget from the start gives, for every task's
trainer; a budget below the epochs already run is refused, naming the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
from torch_geometric.data import Data

from saved_graphs import two_community_graph

from diffusion_pde.cli import main
from diffusion_pde.data.sequences import load_listops
from diffusion_pde.data.temporal import TemporalSignal, make_windows, temporal_split
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.models.sequence import SequenceModelConfig, build_sequence_model
from diffusion_pde.training import TrainConfig, train_run
from diffusion_pde.training.forecasting import forecast_run
from diffusion_pde.training.sequences import SequenceTrainConfig, train_sequences

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

Trainer = Callable[[int, Path, bool], list[dict]]


def _node(batch_size: int | None) -> Trainer:
    data, split = two_community_graph(seed=1)

    def train(epochs: int, run_dir: Path, resume: bool) -> list[dict]:
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="difformer_s", num_layers=2, hidden=8, dropout=0.3), data)
        config = TrainConfig(epochs=epochs, lr=0.02, weight_decay=1e-3, batch_size=batch_size)
        return train_run(model, data, split, config, seed=3, run_dir=run_dir, resume=resume, progress=False).history
    return train


def _forecast() -> Trainer:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(16, 5, generator=generator).cumsum(0)
    ring = torch.tensor([[0, 1, 2, 3, 4, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 0, 1, 2, 3, 4]])
    windows = make_windows(TemporalSignal("toy", values, [Data(edge_index=ring, num_nodes=5)]), 3)
    split = temporal_split(len(windows), 0.3, 0.3)

    def train(epochs: int, run_dir: Path, resume: bool) -> list[dict]:
        torch.manual_seed(5)
        model = build_model(ModelConfig(model="difformer_s", hidden=8, dropout=0.3),
                            Data(x=windows.x[0], edge_index=ring, num_nodes=5), num_classes=1)
        config = TrainConfig(epochs=epochs, lr=0.01, weight_decay=0.0, batch_size=2)
        return forecast_run(model, windows, split, config, seed=5, run_dir=run_dir, resume=resume,
                            progress=False).history
    return train


def _sequence() -> Trainer:
    data = load_listops(num_train=48, num_val=16, num_test=16, min_length=5, max_length=40, max_depth=4, max_args=4)

    def train(epochs: int, run_dir: Path, resume: bool) -> list[dict]:
        torch.manual_seed(5)
        model = build_sequence_model(SequenceModelConfig(model="ldn", hidden=8, num_layers=1, dropout=0.2),
                                     num_classes=10, max_length=data.max_length, vocab_size=16)
        config = SequenceTrainConfig(epochs=epochs, batch_size=16, lr=3e-3)
        return train_sequences(model, data, config, seed=5, run_dir=run_dir, resume=resume, progress=False).history
    return train


TASKS = {"node full batch": lambda: _node(None), "node mini-batches": lambda: _node(20), "forecasting": _forecast,
         "sequence": _sequence}


def _timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


@pytest.mark.parametrize("task", TASKS)
def test_a_larger_budget_continues_to_the_longer_run(task, tmp_path):
    train = TASKS[task]()
    longer = train(5, tmp_path / "longer", False)
    assert len(longer) == 5
    short = train(2, tmp_path / "grown", False)
    assert _timeless(short) == _timeless(longer[:2])
    torch.manual_seed(999)  # the resumed process's own random state must not matter
    grown = train(5, tmp_path / "grown", True)
    assert _timeless(grown) == _timeless(longer)
    with pytest.raises(ValueError, match=r"last\.pt has already run 5 epochs, more than epochs=3 \(--epochs\): "
                                         r"resume with epochs >= 5"):
        train(3, tmp_path / "grown", True)


def test_cli_resume_with_more_epochs(tmp_path, capsys):
    import json

    out = tmp_path / "run"
    args = ["train", "--model", "gcn", "--splits", "1", "--out", str(out), "--quiet", "--json"]
    assert main([*args, "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main([*args, "--epochs", "4", "--resume"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["results"][0]["epochs_run"] == 4
    assert (out / "split0" / "run0" / "history.csv").read_text().count("\n") == 5
    with pytest.raises(SystemExit) as stop:  # refused before any training, naming the flag
        main([*args, "--epochs", "3", "--resume"])
    assert stop.value.code == 2
    assert "resume with epochs >= 4" in capsys.readouterr().err


def test_a_run_stopped_by_patience_stays_stopped_when_grown(tmp_path):
    data, split = two_community_graph(seed=1)

    def run(epochs: int, folder: str, resume: bool = False):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="gcn", num_layers=2, hidden=8, dropout=0.3), data)
        config = TrainConfig(epochs=epochs, lr=0.05, weight_decay=1e-3, patience=2)
        return train_run(model, data, split, config, seed=3, run_dir=tmp_path / folder, resume=resume, progress=False)

    whole = run(60, "whole")
    assert whole.stopped_early and whole.epochs_run < 60
    run(2, "grown")
    grown = run(60, "grown", resume=True)
    assert _timeless(grown.history) == _timeless(whole.history)
    assert (grown.stopped_early, grown.best_epoch, grown.test_acc) == (True, whole.best_epoch, whole.test_acc)


def test_a_stored_result_is_not_paired_with_weights_trained_on_since(tmp_path):
    """A finished 2-epoch run whose best.pt was replaced by a later one (a grown run killed between
    writing best.pt and last.pt): resuming with the old budget does not report the old result with
    the newer weights; it resumes from last.pt and rewrites best.pt to match."""
    import shutil

    from diffusion_pde.training import load_checkpoint, loop

    train = _node(None)
    train(2, tmp_path / "run", False)
    shutil.copytree(tmp_path / "run", tmp_path / "other")
    train(5, tmp_path / "other", True)
    shutil.copy(tmp_path / "other" / "best.pt", tmp_path / "run" / "best.pt")   # the newer best.pt, the old last.pt
    data, split = two_community_graph(seed=1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="difformer_s", num_layers=2, hidden=8, dropout=0.3), data)
    config = TrainConfig(epochs=2, lr=0.02, weight_decay=1e-3)
    assert loop.stored_result(tmp_path / "run", loop.fingerprint(model.config, config, split, 3, data)) is None
    again = train(2, tmp_path / "run", True)
    assert len(again) == 2
    assert load_checkpoint(tmp_path / "run" / "best.pt")["fingerprint"]["train"]["epochs"] == 2
