"""``diffusion-pde train`` on a spatial-temporal dataset (chickenpox, england-covid, pedalme):
forecast every node's next value from its ``--lags`` previous ones with the same models, flags
and outputs as node classification (:mod:`diffusion_pde.training.forecasting`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..data.temporal import TEMPORAL_DATASETS, is_temporal
from ..training.forecasting import FORECAST_DEFAULTS, prepare_forecasting
from ._common import print_json, resolve_device, usage_errors

# Node-classification flags with no meaning for forecasting (the split is temporal and fixed, the
# metric is MSE): (argparse dest, the value that means "not given").
_NOT_FOR_FORECASTING = (("split", None), ("splits", 1), ("first_split", 0), ("per_class", None), ("num_val", None),
                        ("num_test", None), ("num_development", None), ("metric", None), ("eval_solvers", ()),
                        ("num_nodes", None), ("num_instances", None), ("pca", None), ("knn", None),
                        ("knn_metric", None))


def add_forecasting_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of forecasting (``train`` only)."""
    f = p.add_argument_group(f"spatial-temporal forecasting ({', '.join(TEMPORAL_DATASETS)}; read from "
                             "<root>/SpatioTemporal/; docs/training.md)")
    f.add_argument("--lags", type=int, default=None, metavar="L",
                   help="previous values per node that a forecast sees (default: "
                        + ", ".join(f"{spec.lags} on {name}" for name, spec in TEMPORAL_DATASETS.items())
                        + ", as in the DIFFormer paper)")


def forecasting_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The forecasting defaults (:data:`~diffusion_pde.training.forecasting.FORECAST_DEFAULTS`)
    of the settings whose flags were not given, so that given flags win over them."""
    from .train import SETTING_FLAGS  # train imports this module

    return {name: value for name, value in FORECAST_DEFAULTS[args.model].items()
            if name in SETTING_FLAGS and getattr(args, name) is None}


def check_forecasting_args(args: argparse.Namespace) -> None:
    """Refuse the flags that forecasting would ignore, naming them and the fix."""
    if not is_temporal(args.dataset):
        raise ValueError(f"--lags sets the inputs of forecasting on the temporal datasets ({', '.join(TEMPORAL_DATASETS)}); "
                         f"dataset {args.dataset!r} is node classification: drop --lags")
    given = [args.flags[name] for name, unset in _NOT_FOR_FORECASTING
             if hasattr(args, name) and getattr(args, name) not in (unset, None)]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise ValueError(f"{', '.join(given)}: forecasting on {args.dataset} splits the windows in time (20% train, 20% "
                         f"validation, 60% test, as the DIFFormer paper), is scored by MSE and MAE and trains --runs "
                         f"seeds, so {them} would be ignored; drop {them}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("forecasting trains in one process (the datasets are small); run it without torchrun")


def train_forecasting(args: argparse.Namespace) -> int:
    """``train`` on a temporal dataset: check, train ``--runs`` seeds, write and report."""
    from .train import dataset_key, settings_from_args  # train imports this module

    with usage_errors(args.flags):
        check_forecasting_args(args)
        model_config, train_config = settings_from_args(args, **forecasting_settings(args))
        device = resolve_device(args.device)
        out = Path(args.out) if args.out else Path("runs") / f"{dataset_key(args.dataset)}-{args.model}-{model_config.depth}"
        experiment = prepare_forecasting(args.dataset, model_config, train_config, lags=args.lags, runs=args.runs,
                                         seed=args.seed, root=args.root, device=device, out=out, resume=args.resume,
                                         overwrite=args.overwrite)
    signal, split = experiment.signal, experiment.split
    log = (lambda line: None) if (args.quiet or args.json) else print
    steps = "full batch" if train_config.batch_size is None else f"groups of <= {train_config.batch_size} windows"
    graph = "a graph per time step" if signal.dynamic else "a static graph"
    log(f"{signal.name} ({signal.num_nodes} nodes, {signal.num_steps} time steps, {graph}): forecasting from "
        f"{experiment.lags} lags, {len(experiment.windows)} windows ({' / '.join(map(str, split.sizes()))} train / "
        f"validation / test, in time); {args.model} ({model_config.describe()}), {train_config.epochs} epochs, lr "
        f"{train_config.lr}, weight decay {train_config.weight_decay}, patience {train_config.patience}, {steps}; "
        f"{args.runs} run(s) on {device}")
    kept: list[Any] = []
    payload = experiment.run(progress=False if args.quiet else None, log=log,
                             on_run=lambda result, model: kept.append((result, model)))
    summary = payload["summary"]
    if args.plot:
        from ..training.forecast_plots import plot_forecast, plot_forecast_curves

        title = f"{signal.name} {args.model} ({model_config.depth}, {'graph' if model_config.use_graph else 'no graph'})"
        plot_forecast_curves([k[0] for k in kept], summary["last_value"]["test_mse"], out / "curves.png", title=title)
        plot_forecast(kept[0][1], experiment.windows, split, out / "forecast.png", names=signal.node_names,
                      title=f"{title}: run 0 on the test period")
        payload["plots"] = [str(out / "curves.png"), str(out / "forecast.png")]
    if args.json:
        print_json(payload)
        return 0
    floor = summary["last_value"]
    print(f"test MSE: {summary['test_mean']:.4f} ± {summary['test_std']:.4f} over {summary['num_runs']} run(s) (MAE "
          f"{summary['test_mae_mean']:.4f} ± {summary['test_mae_std']:.4f}; validation MSE {summary['val_mean']:.4f}; "
          f"{1000 * summary['seconds_per_epoch']:.0f} ms/epoch); last-value forecast: test MSE {floor['test_mse']:.4f}, "
          f"MAE {floor['test_mae']:.4f}" + ("" if summary["beats_last_value"] else " (NOT beaten by every run)"))
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}" + "".join(f", {p}" for p in payload.get("plots", [])))
    return 0
