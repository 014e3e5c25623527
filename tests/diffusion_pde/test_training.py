"""Training: splits, determinism, exact resume after an interruption, atomic checkpoints, the
train/sweep commands and their errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch_geometric.data import Data

from saved_graphs import two_community_graph

from diffusion_pde.cli import main
from diffusion_pde.data import Split, load_dataset, random_split
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.training import MARKER, TrainConfig, evaluate, load_checkpoint, make_split, resolve, train_run
from diffusion_pde.training import loop
from diffusion_pde.training.experiment import evaluate_with_solvers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def small_model(data: Data, seed: int = 0, **changes):
    torch.manual_seed(seed)
    return build_model(ModelConfig(num_layers=2, hidden=8, dropout=0.3, **changes), data)


def test_random_split_follows_the_protocol():
    data = load_dataset("cora")
    split = random_split(data.y, 3)
    assert split.train.numel() == 140 and split.val.numel() == 500 and split.test.numel() == 1000
    assert torch.bincount(data.y[split.train]).tolist() == [20] * 7
    union = torch.cat([split.train, split.val, split.test])
    assert union.unique().numel() == 1640
    again = random_split(data.y, 3)
    assert torch.equal(split.test, again.test)
    assert not torch.equal(split.test, random_split(data.y, 4).test)


def test_public_split_and_unavailable_kinds():
    data = load_dataset("cora")
    split = make_split(data, "public", 0)
    assert (split.train.numel(), split.val.numel(), split.test.numel()) == (140, 500, 1000)
    with pytest.raises(ValueError, match="single split"):
        make_split(data, "public", 1)
    with pytest.raises(ValueError, match="offers the splits"):
        make_split(data, "fixed", 0)
    with pytest.raises(ValueError, match="too few"):
        random_split(torch.tensor([0] * 30 + [1] * 5), 0)


def test_features_are_row_normalised_and_graph_undirected():
    data = load_dataset("cora")
    sums = data.x.sum(dim=1)
    assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]))
    pairs = set(map(tuple, data.edge_index.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)


def test_training_learns_and_is_deterministic():
    data, split = two_community_graph()
    config = TrainConfig(epochs=40, lr=0.02, weight_decay=0.0)
    first = train_run(small_model(data), data, split, config, seed=0, progress=False)
    second = train_run(small_model(data), data, split, config, seed=0, progress=False)
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]
    assert first.history[-1]["loss"] < 0.7 * first.history[0]["loss"]
    assert first.test_acc > first.chance
    assert 1 <= first.first_epoch_70 <= first.best_epoch


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    data, split = two_community_graph(seed=1)
    config = TrainConfig(epochs=30, lr=0.02, weight_decay=1e-3, checkpoint_every=4)
    reference = train_run(small_model(data), data, split, config, seed=0, progress=False)

    def interrupt(epoch, metrics):
        if epoch == 15:
            raise KeyboardInterrupt

    torch.manual_seed(123)  # the interrupted process's RNG state must not matter after resume
    with pytest.raises(KeyboardInterrupt):
        train_run(small_model(data), data, split, config, seed=0, run_dir=tmp_path, progress=False, on_epoch=interrupt)
    # Nothing is written on the way out (mid-epoch state may be inconsistent): the last periodic
    # checkpoint (epoch 12, every 4) is where the resumed run starts.
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 12
    torch.manual_seed(999)
    resumed = train_run(small_model(data), data, split, config, seed=0, run_dir=tmp_path, resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)
    assert (resumed.best_epoch, resumed.test_acc) == (reference.best_epoch, reference.test_acc)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_resume_refuses_other_settings(tmp_path):
    data, split = two_community_graph()
    train_run(small_model(data), data, split, TrainConfig(epochs=3), seed=0, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train_run(small_model(data), data, split, TrainConfig(epochs=3, lr=0.5), seed=0, run_dir=tmp_path,
                  resume=True, progress=False)


def _edited(data: Data, **fields) -> Data:
    out = data.clone()
    for name, value in fields.items():
        out[name] = value
    return out


@pytest.mark.parametrize("change, named", [
    ("labels", "the labels y changed"),
    ("features", "the node features x changed"),
    ("weights", "the edge weights changed"),
    ("split", "the training nodes changed; the validation nodes changed"),
])
def test_resume_refuses_a_graph_whose_contents_changed(tmp_path, change, named):
    """Same name, shapes and split sizes, other contents: the finished result is not re-reported."""
    data, split = two_community_graph()
    config = TrainConfig(epochs=2)
    train_run(small_model(data), data, split, config, seed=0, run_dir=tmp_path, progress=False)
    edited, other_split = data, split
    if change == "labels":
        edited = _edited(data, y=data.y.flip(0))
    elif change == "features":
        edited = _edited(data, x=data.x + 1e-3)
    elif change == "weights":
        edited = _edited(data, edge_weight=torch.ones(data.edge_index.shape[1]))
    else:
        other_split = Split("random", 0, split.val[:10], torch.cat([split.train, split.val[10:]]), split.test)
    fingerprint = loop.fingerprint(small_model(edited).config, config, other_split, 0, edited)
    assert loop.stored_result(tmp_path, fingerprint) is None
    with pytest.raises(ValueError, match=rf"last\.pt was written with other settings or data \({named}\); resume with"):
        train_run(small_model(edited), edited, other_split, config, seed=0, run_dir=tmp_path, resume=True, progress=False)


def test_resume_names_the_settings_that_differ_and_ignores_checkpoint_every(tmp_path):
    data, split = two_community_graph()

    def interrupt(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(small_model(data), data, split, TrainConfig(epochs=4, checkpoint_every=1), seed=0, run_dir=tmp_path,
                  progress=False, on_epoch=interrupt)
    with pytest.raises(ValueError, match=r"\(lr 0\.001 then, 0\.5 now; seed 0 then, 1 now\)"):
        train_run(small_model(data), data, split, TrainConfig(epochs=4, lr=0.5, checkpoint_every=1), seed=1,
                  run_dir=tmp_path, resume=True, progress=False)
    resumed = train_run(small_model(data), data, split, TrainConfig(epochs=4, checkpoint_every=3), seed=0,
                        run_dir=tmp_path, resume=True, progress=False)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]      # continued from epoch 2


def test_early_stopping_and_presets():
    data, split = two_community_graph()
    result = train_run(small_model(data), data, split, TrainConfig(epochs=200, lr=0.05, patience=5), seed=0, progress=False)
    assert result.stopped_early and result.epochs_run == result.best_epoch + 5
    model, train = resolve("citeseer", "difformer_a", "paper")
    assert (model.num_layers, model.hidden, train.weight_decay, model.dropout) == (4, 32, 1.0, 0.2)
    model, train = resolve("cora", "difformer_s", "paper")  # chosen on tuning seeds: the authors' model
    assert (model.num_layers, model.tau, model.qk_norm, model.graph_weight, model.value_proj, model.source_weight,
            model.input_dropout, model.qk_bias, model.encoder_bias) == (8, 0.5, "global", None, False, 0.0, 0.0, True,
                                                                        "uniform")
    assert resolve("cora", "difformer_s", "paper") == resolve("cora", "difformer_s", "authors")
    model, train = resolve("citeseer", "difformer_s", "paper")
    assert (model.source_weight, model.qk_bias) == (0.1, False)
    model, train = resolve("cora", "difformer_a", "paper")
    assert (model.dropout, model.input_dropout, train.weight_decay) == (0.0, 0.0, 0.1)
    model, train = resolve("cora", "difformer_s", "paper", qk_norm="row", source_weight=0.0, epochs=7)
    assert (model.qk_norm, model.source_weight, train.epochs, train.lr) == ("row", 0.0, 7, 1e-3)
    with pytest.raises(ValueError, match="no paper preset"):
        resolve("chameleon", "difformer_s", "paper")
    with pytest.raises(ValueError, match="patience must be"):
        TrainConfig(patience=0)


def test_train_command_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "gcn", "--epochs", "3", "--splits", "2", "--out", str(out), "--quiet", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [(r["split"], r["run"]) for r in payload["results"]] == [(0, 0), (1, 0)]
    assert (out / "results.csv").read_text().count("\n") == 3
    assert (out / "split1" / "run0" / "history.csv").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == payload["summary"]   # stored results, not retrained

    # --first-split 1 trains split 1 alone, with the seed it had as the second of two splits
    assert main(["train", "--model", "gcn", "--epochs", "3", "--splits", "1", "--first-split", "1",
                 "--out", str(tmp_path / "offset"), "--quiet", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["first_split"] == 1 and (tmp_path / "offset" / "split1" / "run0" / "best.pt").exists()
    timeless = lambda result: {k: v for k, v in result.items() if k != "seconds_per_epoch"}  # noqa: E731
    assert [timeless(r) for r in alone["results"]] == [timeless(payload["results"][1])]


def test_continuous_training_reports_other_solvers(tmp_path, capsys):
    args = ["train", "--depth", "continuous", "--method", "rk4", "--n-steps", "2", "--t1", "1",
            "--hidden", "8", "--epochs", "2", "--out", str(tmp_path / "c"), "--quiet", "--json",
            "--eval-solvers", "euler:2", "dopri5"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["results"][0]["extra"]["solvers"]) == {"euler:2", "dopri5"}
    assert payload["results"][0]["extra"]["solvers"]["dopri5"]["nfe"] > 0


def test_sweep_command(tmp_path, capsys):
    args = ["sweep", "--model", "difformer_s", "--hidden", "8", "--epochs", "2", "--depths", "1", "3", "--taus", "0.5",
            "--source-weights", "0", "0.5", "--out", str(tmp_path / "s"), "--quiet", "--json", "--plot"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 4
    init = {(r["layers"], r["source_weight"]): r["energy_init"] for r in rows}
    assert init[(3, 0.0)] < init[(1, 0.0)]          # deeper: smoother at initialisation
    assert init[(3, 0.5)] > init[(3, 0.0)]          # the source term counters it
    assert (tmp_path / "s" / "sweep.png").exists()


@pytest.mark.parametrize("args, match", [
    (["--model", "gcn", "--depth", "continuous"], "no continuous-depth form"),
    (["--dataset", "cora", "--split", "fixed"], "offers the splits"),
    (["--preset", "paper", "--dataset", "texas"], "no paper preset"),
    (["--tau", "2"], "stability region"),
    (["--first-split", "-1"], "first_split must be an int >= 0"),
    (["--split", "public", "--first-split", "1"], "single split"),
])
def test_train_command_errors(tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet", *args])
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err


def test_split_out_of_range_fails_before_training_or_deleting(tmp_path, capsys):
    """--splits 2 of the single public split: the error comes before split 0 is trained and
    before --overwrite deletes what --out already holds."""
    out = tmp_path / "x"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "results.json").write_text("earlier results")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "gcn", "--epochs", "1", "--split", "public", "--splits", "2",
              "--out", str(out), "--overwrite", "--quiet"])
    assert exit_info.value.code == 2 and "single split" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "results.json"]


@pytest.mark.slow
def test_killed_process_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL in the middle of a run, then --resume: the same result as a run never killed."""
    exe = [sys.executable, "-m", "diffusion_pde.cli", "train", "--model", "gcn", "--epochs", "150",
           "--checkpoint-every", "5", "--quiet", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = json.loads(subprocess.run(exe + ["--out", str(tmp_path / "a")], capture_output=True, text=True,
                                          check=True, env=env).stdout)
    proc = subprocess.Popen(exe + ["--out", str(tmp_path / "b")], stdout=subprocess.DEVNULL, env=env)
    last = tmp_path / "b" / "split0" / "run0" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and load_checkpoint(last)["epoch"] >= 20):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["epoch"]
    assert 20 <= killed_at < 150
    resumed = json.loads(subprocess.run(exe + ["--out", str(tmp_path / "b"), "--resume"], capture_output=True, text=True,
                                        check=True, env=env).stdout)
    assert resumed["results"][0]["test_acc"] == reference["results"][0]["test_acc"]
    assert resumed["results"][0]["best_epoch"] == reference["results"][0]["best_epoch"]


