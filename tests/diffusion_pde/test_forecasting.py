"""Spatial-temporal forecasting: the JSON loader, windows and the temporal split against
brute-force restatements, MSE/MAE against scikit-learn, the last-value floor, snapshots through
the models (stacked, and one graph per step without stale operators), exact resume, and the
command line end to end on small datasets the tests write.

The loader tests of the real datasets need ``<repo>/../shared/data/SpatioTemporal`` (present in
this repository's CI) and skip cleanly without it."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error
from torch_geometric.data import Data

from diffusion_pde.cli import main
from diffusion_pde.data.temporal import (TEMPORAL_DATASETS, TemporalSignal, check_signal, load_temporal, make_windows,
                                         read_temporal_json, temporal_split)
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.training import TrainConfig, resolve
from diffusion_pde.training.forecasting import (FORECAST_DEFAULTS, SnapshotBatching, forecast_run, last_value_scores,
                                                predict_windows, prepare_forecasting, regression_scores, run_forecasting)

SPATIO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "SpatioTemporal"


def shared_root() -> Path:
    if not SPATIO.is_dir():
        pytest.skip(f"{SPATIO} is not present (only CI and developers have ../shared)")
    return SPATIO.parent


# ---- small datasets written by the tests ---------------------------------------------------------

def ring(n: int) -> list[list[int]]:
    return [[i, (i + 1) % n] for i in range(n)] + [[(i + 1) % n, i] for i in range(n)]


def diffusing_series(n: int, steps: int, seed: int = 0) -> np.ndarray:
    """A signal whose next value is a fixed mix of the nodes' last values plus noise (learnable)."""
    rng = np.random.default_rng(seed)
    mix = np.zeros((n, n))
    for i, j in ring(n):
        mix[i, j] = 0.4
    values = [rng.normal(size=n)]
    for _ in range(steps - 1):
        values.append(mix @ values[-1] + 0.3 * rng.normal(size=n))
    return np.array(values)


def write_static(root: Path, n: int = 6, steps: int = 40, dataset: str = "chickenpox") -> np.ndarray:
    """``root/SpatioTemporal/<file>`` in the layout of Chickenpox (edges, FX, node_ids) or PedalMe
    (edges, weights, X); returns the values."""
    values = diffusing_series(n, steps)
    folder = root / "SpatioTemporal"
    folder.mkdir(parents=True, exist_ok=True)
    content = {"edges": ring(n), "FX": values.tolist(), "node_ids": {f"n{i}": i for i in range(n)}} \
        if dataset == "chickenpox" else {"edges": ring(n), "weights": [0.5] * (2 * n), "X": values.tolist()}
    (folder / TEMPORAL_DATASETS[dataset].file).write_text(json.dumps(content))
    return values


def dynamic_graphs(n: int, steps: int) -> tuple[list[list[list[int]]], list[list[float]]]:
    """Per step t: the ring plus the chord t -> t + 2 (mod n), weights 1 + t / 10 on the chord."""
    edges, weights = [], []
    for t in range(steps):
        chord = [t % n, (t + 2) % n]
        edges.append(ring(n) + [chord])
        weights.append([1.0] * (2 * n) + [1.0 + t / 10])
    return edges, weights


def write_dynamic(root: Path, n: int = 6, steps: int = 30) -> np.ndarray:
    """``root/SpatioTemporal/england_covid.json`` in the England COVID layout; returns the raw y."""
    counts = np.round(np.abs(diffusing_series(n, steps, seed=1)) * 10)
    edges, weights = dynamic_graphs(n, steps)
    folder = root / "SpatioTemporal"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "england_covid.json").write_text(json.dumps({
        "time_periods": steps, "y": counts.tolist(),
        "edge_mapping": {"edge_index": {str(t): e for t, e in enumerate(edges)},
                         "edge_weight": {str(t): w for t, w in enumerate(weights)}}}))
    return counts


