"""torch.distributed: 2 local processes (torchrun, gloo) train as one process that accumulates the
mean gradient of the same partitions, and a killed 2-process run resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from diffusion_pde.models import build_model
from diffusion_pde.training import load_checkpoint, prepare_experiment, resolve
from diffusion_pde.training.batching import induced_batch, node_partitions

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")]

WORLD, BATCH, EPOCHS = 2, 150, 30
SETTINGS = {"num_layers": 2, "hidden": 16, "dropout": 0.0, "epochs": EPOCHS, "lr": 0.01}


def _graph(path):
    from torch_geometric.data import Data
    g = torch.Generator().manual_seed(0)
    n = 600
    y = torch.arange(n) % 3
    x = torch.randn(n, 12, generator=g) + y[:, None].float()
    edge_index = torch.randint(0, n, (2, 3000), generator=g)
    torch.save(Data(x=x, edge_index=torch.cat([edge_index, edge_index.flip(0)], dim=1), y=y), path)
    return path


def _torchrun(graph, out, *extra, wait=True):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
               "-m", "diffusion_pde.cli", "train", "--dataset", str(graph), "--model", "difformer_s", "--layers", "2",
               "--hidden", "16", "--dropout", "0", "--epochs", str(EPOCHS), "--lr", "0.01", "--batch-size", str(BATCH),
               "--checkpoint-every", "2", "--quiet", "--json", "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _one_process_reference(graph):
    """One process, the same partitions: each step accumulates the mean gradient of W partitions."""
    model_config, train_config = resolve("data", "difformer_s", **SETTINGS, batch_size=BATCH)
    experiment = prepare_experiment(str(graph), model_config, train_config)
    data, split = experiment.data, experiment.node_splits[0]
    mask = torch.zeros(data.num_nodes, dtype=torch.bool)
    mask[split.train] = True
    torch.manual_seed(0)  # run 0 of split 0 with seed 0
    model = build_model(model_config, data).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    for epoch in range(1, EPOCHS + 1):
        parts = node_partitions(data.num_nodes, BATCH, seed=0, epoch=epoch, world_size=WORLD)
        for step in range(len(parts) // WORLD):
            optimizer.zero_grad()
            for rank in range(WORLD):
                batch = induced_batch(data, parts[rank + WORLD * step], mask)
                logits = model(batch.graph.x, batch.graph)
                (F.cross_entropy(logits[batch.train], batch.graph.y[batch.train]) / WORLD).backward()
            optimizer.step()
    return model.state_dict()


def test_two_processes_equal_one_accumulating_process_and_a_killed_run_resumes(tmp_path):
    graph = _graph(tmp_path / "g.pt")
    whole = _torchrun(graph, tmp_path / "whole")
    assert whole["world_size"] == WORLD
    trained = load_checkpoint(tmp_path / "whole" / "split0" / "run0" / "last.pt")
    assert trained["epoch"] == EPOCHS
    reference = _one_process_reference(graph)
    for name, value in reference.items():
        torch.testing.assert_close(trained["model"][name], value, rtol=0, atol=1e-6, msg=name)

    proc = _torchrun(graph, tmp_path / "killed", wait=False)
    last = tmp_path / "killed" / "split0" / "run0" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not last.exists():  # the first checkpoint: epoch 2
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed: make the epochs longer"
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
    proc.wait()
    killed_at = load_checkpoint(last)["epoch"]
    assert 2 <= killed_at < EPOCHS
    resumed = _torchrun(graph, tmp_path / "killed", "--resume")
    for key in ("best_epoch", "test_acc", "val_acc"):
        assert resumed["results"][0][key] == whole["results"][0][key]
    final = load_checkpoint(last)
    for name, value in trained["model"].items():
        assert torch.equal(final["model"][name], value), name


def test_resume_with_another_world_size_is_refused(tmp_path):
    from diffusion_pde.training.loop import fingerprint, fingerprint_changes
    model_config, train_config = resolve("data", "gcn", batch_size=10)
    from diffusion_pde.data import Split
    from torch_geometric.data import Data
    data = Data(x=torch.randn(5, 2), edge_index=torch.tensor([[0, 1], [1, 0]]), y=torch.tensor([0, 1, 0, 1, 0]))
    split = Split("random", 0, torch.tensor([0, 1]), torch.tensor([2]), torch.tensor([3, 4]))
    one, two = (fingerprint(model_config, train_config, split, 0, data, w) for w in (1, 2))
    assert fingerprint_changes(two, one) == "processes (world size) 2 then, 1 now"


@pytest.mark.parametrize("command", [["sweep", "--depths", "2"], ["predict", "run", "--out", "p.csv"], ["solve"], ["check"]])
def test_only_train_runs_under_torchrun(command, monkeypatch, capsys):
    """Under torchrun every other command would run W independent copies racing on their output:
    each is refused up front with one line (printed by rank 0 only)."""
    from diffusion_pde.cli import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 2
    assert "only `train` runs in several processes" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 2 and capsys.readouterr().err == ""