def test_training_selects_and_reports_by_roc_auc():
    data, split = two_community_graph(seed=2)
    result = train_run(small_model(data), data, split, TrainConfig(epochs=25, lr=0.02, metric="roc_auc"),
                       seed=0, progress=False)
    history = result.history
    assert result.metric == "roc_auc"
    assert result.val_score == max(row["val_roc_auc"] for row in history)
    chosen = history[result.best_epoch - 1]
    assert (result.test_score, result.test_acc) == (chosen["test_roc_auc"], chosen["test_acc"])
    # the epoch is the first with the best validation ROC-AUC, not the best validation accuracy
    assert result.best_epoch == 1 + max(range(len(history)), key=lambda i: (history[i]["val_roc_auc"], -i))


def test_roc_auc_on_a_multiclass_task_is_refused():
    data, split = two_community_graph(seed=3)
    data.y = torch.arange(data.num_nodes) % 3
    with pytest.raises(ValueError, match="metric='roc_auc' needs a two-class task.*3 classes"):
        train_run(small_model(data), data, split, TrainConfig(epochs=2, metric="roc_auc"), seed=0, progress=False)


def test_metric_defaults_and_validation():
    assert resolve("tolokers", "gcn")[1].metric == "roc_auc"
    assert resolve("minesweeper", "difformer_s")[1].metric == "roc_auc"
    assert resolve("tolokers", "gcn", metric="accuracy")[1].metric == "accuracy"
    assert resolve("cora", "gcn")[1].metric == "accuracy"
    with pytest.raises(ValueError, match="metric must be one of accuracy, roc_auc"):
        TrainConfig(metric="f1")


def test_other_solvers_are_scored_in_the_runs_metric():
    data, split = two_community_graph(seed=4)
    model = small_model(data, depth="continuous", method="rk4", n_steps=2, t1=1.0)
    train_run(model, data, split, TrainConfig(epochs=3, metric="roc_auc"), seed=0, progress=False)
    scored = evaluate_with_solvers(model, data, split, ["rk4:2", "euler:1"], "roc_auc")
    direct = evaluate(model, data, split, "roc_auc")               # the trained solver, rk4 with 2 steps
    assert (scored["rk4:2"]["test_score"], scored["rk4:2"]["test_acc"]) == (direct["test_roc_auc"], direct["test_acc"])
    assert 0.0 <= scored["euler:1"]["test_score"] <= 1.0