def dynamic_signal(n: int = 5, steps: int = 14) -> TemporalSignal:
    values = torch.tensor(diffusing_series(n, steps, seed=2), dtype=torch.float32)
    edges, weights = dynamic_graphs(n, steps)
    graphs = [Data(edge_index=torch.tensor(e).t(), edge_weight=torch.tensor(w), num_nodes=n) for e, w in zip(edges, weights)]
    return TemporalSignal("toy", values, graphs)


# ---- the real datasets ---------------------------------------------------------------------------

# name: (T, N, graphs, edges of the first graph, weighted, windows, train / val / test windows)
EXPECTED = {
    "chickenpox": (521, 20, 1, 102, False, 517, (103, 103, 311)),
    "england-covid": (61, 129, 61, 2158, True, 53, (10, 10, 33)),
    "pedalme": (35, 15, 1, 225, True, 31, (6, 6, 19)),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_dataset_shapes_and_split(name: str) -> None:
    steps, n, num_graphs, edges, weighted, num_windows, sizes = EXPECTED[name]
    signal = load_temporal(name, root=shared_root())
    assert signal.values.shape == (steps, n) and signal.values.dtype == torch.float32
    assert len(signal.graphs) == num_graphs and signal.graphs[0].edge_index.shape == (2, edges)
    assert (signal.graphs[0].edge_weight is not None) == weighted
    windows = make_windows(signal, TEMPORAL_DATASETS[name].lags)
    assert windows.x.shape == (num_windows, n, TEMPORAL_DATASETS[name].lags)
    assert len(windows.graphs) == (num_windows if num_graphs > 1 else 1)
    assert temporal_split(len(windows)).sizes() == sizes


def test_real_england_covid_is_standardised_per_region_and_graph_per_day() -> None:
    root = shared_root()
    raw = json.loads((root / "SpatioTemporal" / "england_covid.json").read_text())
    y = np.array(raw["y"], dtype=np.float64)
    signal = load_temporal("england-covid", root=root)
    expected = (y - y.mean(axis=0)) / (y.std(axis=0) + 1e-10)
    np.testing.assert_allclose(signal.values.numpy(), expected, rtol=1e-5, atol=1e-5)
    for t in (0, 30, 60):
        assert signal.graphs[t].edge_index.t().tolist() == raw["edge_mapping"]["edge_index"][str(t)]


def test_real_chickenpox_values_are_the_stored_ones() -> None:
    root = shared_root()
    raw = json.loads((root / "SpatioTemporal" / "chickenpox.json").read_text())
    signal = load_temporal("chickenpox", root=root)
    np.testing.assert_allclose(signal.values.numpy(), np.array(raw["FX"]), rtol=1e-6, atol=1e-6)
    assert signal.node_names[:2] == ["BACS", "BARANYA"]


# ---- windows, split, scores ---------------------------------------------------------------------

@pytest.mark.parametrize("lags", [1, 3, 8])
@pytest.mark.parametrize("dynamic", [False, True])
def test_windows_against_brute_force(lags: int, dynamic: bool) -> None:
    signal = dynamic_signal()
    if not dynamic:
        signal = TemporalSignal("toy", signal.values, signal.graphs[:1])
    windows = make_windows(signal, lags)
    values = signal.values.tolist()
    steps, n = len(values), len(values[0])
    assert len(windows) == steps - lags
    for w in range(steps - lags):
        for i in range(n):
            assert windows.x[w, i].tolist() == [values[w + k][i] for k in range(lags)]
            assert windows.y[w, i].item() == values[w + lags][i]
        assert int(windows.times[w]) == w + lags
        expected_graph = signal.graphs[w + lags - 1] if dynamic else signal.graphs[0]
        assert windows.graph(w) is expected_graph


def brute_force_split(num_windows: int, train: float, val: float) -> tuple[list[int], list[int], list[int]]:
    """PyTorch Geometric Temporal's temporal_signal_split (the first int(ratio * count) snapshots)
    applied twice, as the DIFFormer authors split, restated on a list."""
    snapshots = list(range(num_windows))
    cut = int(train * len(snapshots))
    train_part, rest = snapshots[:cut], snapshots[cut:]
    cut = int(val / (1 - train) * len(rest))
    return train_part, rest[:cut], rest[cut:]


@pytest.mark.parametrize("num_windows", [10, 31, 53, 517, 1000])
@pytest.mark.parametrize("ratios", [(0.2, 0.2), (0.5, 0.25), (0.1, 0.3)])
def test_temporal_split_against_brute_force(num_windows: int, ratios: tuple[float, float]) -> None:
    split = temporal_split(num_windows, *ratios)
    train, val, test = brute_force_split(num_windows, *ratios)
    assert (list(split.train), list(split.val), list(split.test)) == (train, val, test)
    assert list(split.train) + list(split.val) + list(split.test) == list(range(num_windows))


def test_temporal_split_refuses_empty_parts() -> None:
    with pytest.raises(ValueError, match=r"4 windows are too few to split"):
        temporal_split(4)
    with pytest.raises(ValueError, match=r"leaves no test windows"):
        temporal_split(100, 0.5, 0.5)


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 6, 1)])
def test_scores_match_scikit_learn(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(len(shape))
    prediction, target = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    scores = regression_scores(prediction, target)
    flat = (target.reshape(-1).numpy(), prediction.reshape(-1).numpy())
    assert scores["mse"] == pytest.approx(mean_squared_error(*flat), rel=1e-6)
    assert scores["mae"] == pytest.approx(mean_absolute_error(*flat), rel=1e-6)


def test_last_value_floor_against_brute_force() -> None:
    signal = dynamic_signal(steps=30)
    lags = 3
    windows = make_windows(signal, lags)
    split = temporal_split(len(windows))
    floor = last_value_scores(windows, split)
    values = signal.values.numpy()
    for part in ("val", "test"):
        times = [w + lags for w in getattr(split, part)]  # the targets' time steps
        truth = np.stack([values[t] for t in times]).ravel()
        naive = np.stack([values[t - 1] for t in times]).ravel()
        assert floor[f"{part}_mse"] == pytest.approx(mean_squared_error(truth, naive), rel=1e-6)
        assert floor[f"{part}_mae"] == pytest.approx(mean_absolute_error(truth, naive), rel=1e-6)


def test_snapshot_batching_covers_every_window_once_and_repeats_per_epoch() -> None:
    batching = SnapshotBatching(4)
    groups = batching.groups(range(3, 14), seed=1, epoch=2)
    assert sorted(w for g in groups for w in g) == list(range(3, 14)) and max(map(len, groups)) == 4
    assert groups == batching.groups(range(3, 14), seed=1, epoch=2)
    assert groups != batching.groups(range(3, 14), seed=1, epoch=3)
    assert SnapshotBatching().groups(range(5), seed=0, epoch=1) == [list(range(5))]


# ---- snapshots through the models ----------------------------------------------------------------

MODEL_CASES = [
    {"model": "difformer_s"}, {"model": "difformer_s", "use_graph": False}, {"model": "difformer_a"},
    {"model": "difformer_a", "use_graph": False}, {"model": "gcn"}, {"model": "mlp"},
    {"model": "difformer_s", "depth": "continuous", "n_steps": 2},
]


def config_for(case: dict) -> ModelConfig:
    settings = {k: v for k, v in FORECAST_DEFAULTS[case["model"]].items() if k in ModelConfig.__dataclass_fields__}
    return ModelConfig(**{**settings, "hidden": 8, "dropout": 0.0, **case})


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_stacked_windows_equal_one_window_at_a_time(case: dict) -> None:
    signal = dynamic_signal()
    windows = make_windows(TemporalSignal("toy", signal.values, signal.graphs[:1]), 3)
    torch.manual_seed(0)
    model = build_model(config_for(case), Data(x=windows.x[0], edge_index=windows.graphs[0].edge_index,
                                                num_nodes=5), num_classes=1).eval()
    stacked = predict_windows(model, windows)
    with torch.no_grad():
        one_by_one = torch.stack([model(windows.x[w]).squeeze(-1) for w in range(len(windows))])
    torch.testing.assert_close(stacked, one_by_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if c.get("use_graph", True) and c["model"] != "mlp"],
                         ids=lambda c: "-".join(map(str, c.values())))
