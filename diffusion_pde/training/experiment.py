"""Experiments: a model trained on K splits × R initialisations, aggregated and written out.

Seeds: split s of kind ``random`` is drawn with split seed s (s = F..F+K−1, F = ``first_split``,
0 by default); the fixed splits (``geom-gcn``, ``fixed``) are taken in order from index F. A
non-zero F keeps splits for tuning apart from the splits that are reported. Run r on split s
initialises (and draws dropout) from torch seed ``seed + 1000 s + r``, so every (split, run) is
reproducible on its own.
Outputs under ``out``: ``results.json`` (settings, every (split, run) result, the means),
``results.csv`` (one row per run) and ``split{s}/run{r}/`` with ``history.csv``, ``last.pt``,
``best.pt`` and ``result.json``; every folder it creates holds the marker of
:mod:`~diffusion_pde.training.outputs`, and ``overwrite`` deletes only those files.

The dataset is a built-in name, the path of a user's graph or any ``Data``; the splits a kind
(``random``, ``public``, ``geom-gcn``, ``fixed``: a user graph's stored masks, ``grand``: GRAND's
protocol, for which the graph is restricted to its largest connected component before anything
is built on it) or ``Split`` objects. :func:`prepare_experiment` checks everything that can be
checked before training (the settings, the graph, features, labels and every split, ``out``, and
on resume every checkpoint it will read), so a bad argument fails before anything is trained,
written or deleted; :meth:`Experiment.run` does the work.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch_geometric.data import Data

import solvers

from ..data import (
    DATASETS,
    GRAND_SIZES,
    INSTANCE_DATASETS,
    Split,
    dataset_source,
    default_split,
    grand_split,
    is_connected,
    largest_component,
    mask_split,
    offered_splits,
    open_dataset,
    random_split,
    split_sizes,
    validate_split,
)
from ..models import ModelConfig, NodeClassifier, build_model
from ..models.config import ATTENTION_MODELS
from .checkpoint import write_json_atomic, write_text_atomic
from .config import TrainConfig
from .distributed import Distribution
from .loop import RunResult, check_metric, evaluate, fingerprint, history_fields, read_last, stored_result, train_run
from .metrics import METRIC_LABELS, score_key
from .outputs import check_out, make_results_folder, remove_results, results_path

SUMMARY_FIELDS = ("split", "run", "seed", "best_epoch", "metric", "val_score", "test_score", "val_acc", "test_acc",
                  "train_acc", "epochs_run", "stopped_early", "first_epoch_70", "chance", "seconds_per_epoch",
                  "peak_memory_mb")


# The split kinds each size applies to.
SIZE_KINDS = {"per_class": ("random", "grand"), "num_val": ("random",), "num_test": ("random",),
              "num_development": ("grand",)}


def check_offered(data: Data, kind: str) -> None:
    """Refuse a split ``kind`` that ``data`` does not offer (:func:`~diffusion_pde.data.offered_splits`)."""
    offered = offered_splits(data)
    if kind not in offered:
        raise ValueError(f"split {kind!r} is not available: dataset {data.name!r} offers the splits {', '.join(offered)}")


def make_split(data: Data, kind: str, index: int, *, per_class: int | float | None = None,
               num_val: int | float | None = None, num_test: int | float | None = None,
               num_development: int | float | None = None) -> Split:
    """Split ``index`` of ``kind`` for ``data`` (a built-in dataset or a user's graph). Random
    splits take the sizes given, else :func:`~diffusion_pde.data.split_sizes` (the paper's 20
    per class / 500 / 1000 on the classic built-in datasets, 50/25/25 on the large ones, sizes
    that fit on a user's graph); GRAND's splits ``per_class`` and ``num_development``, else
    GRAND's 20 and 1500 (:data:`~diffusion_pde.data.GRAND_SIZES`), on a connected graph: restrict
    ``data`` with :func:`~diffusion_pde.data.largest_component` first (a ValueError says so)."""
    check_offered(data, kind)
    given = {"per_class": per_class, "num_val": num_val, "num_test": num_test, "num_development": num_development}
    given = {name: value for name, value in given.items() if value is not None and kind in SIZE_KINDS[name]}
    if kind == "random":
        return random_split(data.y, index, **{**split_sizes(data), **given})
    if kind == "grand":
        if not is_connected(data):
            raise ValueError(f"the grand split is drawn on a connected graph (GRAND's protocol keeps the largest connected "
                             f"component), but dataset {data.name!r} is not connected: restrict it first with "
                             "diffusion_pde.data.largest_component(data) (prepare_experiment and run_experiment do)")
        return grand_split(data.y, index, **{**GRAND_SIZES, **given})
    return mask_split(data, kind, index)


def check_graph(model_config: ModelConfig, data: Data) -> None:
    """Refuse a model that propagates over the input graph (GCN, GAT, SGC, APPNP, or an attention
    model's graph term, ``use_graph``) on data without edges, where it would silently be an MLP
    (or attention plus an identity term); the error names the fix: a kNN graph (``knn``,
    ``--knn K``) for the datasets without a graph, or ``use_graph=False`` (``--no-graph``)."""
    if data.edge_index.shape[1] > 0:
        return
    model = model_config.model
    if model not in ("gcn", "gat", "sgc", "appnp") and not (model in ATTENTION_MODELS and model_config.use_graph):
        return
    source = dataset_source(data)
    instances = source["kind"] == "builtin" and source["name"] in INSTANCE_DATASETS
    fix = "build a k-nearest-neighbour graph with --knn K (load_dataset(..., knn=K))" if instances else \
        "give a graph with edges"
    what = "propagates over the input graph" if model not in ATTENTION_MODELS else "adds the input graph's term (use_graph)"
    other = f"{fix}, or drop the graph term with --no-graph (use_graph=False) to attend over all nodes alone" \
        if model in ATTENTION_MODELS else f"{fix}, or use a model that needs no graph (mlp, difformer_s with --no-graph)"
    raise ValueError(f"model {model} {what}, but dataset {getattr(data, 'name', 'data')!r} has no edges: {other}")


SOLVER_DEFAULT_RTOL = 1e-5


def _solver_value(text: str, integer: bool) -> int | float | None:
    """A positive int (``integer``) or a positive finite float read from ``text``, else None."""
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def parse_solver(spec: str) -> tuple[str, dict[str, Any]]:
    """A solver written ``METHOD[:FIELD...]``: ``"euler:16"`` or ``"euler:n_steps=16"`` → ("euler",
    {"n_steps": 16}); ``"dopri5"`` → rtol 1e-5, atol = rtol / 100; ``"dopri5:1e-6"`` sets rtol;
    ``"dopri5:rtol=1e-6:atol=1e-9"`` both. Only the second field may be a bare number; every later
    field must be named."""
    method, *fields = spec.split(":")
    if method not in solvers.available_methods():
        raise ValueError(f"unknown method {method!r} in {spec!r}; valid methods: {', '.join(solvers.available_methods())}")
    keys = ("n_steps",) if method in solvers.fixed_step_methods() else ("rtol", "atol")
    options: dict[str, Any] = {}
    for position, field in enumerate(fields, start=2):
        key, named, text = field.partition("=")
        if not named:
            if position > 2:
                ordinal = {3: "third", 4: "fourth"}.get(position, f"{position}th")
                raise ValueError(f"bad solver spec {spec!r}: the {ordinal} field {field!r} must be named, e.g. "
                                 f"{method}:" + ":".join(f"{k}=..." for k in keys))
            key, text = keys[0], field
        if key not in keys:
            raise ValueError(f"bad solver spec {spec!r}: {method} takes {' and '.join(keys)}, not {key!r}")
        if key in options:
            raise ValueError(f"bad solver spec {spec!r}: {key} is given twice")
        value = _solver_value(text, integer=key == "n_steps")
        if value is None:
            raise ValueError(f"bad solver spec {spec!r}: {key} must be " + ("an int >= 1" if key == "n_steps" else
                             "a finite number > 0") + f", got {text!r}")
        options[key] = value
    if keys == ("n_steps",) and not options:
        raise ValueError(f"fixed-step method needs a step count: write {method}:N (e.g. {method}:16)")
    if keys != ("n_steps",):
        options.setdefault("rtol", SOLVER_DEFAULT_RTOL)
        options.setdefault("atol", options["rtol"] / 100)
    return method, options


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


def check_one_split_args(model_config: Any, model_type: type, train_config: Any, train_type: type, runs: object,
                         seed: object, out: str | Path | None, resume: bool, overwrite: bool) -> Path | None:
    """The checks shared by the one-split experiments (forecasting, sequence classification)
    before any work: the configurations' types, ``runs`` ≥ 1 and ``seed`` ≥ 0 ints, and ``out``
    (:func:`~.outputs.check_out`). Returns the results folder (None without ``out``)."""
    if not isinstance(model_config, model_type):
        raise TypeError(f"model_config must be a {model_type.__name__}, got {type(model_config).__name__}")
    if not isinstance(train_config, train_type):
        raise TypeError(f"train_config must be a {train_type.__name__}, got {type(train_config).__name__}")
    for arg, value, least in (("runs", runs, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{arg} must be an int >= {least}, got {value!r}")
    if out is None:
        return None
    check_out(Path(out), resume, overwrite)
    return results_path(out)


def run_seeds(out: Path | None, overwrite: bool, runs: int, seed: int, run_dir: Callable[[int], Path | None],
              train_one: Callable[[int, int, Path | None], tuple[Any, Any]], fields: Sequence[str],
              describe: Callable[[int, Any], str], log: Callable[[str], None] = print,
              on_run: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """The runs of a one-split experiment (forecasting, sequence classification): prepare ``out``
    (``overwrite``: after deleting our results there), then for r = 0..runs−1 seed torch with
    ``seed + r``, call ``train_one(r, seed + r, run_dir(r))`` → (result, model), write the result's
    history (``fields``) to the run folder, call ``on_run(result, model)`` and log
    ``describe(r, result)``. Returns the results."""
    if out is not None:
        if overwrite:
            remove_results(out)
        make_results_folder(out)
    results = []
    for r in range(runs):
        torch.manual_seed(seed + r)
        folder = run_dir(r)
        if folder is not None:
            make_results_folder(folder.parent)
            make_results_folder(folder)
        result, model = train_one(r, seed + r, folder)
        if folder is not None:
            write_text_atomic(_csv(result.history, fields), folder / "history.csv")
        results.append(result)
        if on_run is not None:
            on_run(result, model)
        log(describe(r, result))
    return results


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
    distribution: Distribution = Distribution()

    def run_dir(self, s: int, r: int) -> Path | None:
        return self.out / f"split{s}" / f"run{r}" if self.out is not None else None

    def run(self, *, progress: bool | None = None, log: Callable[[str], None] = print,
            on_run: Callable[[RunResult, NodeClassifier, Split], None] | None = None) -> dict[str, Any]:
        """Train every (split, run) (``overwrite``: after deleting ``out``), write and return the
        results; ``on_run(result, model, split)`` sees every finished run with the model at its
        best epoch. With several processes (``distribution``) every rank trains, rank 0 alone
        writes and logs."""
        data, train_config, out_dir, dist_ = self.data, self.train_config, self.out, self.distribution
        main = dist_.is_main
        log = log if main else (lambda line: None)
        dist_.barrier()  # every rank has checked ``out`` before rank 0 writes there
        if out_dir is not None and main:
            if self.overwrite:
                remove_results(out_dir)
            make_results_folder(out_dir)
        dist_.barrier()
        results: list[RunResult] = []
        started = time.perf_counter()
        for s, node_split in self.node_splits.items():
            for r in range(self.runs):
                run_seed = self.seed + 1000 * s + r
                torch.manual_seed(run_seed)
                model = build_model(self.model_config, data).to(data.x.device)
                if dist_.rank > 0:  # the same initial weights on every rank, other dropout draws
                    torch.manual_seed(run_seed + 7919 * dist_.rank)
                run_dir = self.run_dir(s, r)
                if run_dir is not None and main:
                    make_results_folder(run_dir.parent)
                    make_results_folder(run_dir)
                dist_.barrier()
                result = None
                if run_dir is not None and self.resume:
                    result = stored_result(run_dir, fingerprint(self.model_config, train_config, node_split, run_seed, data,
                                                                dist_.world_size), model)
                if len(set(dist_.gather(result is None))) > 1:
                    raise RuntimeError(f"split {s} run {r} is finished for some processes and not for others: every "
                                       "machine must see the same --out (shared storage)")
                if result is None:
                    result = train_run(model, data, node_split, train_config, seed=run_seed, run=r, run_dir=run_dir,
                                       resume=self.resume, progress=progress, distribution=dist_)
                if self.eval_solvers:
                    result.extra["solvers"] = evaluate_with_solvers(model, data, node_split, self.eval_solvers,
                                                                    train_config.metric)
                if run_dir is not None and main:
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
            "dataset": data.name, "source": dataset_source(data), "num_nodes": int(data.num_nodes),
            "num_features": int(data.x.shape[1]), "split": self.split, "splits": len(self.node_splits),
            "split_sizes": {str(s): [int(p.numel()) for p in (sp.train, sp.val, sp.test)] for s, sp in self.node_splits.items()},
            "runs": self.runs, "first_split": first_split, "seed": self.seed, "device": str(data.x.device),
            "num_edges": int(data.edge_index.shape[1]), "weighted": getattr(data, "edge_weight", None) is not None,
            "world_size": dist_.world_size,
            "model": self.model_config.settings(), "train": dataclasses.asdict(train_config),
            "summary": summarise(results), "results": [r.summary() for r in results],
            "wall_seconds": time.perf_counter() - started,
        }
        if out_dir is not None and main:
            write_json_atomic(payload, out_dir / "results.json")
            write_text_atomic(_csv([r.summary() for r in results], SUMMARY_FIELDS), out_dir / "results.csv")
        return payload


SplitArg = str | Split | Sequence[Split] | None


def _given_splits(split: SplitArg, splits: int, first_split: int, sizes: dict[str, Any]) -> list[Split] | None:
    """The ``Split`` objects passed as ``split`` (None when it names a kind or is left out)."""
    if split is None or isinstance(split, str):
        return None
    given = [split] if isinstance(split, Split) else list(split)
    if not given or not all(isinstance(s, Split) for s in given):
        raise TypeError("split must be a split kind (random, public, geom-gcn, fixed, grand), a diffusion_pde.data.Split "
                        "or a list of them")
    if splits != 1 or first_split != 0:
        raise ValueError("splits and first_split choose among the splits of a kind; with Split objects pass every "
                         "split to train on in split=[...]")
    _check_sizes(sizes, None)
    return given


def _check_sizes(sizes: dict[str, Any], kind: str | None) -> None:
    """Refuse the sizes given that split ``kind`` does not take (:data:`SIZE_KINDS`; ``kind`` None:
    ``Split`` objects, which take none), naming the split kinds that take them."""
    misplaced = [name for name, value in sizes.items() if value is not None and kind not in SIZE_KINDS[name]]
    if not misplaced:
        return
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in misplaced:
        groups.setdefault(SIZE_KINDS[name], []).append(name)
    said = ", ".join(f"{' and '.join(names)} only " + ("" if i else f"appl{'ies' if len(names) == 1 else 'y'} ") +
                     f"to {' and '.join(kinds)} splits" for i, (kinds, names) in enumerate(groups.items()))
    them = "it" if len(misplaced) == 1 else "them"
    sized = any(kind in kinds for kinds in SIZE_KINDS.values())
    why = "Split objects carry their own nodes" if kind is None else \
        f"the {kind} split does not take {them}" if sized else f"the {kind} split is stored with the data"
    fits = [k for k in SIZE_KINDS[misplaced[0]] if all(k in SIZE_KINDS[name] for name in misplaced)]
    raise ValueError(f"{said}; {why}: drop {them}" + (f" or use split={fits[0]!r}" if fits and kind else ""))


def prepare_experiment(
    dataset: str | Path | Data,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    split: SplitArg = None,
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
    per_class: int | None = None,
    num_val: int | float | None = None,
    num_test: int | float | None = None,
    num_development: int | float | None = None,
    distribution: Distribution | None = None,
) -> Experiment:
    """Check an experiment and load its data, training nothing and touching no file.

    ``dataset``: a built-in name, the path of a user's graph (a saved ``Data`` or a folder of
    CSV/NPY files, :func:`~diffusion_pde.data.load_graph`) or any ``Data`` (x, edge_index, y,
    optional masks); graph, features and labels are validated and the features converted to
    float32. ``split``: a kind (default: :func:`~diffusion_pde.data.default_split`) of which
    ``splits`` splits from index ``first_split`` are taken, or ``Split`` objects (one or a
    list); random splits are sized by ``per_class`` (training nodes per class), ``num_val`` and
    ``num_test`` (counts, or fractions of the nodes left), GRAND's (``grand``) by ``per_class``
    and ``num_development`` (a count, or a fraction of the component's nodes); with ``grand`` the
    graph is first restricted to its largest connected component
    (:func:`~diffusion_pde.data.largest_component`), and the experiment's ``data``, its model
    and its checkpoints are that component's. Every split is checked (non-empty,
    disjoint, in range; a class without training nodes warns). ``runs`` initialisations per split.

    Bad settings, a split index out of range, an ``out`` that is not ours or holds results
    (without ``resume`` or ``overwrite``) and, with ``resume``, a damaged checkpoint or one
    written with other settings raise a ValueError (TypeError for wrong types, FileNotFoundError
    for missing files) naming the argument and the fix. ``distribution``: this process's place
    among several (:func:`~diffusion_pde.training.distributed.initialise`); they need mini-batches."""
    distribution = distribution or Distribution()
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    distribution.check_batches(train_config.batch_size)
    for name, value, least in (("splits", splits, 1), ("runs", runs, 1), ("first_split", first_split, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    eval_solvers = tuple(eval_solvers)
    check_eval_solvers(model_config, eval_solvers)
    if out is not None:
        check_out(Path(out), resume, overwrite)  # its messages show ``out`` as given, before ~ is expanded
    out_dir = results_path(out) if out is not None else None
    sizes = {"per_class": per_class, "num_val": num_val, "num_test": num_test, "num_development": num_development}
    given = _given_splits(split, splits, first_split, sizes)
    named = isinstance(dataset, str) and dataset in DATASETS
    kind = split if isinstance(split, str) else (default_split(dataset) if named and given is None else None)
    data = open_dataset(dataset, root=root, geom_gcn=kind == "geom-gcn")
    if kind == "grand":
        check_offered(data, kind)
        data = largest_component(data)  # GRAND's protocol: the other nodes take no part, not even in attention
    data = data.to(torch.device(device))
    check_metric(train_config, int(data.y.max()) + 1)
    check_graph(model_config, data)
    if given is not None:
        node_splits = {i: dataclasses.replace(s, index=i) for i, s in enumerate(given)}
        kind = ", ".join(dict.fromkeys(s.kind for s in given))
    else:
        kind = kind or default_split(data)
        _check_sizes(sizes, kind)
        node_splits = {s: make_split(data, kind, s, **sizes) for s in range(first_split, first_split + splits)}
    for s, node_split in node_splits.items():
        validate_split(node_split, data, where=f"the {kind} split {s}")
    experiment = Experiment(data, model_config, train_config, kind, node_splits, runs, seed, out_dir, resume,
                            overwrite, eval_solvers, distribution)
    if resume and out_dir is not None:
        for s, node_split in node_splits.items():
            for r in range(runs):
                expected = fingerprint(model_config, train_config, node_split, seed + 1000 * s + r, data,
                                       distribution.world_size)
                run_dir = experiment.run_dir(s, r)
                if stored_result(run_dir, expected) is None:
                    read_last(run_dir, expected)
    return experiment


def run_experiment(
    dataset: str | Path | Data,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    split: SplitArg = None,
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
    per_class: int | None = None,
    num_val: int | float | None = None,
    num_test: int | float | None = None,
    num_development: int | float | None = None,
    log: Callable[[str], None] = print,
    on_run: Callable[[RunResult, NodeClassifier, Split], None] | None = None,
    distribution: Distribution | None = None,
) -> dict[str, Any]:
    """Train on every split × ``runs`` initialisations; return (and write) the results:
    :func:`prepare_experiment` (which documents the arguments), then :meth:`Experiment.run`.

    ``on_run(result, model, split)`` sees every finished run with the model at its best epoch."""
    experiment = prepare_experiment(dataset, model_config, train_config, split=split, splits=splits, runs=runs,
                                    first_split=first_split, seed=seed, root=root, device=device, out=out,
                                    resume=resume, overwrite=overwrite, eval_solvers=eval_solvers,
                                    per_class=per_class, num_val=num_val, num_test=num_test,
                                    num_development=num_development, distribution=distribution)
    return experiment.run(progress=progress, log=log, on_run=on_run)
