r"""Spatial-temporal forecasting: node regression over the snapshots of a temporal signal.

The pieces, kept apart (docs: DESIGN §7):

* **data source**: a :class:`~diffusion_pde.data.temporal.TemporalSignal` cut into windows
  (:func:`~diffusion_pde.data.temporal.make_windows`): window w gives every node its ``lags``
  previous values as features, x_w ∈ R^{N×lags}, and the next value y_w ∈ R^N as target, on the
  graph of its time (static, or one per step); the windows are split in time 20% / 20% / 60%
  (:func:`~diffusion_pde.data.temporal.temporal_split`).
* **task** (:class:`NodeRegression`): the decoder has one output per node, the loss is the mean
  squared error over the nodes of the windows a step sees, the scores are MSE and MAE
  (:func:`regression_scores`), and the best epoch is the one of lowest validation MSE.
* **batching** (:class:`SnapshotBatching`): which windows one optimisation step sees (all the
  training windows, the DIFFormer authors' setting, or shuffled groups of ``batch_size``), and how
  they go through the model: on a static graph (or for a model without a graph term) stacked as
  one [B, N, lags] batch, each window on its own (the models treat the leading axis as
  independent samples: attention never mixes windows); on a graph per step one window at a time,
  the model's graph operators bound to that window's graph for its forward and backward pass
  (:func:`~diffusion_pde.diffusivities.on_graph`), so no normalised operator of another step
  is ever reused.
* **model**: :func:`~diffusion_pde.models.build_model` with one output channel, any model and
  depth (encoder → diffusion → decoder), as in node classification.

The last-value forecast ŷ_w = x_w[:, −1] (each node's newest observed value) is scored on the
same windows as the floor a model must beat (:func:`last_value_scores`).

Outputs (``out``) are laid out as node classification's: ``results.json``, ``results.csv``,
``split0/run{r}/`` with ``history.csv``, ``last.pt``, ``best.pt`` and ``result.json``, with
atomic writes, exact ``resume`` and ``overwrite`` deleting only our files
(:mod:`~diffusion_pde.training.outputs`). Run r initialises from torch seed ``seed + r``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from tqdm.auto import tqdm

from ..data.temporal import (TEMPORAL_DATASETS, TemporalSignal, TemporalSplit, Windows, check_signal, load_temporal,
                             make_windows, temporal_split)
from ..diffusivities import GraphDiffusivity, on_graph
from ..models import ModelConfig, NodeClassifier, build_model
from .checkpoint import write_json_atomic, write_text_atomic
from .config import TrainConfig
from .experiment import _csv, _mean_std, check_one_split_args, run_seeds
from .loop import (NOT_FINGERPRINTED, NonFiniteError, _digest, _rng_state, _set_rng_state, adam, read_last,
                   stored_result, write_checkpoints)

# Settings of the forecasting runs that differ from node classification's model defaults, for
# every model (explicit settings win): the DIFFormer authors' spatial-temporal setup (2 layers,
# step 0.5, dropout 0.2, lr 0.01, 200 epochs, early stopping after 20), hidden width 32 chosen
# on validation MSE (docs/results.md, "Spatial-temporal forecasting").
_FORECAST = {"hidden": 32, "dropout": 0.2, "lr": 0.01, "weight_decay": 5e-3, "epochs": 200, "patience": 20}
FORECAST_DEFAULTS: dict[str, dict[str, Any]] = {
    "difformer_s": {**_FORECAST, "num_layers": 2, "tau": 0.5},
    "difformer_a": {**_FORECAST, "num_layers": 2, "tau": 0.5},
    "transformer": {**_FORECAST, "num_layers": 2, "tau": 0.5},
    "gcn": {**_FORECAST, "num_layers": 2},
    "gat": {**_FORECAST, "num_layers": 2},
    "sgc": {"lr": 0.01, "weight_decay": 5e-3, "epochs": 200, "patience": 20},
    "appnp": {**_FORECAST},
    "mlp": {**_FORECAST},
}

HISTORY_FIELDS = ("epoch", "loss", "train_mse", "val_mse", "test_mse", "train_mae", "val_mae", "test_mae", "seconds")
SUMMARY_FIELDS = ("split", "run", "seed", "best_epoch", "val_mse", "val_mae", "test_mse", "test_mae", "train_mse",
                  "epochs_run", "stopped_early", "seconds_per_epoch")


def regression_scores(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """MSE = mean (ŷ − y)² and MAE = mean |ŷ − y| over all entries (windows × nodes), in float64."""
    error = prediction.double() - target.double()
    return {"mse": float(error.square().mean()), "mae": float(error.abs().mean())}


def last_value_scores(windows: Windows, split: TemporalSplit) -> dict[str, float]:
    """The naive forecast ŷ_w = x_w[:, −1] (every node's newest observed value) scored on the
    validation and test windows: ``val_mse``, ``val_mae``, ``test_mse``, ``test_mae``."""
    out = {}
    for part in ("val", "test"):
        index = list(getattr(split, part))
        out.update({f"{part}_{k}": v for k, v in regression_scores(windows.x[index, :, -1], windows.y[index]).items()})
    return out


@dataclass(frozen=True)
class NodeRegression:
    """The forecasting task: one output per node, trained on the mean squared error, scored by MSE
    and MAE, the best epoch the one of lowest validation MSE (the first such epoch on ties)."""

    out_channels: int = 1
    metric: str = "mse"

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(prediction, target)

    def scores(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return regression_scores(prediction, target)

    def improves(self, score: float, best: float | None) -> bool:
        return best is None or score < best


@dataclass(frozen=True)
class SnapshotBatching:
    """Which training windows one optimisation step sees: all of them (``batch_size`` None, one
    step per epoch on the mean loss, as the DIFFormer authors train) or groups of at most
    ``batch_size`` windows, shuffled every epoch by a generator seeded with (seed, epoch) alone,
    so that a resumed run draws the groups it would have drawn."""

    batch_size: int | None = None

    def groups(self, windows: Sequence[int], *, seed: int, epoch: int) -> list[list[int]]:
        windows = list(windows)
        if self.batch_size is None:
            return [windows]
        generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % 2**63)
        order = [windows[i] for i in torch.randperm(len(windows), generator=generator).tolist()]
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]


def uses_graph(model: NodeClassifier) -> bool:
    """Whether ``model`` holds a graph operator (then windows on different graphs cannot share a
    forward pass)."""
    return any(isinstance(module, GraphDiffusivity) for module in model.modules())


def _chunks(windows: Windows, index: Sequence[int], model: NodeClassifier) -> Iterator[tuple[list[int], Data | None]]:
    """The windows of ``index`` as they go through ``model`` together: all at once (static graph,
    or a model without a graph term) or one by one with their own graph."""
    if windows.dynamic and uses_graph(model):
        for w in index:
            yield [w], windows.graph(w)
    else:
        yield list(index), None


def predict_windows(model: NodeClassifier, windows: Windows) -> torch.Tensor:
    """The model's forecasts [W, N] for every window, in eval mode without gradients (each on its
    own graph; ``torch.no_grad``, so that operators cached for a training step stay usable)."""
    was_training = model.training
    model.eval()
    out = torch.empty_like(windows.y)
    try:
        with torch.no_grad():
            for index, graph in _chunks(windows, range(len(windows)), model):
                with on_graph(model, graph):
                    out[index] = model(windows.x[index]).squeeze(-1)
    finally:
        model.train(was_training)
    return out


@dataclass
class ForecastResult:
    """One run: the scores at its best epoch (lowest validation MSE), epochs counted from 1."""

    split: int
    run: int
    seed: int
    best_epoch: int
    val_mse: float
    val_mae: float
    test_mse: float
    test_mae: float
    train_mse: float
    epochs_run: int
    stopped_early: bool
    seconds_per_epoch: float
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("history")
        return out


def _settings(config: TrainConfig) -> dict[str, Any]:
    """The training settings that forecasting reads (``metric`` is the task's, always MSE)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "metric"}


def forecast_fingerprint(model_config: ModelConfig, config: TrainConfig, windows: Windows, split: TemporalSplit,
                         seed: int, name: str) -> dict[str, Any]:
    """What a run's checkpoints must have been written with to be resumed (the layout of
    :func:`~diffusion_pde.training.loop.fingerprint`, so that its messages apply): settings,
    the windows' contents (hashes of inputs, targets and every graph), the split and the seed."""
    train = {k: v for k, v in _settings(config).items() if k not in NOT_FINGERPRINTED}
    edges = torch.cat([g.edge_index for g in windows.graphs], dim=1)
    weights = torch.cat([g.edge_weight if getattr(g, "edge_weight", None) is not None else
                         torch.ones(g.edge_index.shape[1], device=edges.device) for g in windows.graphs])
    return {"model": model_config.settings(), "train": train,
            "data": {"name": name, "num_nodes": int(windows.y.shape[1]), "lags": int(windows.x.shape[2]),
                     "inputs": _digest(windows.x), "targets": _digest(windows.y), "edge_index": _digest(edges),
                     "edge_weight": _digest(weights)},
            "split": {"kind": "temporal", "index": 0, **dict(zip(("train", "val", "test"), split.sizes()))},
            "seed": seed, "world_size": 1}


def forecast_run(model: NodeClassifier, windows: Windows, split: TemporalSplit, config: TrainConfig, *, seed: int,
                 run: int = 0, run_dir: str | Path | None = None, resume: bool = False, progress: bool | None = None,
                 name: str = "data", source: dict[str, Any] | None = None,
                 on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> ForecastResult:
    """Train ``model`` (built with one output channel, seeded, on the windows' device) to forecast
    the training windows; evaluate every window each epoch; keep the epoch of lowest validation
    MSE (its weights are in ``model`` on return).

    Adam with ``config``'s lr and weight decay; ``config.batch_size`` windows per step
    (:class:`SnapshotBatching`; None: all training windows, one step per epoch); at most
    ``config.epochs`` epochs, stopping after ``config.patience`` epochs without a lower
    validation MSE. With ``run_dir``: ``last.pt`` every ``checkpoint_every`` epochs and at the end,
    ``best.pt`` and ``result.json`` as in node classification; ``resume`` continues from
    ``last.pt`` bit for bit (or returns the stored result of a finished run). A NaN or Inf in the
    training loss or the validation MSE raises :class:`~diffusion_pde.training.NonFiniteError`
    before its epoch is checkpointed."""
    task, batching = NodeRegression(), SnapshotBatching(config.batch_size)
    optimizer = adam(model, config)
    expected = forecast_fingerprint(model.config, config, windows, split, seed, name)
    rebuild = {"architecture": {"config": dataclasses.asdict(model.config), "in_channels": int(windows.x.shape[2]),
                                "num_classes": task.out_channels, "task": "forecasting"},
               "dataset": dict(source or {"kind": "python", "name": name})}
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and resume:
        stored = stored_forecast(run_dir, expected, model)
        if stored is not None:
            return stored
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"epoch": 0, "score": None, "state": None, "metrics": None}
    start = 1
    ckpt = read_last(run_dir, expected, windows.x.device) if run_dir is not None and resume else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, best = ckpt["history"], ckpt["best"]
        _set_rng_state(ckpt["rng"][0])
        start = ckpt["epoch"] + 1
    label = f"run {run}"

    def checkpoint(epoch: int) -> None:
        if run_dir is None:
            return
        write_checkpoints(run_dir, epoch, model, optimizer, history, best, [_rng_state()], expected, rebuild)

    def train_epoch(epoch: int) -> float:
        total, count = 0.0, 0
        for group in batching.groups(split.train, seed=seed, epoch=epoch):
            optimizer.zero_grad(set_to_none=True)
            group_loss = 0.0
            for index, graph in _chunks(windows, group, model):
                # One backward per chunk, weighted by its share of the group: the gradient of the
                # group's mean loss, with every window's graph bound through its backward pass.
                with on_graph(model, graph):
                    loss = task.loss(model(windows.x[index]).squeeze(-1), windows.y[index]) * (len(index) / len(group))
                    value = loss.item()
                    if not math.isfinite(value):
                        raise NonFiniteError(f"{label}: the training loss became non-finite ({value}) at epoch {epoch}; "
                                             "training stopped. Too large a learning rate (lr) or step (tau, n_steps) "
                                             "is the usual cause: change it and start over", epoch=epoch, quantity="loss")
                    loss.backward()
                group_loss += value
            optimizer.step()
            total, count = total + group_loss * len(group), count + len(group)
        return total / count

    bar = tqdm(total=config.epochs, initial=start - 1, desc=label, unit="epoch", leave=False, dynamic_ncols=True,
               disable=None if progress is None else not progress)
    since_best = (start - 1) - best["epoch"]
    stopped_early = False
    epoch = start - 1
    try:
        for epoch in range(start, config.epochs + 1):
            if config.patience is not None and since_best >= config.patience:
                stopped_early, epoch = True, epoch - 1
                break
            tick = time.perf_counter()
            model.train()
            metrics: dict[str, float] = {"epoch": epoch, "loss": train_epoch(epoch)}
            predicted = predict_windows(model, windows)
            for part in ("train", "val", "test"):
                index = list(getattr(split, part))
                metrics.update({f"{part}_{k}": v for k, v in task.scores(predicted[index], windows.y[index]).items()})
            if not math.isfinite(metrics["val_mse"]):
                raise NonFiniteError(f"{label}: the validation MSE became non-finite at epoch {epoch} after the optimiser "
                                     "step; training stopped. Lower the learning rate (lr) or the step (tau, n_steps) "
                                     "and start over", epoch=epoch, quantity="val_loss")
            metrics["seconds"] = time.perf_counter() - tick
            history.append(metrics)
            if task.improves(metrics["val_mse"], best["score"]):
                best = {"epoch": epoch, "score": metrics["val_mse"], "metrics": metrics,
                        "state": copy.deepcopy(model.state_dict())}
                since_best = 0
            else:
                since_best += 1
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", val=f"{metrics['val_mse']:.3f}",
                            best=f"{best['metrics']['test_mse']:.3f}@{best['epoch']}")
            if epoch % config.checkpoint_every == 0:
                checkpoint(epoch)
            if on_epoch is not None:
                on_epoch(epoch, metrics)
    finally:
        bar.close()
    if not history:
        raise ValueError("no epoch was trained (epochs must be >= 1)")
    checkpoint(epoch)
    model.load_state_dict(best["state"])
    chosen = best["metrics"]
    result = ForecastResult(
        split=0, run=run, seed=seed, best_epoch=best["epoch"], val_mse=chosen["val_mse"], val_mae=chosen["val_mae"],
        test_mse=chosen["test_mse"], test_mae=chosen["test_mae"], train_mse=chosen["train_mse"],
        epochs_run=len(history), stopped_early=stopped_early,
        seconds_per_epoch=math.fsum(row["seconds"] for row in history) / len(history), history=history)
    if run_dir is not None:
        write_json_atomic({**result.summary(), "fingerprint": expected}, run_dir / "result.json")
    return result


