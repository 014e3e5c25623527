"""A trained model's whole life on a user's own graph: train (CLI and Python, from CSV files and
from a saved Data), save, load, predict; the loaded model predicts exactly what the trained one did."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from diffusion_pde.cli import main
from diffusion_pde.data import load_graph, random_sizes
from diffusion_pde.models import ModelConfig
from diffusion_pde.training import Predictions, TrainConfig, load_model, predict, run_experiment, write_predictions


def communities(n: int = 40, features: int = 4, seed: int = 0) -> Data:
    """Two communities: features lean towards the class, edges mostly within a class (float64 x)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, features, generator=g, dtype=torch.float64) + y[:, None]
    src, dst = torch.randint(0, n, (2, 3 * n), generator=g)
    keep = (y[src] == y[dst]) | (torch.rand(3 * n, generator=g) < 0.1)
    return Data(x=x, edge_index=torch.stack([src[keep], dst[keep]]), y=y)


def write_csv_folder(data: Data, folder: Path, masks: bool = True) -> Path:
    """``data`` as the documented folder of CSV files (with one stored split when ``masks``)."""
    folder.mkdir()
    np.savetxt(folder / "edge_index.csv", data.edge_index.t().numpy(), fmt="%d", delimiter=",", header="source,target",
               comments="")
    np.savetxt(folder / "x.csv", data.x.numpy(), delimiter=",")
    np.savetxt(folder / "y.csv", data.y.numpy(), fmt="%d", header="label", comments="")
    if masks:
        part = torch.arange(data.num_nodes) % 4  # 0, 1: training; 2: validation; 3: test
        for name, mask in (("train_mask", part < 2), ("val_mask", part == 2), ("test_mask", part == 3)):
            np.savetxt(folder / f"{name}.csv", mask.int().numpy(), fmt="%d")
    return folder