def test_a_graph_per_step_is_used_and_no_operator_goes_stale(case: dict) -> None:
    """Window w's forecast equals that of the same weights built on w's graph alone (a fresh,
    normalised-once model), after other windows ran, in training and in evaluation."""
    signal = dynamic_signal()
    windows = make_windows(signal, 3)

    def built_on(graph: Data) -> torch.nn.Module:
        data = Data(x=windows.x[0], edge_index=graph.edge_index, edge_weight=graph.edge_weight, num_nodes=5)
        return build_model(config_for(case), data, num_classes=1)

    torch.manual_seed(0)
    model = built_on(windows.graph(0))
    config = TrainConfig(epochs=2, lr=0.01, weight_decay=0.0, checkpoint_every=1)
    forecast_run(model, windows, temporal_split(len(windows), 0.3, 0.3), config, seed=0, progress=False)
    predicted = predict_windows(model, windows)
    moved = 0
    for w in range(len(windows)):
        fresh = built_on(windows.graph(w))
        fresh.load_state_dict(model.state_dict())
        with torch.no_grad():
            expected = fresh.eval()(windows.x[w]).squeeze(-1)
            on_first = built_on(windows.graph(0))
            on_first.load_state_dict(model.state_dict())
            moved += not torch.allclose(on_first.eval()(windows.x[w]).squeeze(-1), expected, atol=1e-6)
        torch.testing.assert_close(predicted[w], expected, rtol=1e-5, atol=1e-6)
    assert moved > 0, "the graphs of the steps do not change the forecast: the test could not fail"