def stored_forecast(run_dir: Path, expected: dict[str, Any], model: NodeClassifier | None = None) -> ForecastResult | None:
    """The finished result in ``run_dir`` if it was written with the ``expected`` fingerprint
    (its best weights loaded into ``model``), else None (:func:`~.loop.stored_result`)."""
    return stored_result(run_dir, expected, model, kind=ForecastResult)


def summarise_forecasts(results: list[ForecastResult], floor: dict[str, float]) -> dict[str, Any]:
    """Means ± standard deviations over the runs of the test and validation MSE and the test MAE,
    with the last-value floor and whether every run's test MSE is below it."""
    test, val = _mean_std([r.test_mse for r in results]), _mean_std([r.val_mse for r in results])
    mae = _mean_std([r.test_mae for r in results])
    return {"metric": "mse", "test_mean": test[0], "test_std": test[1], "val_mean": val[0], "val_std": val[1],
            "test_mae_mean": mae[0], "test_mae_std": mae[1], "num_runs": len(results),
            "last_value": floor, "beats_last_value": all(r.test_mse < floor["test_mse"] for r in results),
            "seconds_per_epoch": statistics.fmean(r.seconds_per_epoch for r in results)}


def _model_data(windows: Windows) -> Data:
    """The ``Data`` a model is built on: the first window's inputs and graph."""
    graph = windows.graph(0)
    data = Data(x=windows.x[0], edge_index=graph.edge_index, num_nodes=int(windows.y.shape[1]))
    if getattr(graph, "edge_weight", None) is not None:
        data.edge_weight = graph.edge_weight
    return data


