"""Experiments: a model trained on K splits × R initialisations, aggregated and written out.

Seeds: split s of kind ``random`` is drawn with split seed s (s = F..F+K−1, F = ``first_split``,
0 by default); the fixed splits (``geom-gcn``, ``fixed``) are taken in order from index F. A
non-zero F keeps splits for tuning apart from the splits that are reported. Run r on split s
initialises (and draws dropout) from torch seed ``seed + 1000 s + r``, so every (split, run) is
reproducible on its own.
Outputs under ``out``: ``results.json`` (settings, every (split, run) result, the means),
``results.csv`` (one row per run) and ``split{s}/run{r}/`` with ``history.csv``, ``last.pt``,
``best.pt`` and ``result.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch_geometric.data import Data

import solvers

from ..data import DATASETS, Split, load_dataset, mask_split, random_split
from ..models import ModelConfig, NodeClassifier, build_model
from .checkpoint import write_json_atomic, write_text_atomic
from .config import TrainConfig
from .loop import RunResult, evaluate, history_fields, stored_result, train_run
from .metrics import METRIC_LABELS, score_key

SUMMARY_FIELDS = ("split", "run", "seed", "best_epoch", "metric", "val_score", "test_score", "val_acc", "test_acc",
                  "train_acc", "epochs_run", "stopped_early", "first_epoch_70", "chance", "seconds_per_epoch",
                  "peak_memory_mb")


def make_split(data: Data, kind: str, index: int) -> Split:
    """Split ``index`` of ``kind`` for a dataset loaded by :func:`~diffusion_pde.data.load_dataset`."""
    offered = DATASETS[data.name].splits
    if kind not in offered:
        raise ValueError(f"dataset {data.name!r} offers the splits {', '.join(offered)}, not {kind!r}")
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
        return (method, {"rtol": float(arg), "atol": float(arg) / 100}) if adaptive else (method, {"n_steps": int(arg)})
    except ValueError:
        raise ValueError(f"bad solver spec {spec!r}: write METHOD:N_STEPS for fixed-step, METHOD[:RTOL] for adaptive") from None


def evaluate_with_solvers(model: NodeClassifier, data: Data, split: Split, specs: Sequence[str],
                          metric: str = "accuracy") -> dict[str, dict[str, float]]:
    """The trained continuous model's accuracies and ``metric`` scores when integrated with other
    solvers."""
    if model.config.depth != "continuous":
        raise ValueError("--eval-solvers needs a continuous-depth model (--depth continuous)")
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
    return (and write) the results.

    ``on_run(result, model, split)`` sees every finished run with the model at its best epoch."""
    for name, value, least in (("splits", splits, 1), ("runs", runs, 1), ("first_split", first_split, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    device = torch.device(device)
    data = dataset if isinstance(dataset, Data) else load_dataset(dataset, root=root, geom_gcn=split == "geom-gcn")
    data = data.to(device)
    out_dir = Path(out) if out is not None else None
    # every split is drawn (and an index out of range reported) before anything is trained or deleted
    node_splits = {s: make_split(data, split, s) for s in range(first_split, first_split + splits)}
    if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()) and not (resume or overwrite):
        raise ValueError(f"{out_dir} already holds results: pass --resume to continue them or --overwrite to start over")
    if out_dir is not None and overwrite and out_dir.exists():
        shutil.rmtree(out_dir)

    results: list[RunResult] = []
    started = time.perf_counter()
    for s, node_split in node_splits.items():
        for r in range(runs):
            run_seed = seed + 1000 * s + r
            torch.manual_seed(run_seed)
            model = build_model(model_config, data).to(device)
            run_dir = out_dir / f"split{s}" / f"run{r}" if out_dir is not None else None
            result = stored_result(run_dir, model, train_config, node_split, run_seed) if (run_dir and resume) else None
            if result is None:
                result = train_run(model, data, node_split, train_config, seed=run_seed, run=r, run_dir=run_dir,
                                   resume=resume, progress=progress)
            if eval_solvers:
                result.extra["solvers"] = evaluate_with_solvers(model, data, node_split, eval_solvers, train_config.metric)
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

    payload = {
        "dataset": data.name, "num_nodes": int(data.num_nodes), "split": split, "splits": splits, "runs": runs,
        "first_split": first_split, "seed": seed, "device": str(device), "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config), "summary": summarise(results),
        "results": [r.summary() for r in results], "wall_seconds": time.perf_counter() - started,
    }
    if out_dir is not None:
        write_json_atomic(payload, out_dir / "results.json")
        write_text_atomic(_csv([r.summary() for r in results], SUMMARY_FIELDS), out_dir / "results.csv")
    return payload