def test_training_beats_the_last_value_on_a_learnable_signal() -> None:
    values = torch.tensor(diffusing_series(8, 120, seed=3), dtype=torch.float32)
    signal = TemporalSignal("toy", values, [Data(edge_index=torch.tensor(ring(8)).t(), num_nodes=8)])
    model_config, train_config = resolve("toy", "gcn", None, **{**FORECAST_DEFAULTS["gcn"], "epochs": 60})
    payload = run_forecasting(signal, model_config, train_config, lags=2, progress=False, log=lambda line: None)
    summary = payload["summary"]
    assert summary["beats_last_value"] and summary["test_mean"] < 0.5 * summary["last_value"]["test_mse"]


def test_resume_after_an_interruption_is_exact(tmp_path: Path) -> None:
    signal = dynamic_signal(steps=14)
    windows = make_windows(signal, 3)
    split = temporal_split(len(windows), 0.3, 0.3)
    config = TrainConfig(epochs=4, lr=0.01, weight_decay=0.0, checkpoint_every=1, batch_size=2)
    case = {"model": "difformer_s", "dropout": 0.3}

    def fresh() -> torch.nn.Module:
        torch.manual_seed(5)
        graph = windows.graph(0)
        return build_model(config_for(case).replace(dropout=0.3), Data(x=windows.x[0], edge_index=graph.edge_index,
                                                                       num_nodes=5), num_classes=1)

    whole = forecast_run(fresh(), windows, split, config, seed=5, progress=False)

    class Stop(Exception):
        pass

    def stop_at_2(epoch: int, metrics: dict) -> None:
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        forecast_run(fresh(), windows, split, config, seed=5, run_dir=tmp_path, progress=False, on_epoch=stop_at_2)
    torch.manual_seed(123)  # another random state: resuming restores the run's own
    resumed = forecast_run(fresh(), windows, split, config, seed=5, run_dir=tmp_path, resume=True, progress=False)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history] == strip
    assert (resumed.best_epoch, resumed.test_mse) == (whole.best_epoch, whole.test_mse)