@dataclass
class ForecastExperiment:
    """A checked forecasting experiment (from :func:`prepare_forecasting`): ``run()`` trains and
    writes it."""

    signal: TemporalSignal
    windows: Windows
    split: TemporalSplit
    model_config: ModelConfig
    train_config: TrainConfig
    lags: int
    runs: int
    seed: int
    out: Path | None
    resume: bool
    overwrite: bool

    def run_dir(self, r: int) -> Path | None:
        return self.out / "split0" / f"run{r}" if self.out is not None else None

    def build(self) -> NodeClassifier:
        """A fresh model for these windows (drawn from torch's global generator)."""
        return build_model(self.model_config, _model_data(self.windows), num_classes=NodeRegression.out_channels) \
            .to(self.windows.x.device)

    def run(self, *, progress: bool | None = None, log: Callable[[str], None] = print,
            on_run: Callable[[ForecastResult, NodeClassifier], None] | None = None) -> dict[str, Any]:
        """Train every run (``overwrite``: after deleting ``out``'s results), write and return the
        results; ``on_run(result, model)`` sees every finished run with its best weights."""
        floor = last_value_scores(self.windows, self.split)
        started = time.perf_counter()

        def train_one(r: int, run_seed: int, run_dir: Path | None) -> tuple[ForecastResult, NodeClassifier]:
            model = self.build()
            return forecast_run(model, self.windows, self.split, self.train_config, seed=run_seed, run=r,
                                run_dir=run_dir, resume=self.resume, progress=progress, name=self.signal.name,
                                source=self.signal.source), model

        results = run_seeds(self.out, self.overwrite, self.runs, self.seed, self.run_dir, train_one, HISTORY_FIELDS,
                            lambda r, result: f"run {r}: test MSE {result.test_mse:.4f} (MAE {result.test_mae:.4f}) at "
                                              f"epoch {result.best_epoch} (val MSE {result.val_mse:.4f}; "
                                              f"{1000 * result.seconds_per_epoch:.0f} ms/epoch)", log, on_run)
        payload = {
            "task": "forecasting", "dataset": self.signal.name, "source": dict(self.signal.source),
            "num_nodes": self.signal.num_nodes, "num_steps": self.signal.num_steps, "lags": self.lags,
            "graph": "per time step" if self.signal.dynamic else "static",
            "num_edges": statistics.fmean(g.edge_index.shape[1] for g in self.signal.graphs),
            "weighted": getattr(self.signal.graphs[0], "edge_weight", None) is not None,
            "split": "temporal", "splits": 1,
            "split_sizes": {"0": list(self.split.sizes())}, "runs": self.runs, "seed": self.seed,
            "device": str(self.windows.x.device), "model": self.model_config.settings(),
            "train": _settings(self.train_config), "summary": summarise_forecasts(results, floor),
            "results": [r.summary() for r in results], "wall_seconds": time.perf_counter() - started,
        }
        if self.out is not None:
            write_json_atomic(payload, self.out / "results.json")
            write_text_atomic(_csv([r.summary() for r in results], SUMMARY_FIELDS), self.out / "results.csv")
        return payload


