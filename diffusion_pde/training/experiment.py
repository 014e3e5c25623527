"""Experiments: a model trained on K splits × R initialisations, aggregated and written out.

Seeds: split s of kind ``random`` is drawn with split seed s (s = F..F+K−1, F = ``first_split``,
0 by default); the fixed splits (``geom-gcn``, ``fixed``) are taken in order from index F. A
non-zero F keeps splits for tuning apart from the splits that are reported. Run r on split s
initialises (and draws dropout) from torch seed ``seed + 1000 s + r``, so every (split, run) is
reproducible on its own.
Outputs under ``out``: ``results.json`` (settings, every (split, run) result, the means),
``results.csv`` (one row per run) and ``split{s}/run{r}/`` with ``history.csv``, ``last.pt``,
``best.pt`` and ``result.json``.

:func:`prepare_experiment` checks everything that can be checked before training (the settings,
the dataset and every split, ``out``, and on resume every checkpoint it will read), so a bad
argument fails before anything is trained, written or deleted; :meth:`Experiment.run` does the work.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch_geometric.data import Data

import solvers

from ..data import DATASETS, Split, load_dataset, mask_split, random_split
from ..models import ModelConfig, NodeClassifier, build_model
from .checkpoint import write_json_atomic, write_text_atomic
from .config import TrainConfig
from .loop import RunResult, check_metric, evaluate, fingerprint, history_fields, read_last, stored_result, train_run
from .metrics import METRIC_LABELS, score_key

SUMMARY_FIELDS = ("split", "run", "seed", "best_epoch", "metric", "val_score", "test_score", "val_acc", "test_acc",
                  "train_acc", "epochs_run", "stopped_early", "first_epoch_70", "chance", "seconds_per_epoch",
                  "peak_memory_mb")


def make_split(data: Data, kind: str, index: int) -> Split:
    """Split ``index`` of ``kind`` for a dataset loaded by :func:`~diffusion_pde.data.load_dataset`."""
    offered = DATASETS[data.name].splits
    if kind not in offered:
        raise ValueError(f"split {kind!r} is not available: dataset {data.name!r} offers the splits {', '.join(offered)}")
    if kind == "random":
        return random_split(data.y, index)
    return mask_split(data, kind, index)


def parse_solver(spec: str) -> tuple[str, dict[str, Any]]:
    """``"euler:16"`` → ("euler", {"n_steps": 16}); ``"dopri5"`` → ("dopri5", {}) (tolerances:
    ``"dopri5:1e-5"`` sets rtol, atol = rtol / 100)."""
    method, _, arg = spec.partition(":")
    if method not in solvers.available_methods():
        raise ValueError(f"unknown method {method!r} in {spec!r}; valid methods: {', '.join(solvers.available_methods())}")
    adaptive = method not in solvers.fixed_step_methods()
    if not arg:
        if not adaptive:
            raise ValueError(f"fixed-step method needs a step count: write {method}:N (e.g. {method}:16)")
        return method, {"rtol": 1e-5, "atol": 1e-7}
    try:
        value = float(arg) if adaptive else int(arg)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"bad solver spec {spec!r}: write METHOD:N_STEPS (N_STEPS >= 1) for fixed-step methods, "
                         "METHOD[:RTOL] (RTOL > 0) for adaptive ones")
    return (method, {"rtol": value, "atol": value / 100}) if adaptive else (method, {"n_steps": value})


def check_eval_solvers(model_config: ModelConfig, specs: Sequence[str]) -> None:
    """Other solvers can evaluate a continuous-depth model only, each written as :func:`parse_solver` reads it."""
    if specs and model_config.depth != "continuous":
        raise ValueError("eval_solvers (--eval-solvers) needs a continuous-depth model (--depth continuous); "
                         f"this {model_config.model} model is discrete")
    for spec in specs:
        try:
            parse_solver(spec)
        except ValueError as err:
            raise ValueError(f"eval_solvers (--eval-solvers): {err}") from None


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """``out`` must be a folder that is empty or missing, unless resumed (or overwritten)."""
    if resume and overwrite:
        raise ValueError("resume (--resume) continues the results in out, overwrite (--overwrite) deletes them: "
                         "pass one of them, not both")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out (--out) {out} is a file, not a folder; choose a folder for the results")
    if out.exists() and any(out.iterdir()) and not (resume or overwrite):
        raise ValueError(f"out (--out) {out} already holds results: pass resume=True (--resume) to continue them or "
                         "overwrite=True (--overwrite) to start over")


def evaluate_with_solvers(model: NodeClassifier, data: Data, split: Split, specs: Sequence[str],
                          metric: str = "accuracy") -> dict[str, dict[str, float]]:
    """The trained continuous model's accuracies and ``metric`` scores when integrated with other
    solvers."""
    check_eval_solvers(model.config, specs)
    out = {}
    for spec in specs:
        method, options = parse_solver(spec)
        with model.diffusion.with_solver(method, **options):
            tick = time.perf_counter()
            metrics = evaluate(model, data, split.to(data.x.device), metric)
            seconds = time.perf_counter() - tick
            model.eval()
            with torch.no_grad():
                nfe = model.diffusion.block.solve(model.encoder(data.x)).stats.nfe
        out[spec] = {"val_acc": metrics["val_acc"], "test_acc": metrics["test_acc"],
                     "val_score": metrics[score_key(metric, "val")], "test_score": metrics[score_key(metric, "test")],
                     "nfe": nfe, "seconds": seconds}
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """Means ± standard deviations of the metric's test and validation scores over all (split, run)
    pairs, in percent, plus per-split means."""
    test = [100 * r.test_score for r in results]
    val = [100 * r.val_score for r in results]
    mean, std = _mean_std(test)
    by_split: dict[int, list[float]] = {}
    for r in results:
        by_split.setdefault(r.split, []).append(100 * r.test_score)
    summary = {
        "metric": results[0].metric,
        "test_mean": mean, "test_std": std, "val_mean": _mean_std(val)[0], "val_std": _mean_std(val)[1],
        "per_split_test_mean": {str(k): statistics.fmean(v) for k, v in sorted(by_split.items())},
        "num_runs": len(results),
        "max_first_epoch_70": max(r.first_epoch_70 for r in results),
        "min_test_minus_chance": min(100 * (r.test_acc - r.chance) for r in results),
        "seconds_per_epoch": statistics.fmean(r.seconds_per_epoch for r in results),
    }
    solver_specs = results[0].extra.get("solvers", {}).keys()
    if solver_specs:
        summary["solvers"] = {spec: _mean_std([100 * r.extra["solvers"][spec]["test_score"] for r in results])
                              for spec in solver_specs}
    return summary


def _csv(rows: list[dict[str, Any]], fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class Experiment:
    """A checked experiment (from :func:`prepare_experiment`): ``run()`` trains and writes it."""

    data: Data
    model_config: ModelConfig
    train_config: TrainConfig
    split: str
    node_splits: dict[int, Split]
    runs: int
    seed: int
    out: Path | None
    resume: bool
    overwrite: bool
    eval_solvers: tuple[str, ...]

    def run_dir(self, s: int, r: int) -> Path | None:
        return self.out / f"split{s}" / f"run{r}" if self.out is not None else None

    def run(self, *, progress: bool | None = None, log: Callable[[str], None] = print,
            on_run: Callable[[RunResult, NodeClassifier, Split], None] | None = None) -> dict[str, Any]:
        """Train every (split, run) (``overwrite``: after deleting ``out``), write and return the
        results; ``on_run(result, model, split)`` sees every finished run with the model at its
        best epoch."""
        data, train_config, out_dir = self.data, self.train_config, self.out
        if out_dir is not None and self.overwrite and out_dir.exists():
            shutil.rmtree(out_dir)
        results: list[RunResult] = []
        started = time.perf_counter()
        for s, node_split in self.node_splits.items():
            for r in range(self.runs):
                run_seed = self.seed + 1000 * s + r
                torch.manual_seed(run_seed)
                model = build_model(self.model_config, data).to(data.x.device)
                run_dir = self.run_dir(s, r)
                result = None
                if run_dir is not None and self.resume:
                    result = stored_result(run_dir, fingerprint(self.model_config, train_config, node_split, run_seed), model)
                if result is None:
                    result = train_run(model, data, node_split, train_config, seed=run_seed, run=r, run_dir=run_dir,
                                       resume=self.resume, progress=progress)
                if self.eval_solvers:
                    result.extra["solvers"] = evaluate_with_solvers(model, data, node_split, self.eval_solvers,
                                                                    train_config.metric)
                if run_dir is not None:
                    write_text_atomic(_csv(result.history, history_fields(train_config.metric)), run_dir / "history.csv")
                results.append(result)
                if on_run is not None:
                    on_run(result, model, node_split)
                solver_note = "".join(f", {k} {100 * v['test_score']:.1f}" for k, v in result.extra.get("solvers", {}).items())
                name = "" if result.metric == "accuracy" else f"{METRIC_LABELS[result.metric]} "
                log(f"split {s} run {r}: test {name}{100 * result.test_score:.1f} at epoch {result.best_epoch} "
                    f"(val {100 * result.val_score:.1f}; val reached 70% of its best at epoch {result.first_epoch_70}; "
                    f"{1000 * result.seconds_per_epoch:.0f} ms/epoch{solver_note})")

        first_split = next(iter(self.node_splits))
        payload = {
            "dataset": data.name, "num_nodes": int(data.num_nodes), "split": self.split, "splits": len(self.node_splits),
            "runs": self.runs, "first_split": first_split, "seed": self.seed, "device": str(data.x.device),
            "model": dataclasses.asdict(self.model_config), "train": dataclasses.asdict(train_config),
            "summary": summarise(results), "results": [r.summary() for r in results],
            "wall_seconds": time.perf_counter() - started,
        }
        if out_dir is not None:
            write_json_atomic(payload, out_dir / "results.json")
            write_text_atomic(_csv([r.summary() for r in results], SUMMARY_FIELDS), out_dir / "results.csv")
        return payload


def prepare_experiment(
    dataset: str | Data,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    split: str = "random",
    splits: int = 1,
    runs: int = 1,
    first_split: int = 0,
    seed: int = 0,
    root: str | Path | None = None,
    device: torch.device | str = "cpu",
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    eval_solvers: Sequence[str] = (),
) -> Experiment:
    """Check an experiment of ``splits`` splits (indices ``first_split`` onwards) × ``runs``
    initialisations and load its data, training nothing and touching no file: bad settings, a
    split index out of range, an ``out`` that holds results (without ``resume`` or
    ``overwrite``) and, with ``resume``, a damaged checkpoint or one written with other settings
    raise a ValueError (TypeError for wrong types) naming the argument and the fix."""
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    for name, value, least in (("splits", splits, 1), ("runs", runs, 1), ("first_split", first_split, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    eval_solvers = tuple(eval_solvers)
    check_eval_solvers(model_config, eval_solvers)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_out(out_dir, resume, overwrite)
    data = dataset if isinstance(dataset, Data) else load_dataset(dataset, root=root, geom_gcn=split == "geom-gcn")
    data = data.to(torch.device(device))
    check_metric(train_config, int(data.y.max()) + 1)
    node_splits = {s: make_split(data, split, s) for s in range(first_split, first_split + splits)}
    experiment = Experiment(data, model_config, train_config, split, node_splits, runs, seed, out_dir, resume,
                            overwrite, eval_solvers)
    if resume and out_dir is not None:
        for s, node_split in node_splits.items():
            for r in range(runs):
                expected = fingerprint(model_config, train_config, node_split, seed + 1000 * s + r)
                run_dir = experiment.run_dir(s, r)
                if stored_result(run_dir, expected) is None:
                    read_last(run_dir, expected)
    return experiment


def run_experiment(
    dataset: str | Data,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    split: str = "random",
    splits: int = 1,
    runs: int = 1,
    first_split: int = 0,
    seed: int = 0,
    root: str | Path | None = None,
    device: torch.device | str = "cpu",
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    eval_solvers: Sequence[str] = (),
    log: Callable[[str], None] = print,
    on_run: Callable[[RunResult, NodeClassifier, Split], None] | None = None,
) -> dict[str, Any]:
    """Train on ``splits`` splits (indices ``first_split`` onwards) × ``runs`` initialisations;
    return (and write) the results: :func:`prepare_experiment`, then :meth:`Experiment.run`.

    ``on_run(result, model, split)`` sees every finished run with the model at its best epoch."""
    experiment = prepare_experiment(dataset, model_config, train_config, split=split, splits=splits, runs=runs,
                                    first_split=first_split, seed=seed, root=root, device=device, out=out,
                                    resume=resume, overwrite=overwrite, eval_solvers=eval_solvers)
    return experiment.run(progress=progress, log=log, on_run=on_run)