# ---- files and errors ----------------------------------------------------------------------------

def test_a_missing_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"lacks .*SpatioTemporal/pedalme_london\.json.*omit --root to download"):
        load_temporal("pedalme", root=tmp_path)


@pytest.mark.parametrize("content, match", [
    ("{\"edges\": [[0, 1]], \"FX\": [[1.0, 2", r"is not valid JSON"),
    (json.dumps({"edges": [[0, 1]]}), r"has no 'FX' entry"),
    (json.dumps({"edges": [[0, 5]], "FX": [[1.0, 2.0]] * 5}), r"'edges' holds node indices outside 0\.\.1"),
    (json.dumps({"edges": [[0, 1]], "FX": [[1.0, 2.0], [1.0]]}), r"'FX' is not a rectangular array"),
    (json.dumps({"edges": [[0, 1]], "FX": [[1.0, float("nan")]]}), r"'FX' holds non-finite values"),
])
def test_a_damaged_file_names_the_file_and_the_entry(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "SpatioTemporal").mkdir()
    (tmp_path / "SpatioTemporal" / "chickenpox.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        load_temporal("chickenpox", root=tmp_path)


def test_a_signal_made_in_python_is_checked() -> None:
    with pytest.raises(ValueError, match=r"one graph \(static\) or one per time step \(4\), got 2"):
        check_signal(TemporalSignal("toy", torch.zeros(4, 3), [Data(edge_index=torch.zeros(2, 0, dtype=torch.long))] * 2))
    with pytest.raises(ValueError, match=r"lags=4 leaves no window"):
        make_windows(TemporalSignal("toy", torch.zeros(4, 3), [Data(edge_index=torch.zeros(2, 0, dtype=torch.long))]), 4)


def test_the_dynamic_layout_is_read_per_step(tmp_path: Path) -> None:
    counts = write_dynamic(tmp_path, n=6, steps=30)
    values, graphs, _ = read_temporal_json(tmp_path / "SpatioTemporal" / "england_covid.json",
                                           TEMPORAL_DATASETS["england-covid"])
    assert len(graphs) == 30 and graphs[7].edge_index[:, -1].tolist() == [1, 3]
    assert graphs[7].edge_weight[-1].item() == pytest.approx(1.7)
    np.testing.assert_allclose(values.numpy(), (counts - counts.mean(0)) / (counts.std(0) + 1e-10), rtol=1e-5, atol=1e-5)


# ---- the command line ----------------------------------------------------------------------------

def train(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", *args, "--json", "--quiet"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("dataset, model, extra", [
    ("chickenpox", "difformer_s", ["--plot"]),
    ("england-covid", "gcn", ["--lags", "3"]),
    ("england-covid", "difformer_a", ["--no-graph", "--batch-size", "2"]),
    ("chickenpox", "difformer_s", ["--depth", "continuous", "--n-steps", "2"]),
])
def test_cli_trains_forecasting_end_to_end(tmp_path: Path, dataset: str, model: str, extra: list[str]) -> None:
    write_static(tmp_path) if dataset == "chickenpox" else write_dynamic(tmp_path)
    out = tmp_path / "run"
    payload = train("--dataset", dataset, "--root", str(tmp_path), "--model", model, "--epochs", "3", "--runs", "2",
                    "--hidden", "8", "--out", str(out), *extra)
    summary, results = payload["summary"], payload["results"]
    assert payload["task"] == "forecasting" and payload["split"] == "temporal" and len(results) == 2
    assert summary["metric"] == "mse" and summary["test_mean"] == pytest.approx(np.mean([r["test_mse"] for r in results]))
    assert payload["graph"] == ("static" if dataset == "chickenpox" else "per time step")
    signal = load_temporal(dataset, root=tmp_path)
    windows = make_windows(signal, payload["lags"])
    split = temporal_split(len(windows))
    assert payload["split_sizes"]["0"] == list(split.sizes())
    assert summary["last_value"] == pytest.approx(last_value_scores(windows, split))
    for r in range(2):
        run_dir = out / "split0" / f"run{r}"
        assert {p.name for p in run_dir.iterdir()} >= {"history.csv", "last.pt", "best.pt", "result.json"}
        assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + results[r]["epochs_run"]
    assert json.loads((out / "results.json").read_text())["summary"] == summary
    if "--plot" in extra:
        assert (out / "curves.png").stat().st_size > 0 and (out / "forecast.png").stat().st_size > 0
    again = train("--dataset", dataset, "--root", str(tmp_path), "--model", model, "--epochs", "3", "--runs", "2",
                  "--hidden", "8", "--out", str(out), "--resume", *extra)
    assert again["summary"]["test_mean"] == summary["test_mean"]