def read_predictions(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open() as handle:
        header = next(csv.reader(handle))
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_csv_graph_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = communities()
    folder = write_csv_folder(data, tmp_path / "graph")
    out = tmp_path / "run"
    payload = run_cli(capsys, "train", "--dataset", str(folder), "--model", "gcn", "--hidden", "8", "--epochs", "5",
                      "--out", str(out), "--quiet")
    assert payload["split"] == "fixed" and payload["split_sizes"] == {"0": [20, 10, 10]}   # the stored masks
    assert payload["source"] == {"kind": "file", "path": str(folder.resolve())}

    summary = run_cli(capsys, "predict", str(out), "--out", str(tmp_path / "p.csv"))   # the run's own graph, found again
    assert summary["num_nodes"] == 40 and summary["num_classes"] == 2
    header, rows = read_predictions(tmp_path / "p.csv")
    assert header == ["node", "predicted", "p_0", "p_1"]
    assert rows[:, 0].tolist() == list(range(40))
    assert np.allclose(rows[:, 2:].sum(axis=1), 1) and (rows[:, 1] == rows[:, 2:].argmax(axis=1)).all()

    # the CSV holds exactly what the model loaded in Python predicts (float32 printed with 9 digits)
    expected = predict(load_model(out), load_graph(folder))
    assert np.array_equal(rows[:, 2:].astype(np.float32), expected.probabilities.numpy())

    # --embeddings adds the hidden states; --overwrite replaces our own predictions file, atomically
    run_cli(capsys, "predict", str(out / "split0" / "run0"), "--dataset", str(folder), "--out", str(tmp_path / "p.csv"),
            "--embeddings", "--overwrite")
    header, rows = read_predictions(tmp_path / "p.csv")
    assert header[4:] == ["h_0", "h_1"] and rows.shape == (40, 6)   # gcn: the decoder reads the last layer's 2 channels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph", "p.csv", "run"]


def test_saved_data_through_python_and_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = communities(seed=1)
    torch.save(data, tmp_path / "graph.pt")
    config, train = ModelConfig(model="difformer_s", num_layers=2, hidden=8), TrainConfig(epochs=5, lr=0.01)

    # Python: any Data (float64 features are converted), random splits sized for a small graph
    trained: list = []
    payload = run_experiment(data, config, train, out=tmp_path / "py", progress=False, log=lambda line: None,
                             on_run=lambda result, model, split: trained.append(model))
    assert random_sizes(data.y, builtin=False) == {"per_class": 10, "num_val": 0.5, "num_test": 0.5}
    assert payload["split"] == "random" and payload["split_sizes"] == {"0": [20, 10, 10]}
    prepared = load_graph(tmp_path / "graph.pt")                   # the same graph, float32 features
    loaded = load_model(tmp_path / "py", prepared)
    assert torch.equal(predict(loaded, prepared).probabilities, predict(trained[0], prepared).probabilities)
    assert torch.equal(predict(loaded, prepared).embeddings, predict(trained[0], prepared).embeddings)
    with pytest.raises(ValueError, match="trained on a Data built in Python"):
        load_model(tmp_path / "py")                                # not saved with the run: pass it again

    # the command line on the saved file: the same split and seed give the same model
    run_cli(capsys, "train", "--dataset", str(tmp_path / "graph.pt"), "--model", "difformer_s", "--layers", "2",
            "--hidden", "8", "--qk-norm", "row", "--source-weight", "0", "--epochs", "5", "--lr", "0.01",
            "--out", str(tmp_path / "cli"), "--quiet")   # the ModelConfig fields above, not the CLI's model defaults
    run_cli(capsys, "predict", str(tmp_path / "cli"), "--out", str(tmp_path / "p.csv"))
    _, rows = read_predictions(tmp_path / "p.csv")
    assert np.array_equal(rows[:, 2:].astype(np.float32), predict(loaded, prepared).probabilities.numpy())


def test_predicting_on_another_graph_with_the_same_features(tmp_path: Path) -> None:
    data = communities(seed=2)
    run_experiment(data, ModelConfig(model="gcn", hidden=8), TrainConfig(epochs=3), out=tmp_path / "run",
                   progress=False, log=lambda line: None)
    other = communities(n=24, seed=3)
    other.y = None                                                 # labels are not needed to predict
    predictions = predict(load_model(tmp_path / "run", other), other)
    assert predictions.probabilities.shape == (24, 2) and predictions.predicted.shape == (24,)
    last = predict(load_model(tmp_path / "run" / "split0" / "run0" / "last.pt", other), other)  # the final epoch's weights
    assert last.probabilities.shape == (24, 2)
    with pytest.raises(ValueError, match="data has 5 features per node but the model was trained on 4"):
        load_model(tmp_path / "run", communities(features=5))


def test_loading_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    data = communities(seed=4)
    run_experiment(data, ModelConfig(model="mlp", num_layers=0, hidden=8), TrainConfig(epochs=2), out=tmp_path / "r",
                   progress=False, log=lambda line: None)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_model(tmp_path / "r", data)
    assert torch.equal(torch.rand(3), expected)


def test_predictions_file_format(tmp_path: Path) -> None:
    predictions = Predictions(torch.tensor([[0.25, 0.75], [0.9, 0.1]]), torch.tensor([[1.0], [-2.5]]))
    write_predictions(predictions, tmp_path / "p.csv", embeddings=True)
    assert (tmp_path / "p.csv").read_text() == "node,predicted,p_0,p_1,h_0\n0,1,0.25,0.75,1\n1,0,0.899999976,0.100000001,-2.5\n"


def test_a_class_without_training_nodes_is_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = communities(seed=5)
    folder = write_csv_folder(data, tmp_path / "graph")
    np.savetxt(folder / "train_mask.csv", (torch.arange(40) % 4 == 0).int().numpy(), fmt="%d")  # class 0 only
    assert main(["train", "--dataset", str(folder), "--model", "gcn", "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--quiet", "--json"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning == ["diffusion-pde train: warning: the fixed split 0: class(es) [1] have no training node, so the "
                       "model never sees them labelled"]