def prepare_forecasting(dataset: str | TemporalSignal, model_config: ModelConfig, train_config: TrainConfig, *,
                        lags: int | None = None, runs: int = 1, seed: int = 0, root: str | Path | None = None,
                        device: torch.device | str = "cpu", out: str | Path | None = None, resume: bool = False,
                        overwrite: bool = False) -> ForecastExperiment:
    """Check a forecasting experiment and load its data, training nothing and touching no file.

    ``dataset``: a built-in temporal dataset (:data:`~diffusion_pde.data.temporal.TEMPORAL_DATASETS`,
    read from ``root``) or a :class:`~diffusion_pde.data.temporal.TemporalSignal`; ``lags``
    previous values per node (default: the dataset's, as in the DIFFormer paper: 4, 8 for
    England COVID; 4 for a signal made in Python); ``runs`` initialisations (seeds
    ``seed``..``seed + runs − 1``). Raises ValueError/TypeError/FileNotFoundError naming the
    argument and the fix: bad settings, too few windows, an ``out`` that is not ours or holds
    results (without ``resume``/``overwrite``), a damaged checkpoint on resume."""
    out_dir = check_one_split_args(model_config, ModelConfig, train_config, TrainConfig, runs, seed, out, resume, overwrite)
    if isinstance(dataset, TemporalSignal):
        signal = check_signal(dataset)
    elif isinstance(dataset, str) and dataset in TEMPORAL_DATASETS:
        signal = load_temporal(dataset, root=root)
    else:
        raise ValueError(f"dataset {dataset!r} is not a temporal dataset; valid: {', '.join(TEMPORAL_DATASETS)}, or a "
                         "diffusion_pde.data.temporal.TemporalSignal")
    if lags is None:
        lags = TEMPORAL_DATASETS[signal.name].lags if signal.name in TEMPORAL_DATASETS else 4
    windows = make_windows(signal, lags)
    split = temporal_split(len(windows))
    windows = windows.to(torch.device(device))
    experiment = ForecastExperiment(signal, windows, split, model_config, train_config, lags, runs, seed, out_dir,
                                    resume, overwrite)
    if resume and out_dir is not None:
        for r in range(runs):
            expected = forecast_fingerprint(model_config, train_config, windows, split, seed + r, signal.name)
            run_dir = experiment.run_dir(r)
            if stored_forecast(run_dir, expected) is None:
                read_last(run_dir, expected)
    return experiment


def run_forecasting(dataset: str | TemporalSignal, model_config: ModelConfig, train_config: TrainConfig, *,
                    lags: int | None = None, runs: int = 1, seed: int = 0, root: str | Path | None = None,
                    device: torch.device | str = "cpu", out: str | Path | None = None, resume: bool = False,
                    overwrite: bool = False, progress: bool | None = None, log: Callable[[str], None] = print,
                    on_run: Callable[[ForecastResult, NodeClassifier], None] | None = None) -> dict[str, Any]:
    """:func:`prepare_forecasting` (which documents the arguments), then :meth:`ForecastExperiment.run`."""
    experiment = prepare_forecasting(dataset, model_config, train_config, lags=lags, runs=runs, seed=seed, root=root,
                                     device=device, out=out, resume=resume, overwrite=overwrite)
    return experiment.run(progress=progress, log=log, on_run=on_run)