def test_cli_forecasting_defaults_lose_to_flags(tmp_path: Path) -> None:
    write_static(tmp_path, dataset="pedalme")
    payload = train("--dataset", "pedalme", "--root", str(tmp_path), "--model", "mlp", "--epochs", "2", "--lr", "0.05",
                    "--out", str(tmp_path / "run"))
    assert payload["train"]["lr"] == 0.05 and payload["train"]["patience"] == FORECAST_DEFAULTS["mlp"]["patience"]
    assert payload["model"]["hidden"] == FORECAST_DEFAULTS["mlp"]["hidden"] and payload["lags"] == 4
    assert math.isfinite(payload["summary"]["test_mean"])


@pytest.mark.parametrize("args, match", [
    (["--dataset", "chickenpox", "--split", "random"], r"--split: forecasting on chickenpox splits the windows in time"),
    (["--dataset", "pedalme", "--metric", "accuracy", "--splits", "3"], r"--splits, --metric: .*drop them"),
    (["--dataset", "cora", "--lags", "4"], r"--lags sets the inputs of forecasting .*drop --lags"),
])
def test_cli_refuses_what_forecasting_would_ignore(args: list[str], match: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2 and re.search(match, capsys.readouterr().err)


def test_prepare_touches_no_file_and_checks_the_lags(tmp_path: Path) -> None:
    write_static(tmp_path, steps=12)
    model_config, train_config = resolve("chickenpox", "mlp", None, **FORECAST_DEFAULTS["mlp"])
    with pytest.raises(ValueError, match=r"4 windows are too few to split"):
        prepare_forecasting("chickenpox", model_config, train_config, root=tmp_path, lags=8, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()



def test_resume_with_other_settings_or_data_says_what_changed(tmp_path: Path) -> None:
    write_static(tmp_path, steps=30)
    model_config, train_config = resolve("chickenpox", "mlp", None, **{**FORECAST_DEFAULTS["mlp"], "epochs": 1})
    run_forecasting("chickenpox", model_config, train_config, root=tmp_path, out=tmp_path / "out", progress=False,
                    log=lambda line: None)
    with pytest.raises(ValueError, match=r"last\.pt was written with other settings or data \(lr 0\.01 then, 0\.02 now\)"):
        prepare_forecasting("chickenpox", model_config, dataclasses.replace(train_config, lr=0.02), root=tmp_path,
                            out=tmp_path / "out", resume=True)
    write_static(tmp_path, steps=31)
    with pytest.raises(ValueError, match=r"other settings or data \(the forecasting inputs \(lag windows\) changed; the forecasting targets changed"):
        prepare_forecasting("chickenpox", model_config, train_config, root=tmp_path, out=tmp_path / "out", resume=True)


def test_predict_names_the_task_of_a_forecasting_run(tmp_path: Path, capsys) -> None:
    write_static(tmp_path)
    out = tmp_path / "run"
    train("--dataset", "chickenpox", "--root", str(tmp_path), "--model", "mlp", "--epochs", "1", "--hidden", "8",
          "--out", str(out))
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(out), "--out", str(tmp_path / "p.csv")])
    assert stop.value.code == 2
    assert "is a forecasting run; predict and load_model read node-classification runs" in capsys.readouterr().err
