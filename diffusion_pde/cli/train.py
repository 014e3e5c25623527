"""``diffusion-pde train``: train a DIFFormer model or an MPNN baseline on a node-classification
dataset over several splits and initialisations; report the test score (accuracy, or ROC-AUC on
two-class graphs) at the best validation epoch as mean ± std, with checkpoints, resume, JSON/CSV metrics and plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import solvers

from ..data import SPLIT_KINDS, available_datasets
from ..models import MODELS
from ..models.config import QK_NORMS
from ..training import PRESETS, prepare_experiment, resolve
from ..training.metrics import METRIC_LABELS, METRICS
from ..training.plots import plot_attention, plot_learning_curves
from ._common import flag_names, print_json, resolve_device, usage_errors


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Model and optimisation flags shared by ``train`` and ``sweep`` (None = preset/default)."""
    p.add_argument("--dataset", default="cora", choices=available_datasets(),
                   help="cora is embedded (offline); the others are read from --root")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="folder with the PyG raw files (<root>/Planetoid/CiteSeer/raw/..., e.g. ../shared/data); "
                        "only read, copied to the cache first; omit to download")
    p.add_argument("--model", default="difformer_s", choices=MODELS)
    p.add_argument("--depth", default=None, choices=("discrete", "continuous"),
                   help="discrete: --layers Euler layers with own weights; continuous: one field integrated over [0, --t1]")
    p.add_argument("--preset", default=None, choices=PRESETS,
                   help="paper: the DIFFormer authors' settings for Cora/CiteSeer (explicit flags still win)")
    m = p.add_argument_group("model (defaults: the model's usual settings, see docs/training.md)")
    m.add_argument("--layers", dest="num_layers", type=int, default=None, help="number of layers L (SGC/APPNP: K steps)")
    m.add_argument("--hidden", type=int, default=None, help="hidden width")
    m.add_argument("--heads", type=int, default=None, help="attention heads")
    m.add_argument("--tau", type=float, default=None, help="Euler step of a discrete layer: Z <- (1-tau) Z + tau P(Z)")
    m.add_argument("--dropout", type=float, default=None)
    m.add_argument("--input-dropout", type=float, default=None,
                   help="attention models and mlp: dropout on the input features, before the encoder")
    m.add_argument("--graph", dest="use_graph", action=argparse.BooleanOptionalAction, default=None,
                   help="add the input graph's GCN term to the attention")
    m.add_argument("--graph-weight", type=float, default=None, metavar="W",
                   help="mix the graph term with weight W in (0,1) instead of summing it")
    m.add_argument("--source-weight", type=float, default=None, metavar="MU", help="source term mu (Z0 - Z), mu in [0,1)")
    m.add_argument("--qk-norm", default=None, choices=QK_NORMS,
                   help="row: per-node unit q, k (the paper); global: one Frobenius norm (the authors' code)")
    m.add_argument("--value-proj", action=argparse.BooleanOptionalAction, default=None, help="per-layer value projection W_v")
    m.add_argument("--layer-norm", action=argparse.BooleanOptionalAction, default=None, help="LayerNorm after encoder and layers")
    m.add_argument("--method", default=None, choices=solvers.available_methods(), help="continuous depth: integrator")
    m.add_argument("--t1", type=float, default=None, metavar="T", help="continuous depth: integration time T")
    m.add_argument("--n-steps", type=int, default=None, help="continuous depth, fixed-step methods: steps over [0, T]")
    m.add_argument("--rtol", type=float, default=None, help="continuous depth, adaptive methods")
    m.add_argument("--atol", type=float, default=None, help="continuous depth, adaptive methods")
    m.add_argument("--adjoint", action="store_true", default=None, help="continuous depth, adaptive methods: adjoint gradients")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--patience", type=int, default=None, help="stop after this many epochs without a better validation score")
    t.add_argument("--metric", choices=METRICS, default=None,
                   help="the score that picks the epoch and is reported (default: roc_auc on minesweeper and tolokers, "
                        "accuracy elsewhere)")
    t.add_argument("--checkpoint-every", type=int, default=None, help="write last.pt every this many epochs")
    t.add_argument("--split", default=None, choices=SPLIT_KINDS,
                   help="random (20 per class, 500 val, 1000 test; default for cora/citeseer/pubmed), public, "
                        "geom-gcn (10 fixed 60/20/20 splits; default elsewhere) or fixed")
    t.add_argument("--splits", type=int, default=1, help="number of splits K (random: split seeds F..F+K-1)")
    t.add_argument("--first-split", type=int, default=0, metavar="F",
                   help="index of the first split; e.g. tune on --first-split 10, report on 0..K-1")
    t.add_argument("--runs", type=int, default=1, help="initialisations R per split")
    t.add_argument("--seed", type=int, default=0, help="run r on split s uses torch seed SEED + 1000 s + r")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")


SETTING_FLAGS = ("depth", "num_layers", "hidden", "heads", "tau", "dropout", "input_dropout", "use_graph", "graph_weight", "source_weight",
                 "qk_norm", "value_proj", "layer_norm", "method", "t1", "n_steps", "rtol", "atol", "adjoint", "epochs",
                 "lr", "weight_decay", "patience", "checkpoint_every", "metric")


def settings_from_args(args: argparse.Namespace, **changes: Any):
    """(ModelConfig, TrainConfig) from the flags, the preset and the model's defaults."""
    overrides = {name: getattr(args, name) for name in SETTING_FLAGS}
    overrides.update(changes)
    return resolve(args.dataset, args.model, args.preset, **overrides)


def default_split(dataset: str) -> str:
    return "random" if dataset in ("cora", "citeseer", "pubmed") else ("fixed" if dataset in ("minesweeper", "tolokers") else "geom-gcn")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train a DIFFormer model or a baseline on node classification",
                            description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, metavar="DIR", help="results and checkpoints (default runs/DATASET-MODEL-DEPTH)")
    o.add_argument("--resume", action="store_true", help="continue the runs in --out from their last checkpoints")
    o.add_argument("--overwrite", action="store_true", help="delete --out first")
    o.add_argument("--eval-solvers", nargs="+", default=(), metavar="SPEC",
                   help="continuous depth: also evaluate the trained weights with other solvers, e.g. euler:4 euler:32 dopri5")
    o.add_argument("--plot", action="store_true", help="save curves.png (and attention.png for attention models) in --out")
    o.add_argument("--json", action="store_true", help="print the results as JSON")
    o.add_argument("--quiet", action="store_true", help="no progress bars or per-run lines")
    p.set_defaults(run=run, flags=flag_names(p))


def run(args: argparse.Namespace) -> int:
    with usage_errors(args.flags):
        model_config, train_config = settings_from_args(args)
        split = args.split or default_split(args.dataset)
        device = resolve_device(args.device)
        out = Path(args.out) if args.out else Path("runs") / f"{args.dataset}-{args.model}-{model_config.depth}"
        experiment = prepare_experiment(
            args.dataset, model_config, train_config, split=split, splits=args.splits, runs=args.runs,
            first_split=args.first_split, seed=args.seed, root=args.root, device=device, out=out, resume=args.resume,
            overwrite=args.overwrite, eval_solvers=args.eval_solvers,
        )
    log = (lambda line: None) if (args.quiet or args.json) else print
    log(f"{args.dataset}: {args.model} ({model_config.describe()}), {train_config.epochs} epochs, lr {train_config.lr}, "
        f"weight decay {train_config.weight_decay}; {args.splits} {split} split(s) from index {args.first_split} x "
        f"{args.runs} run(s) on {device}")
    kept: list[Any] = []
    payload = experiment.run(progress=False if args.quiet else None, log=log,
                             on_run=lambda result, model, node_split: kept.append((result, model, node_split)))
    if args.plot:
        results = [k[0] for k in kept]
        plot_learning_curves(results, out / "curves.png", title=f"{args.dataset} {args.model} ({model_config.depth})")
        payload["plots"] = [str(out / "curves.png")]
        if model_config.model in ("difformer_s", "difformer_a", "transformer"):
            result, model, node_split = kept[0]
            plot_attention(model, experiment.data, node_split, out / "attention.png")
            payload["plots"].append(str(out / "attention.png"))
    if args.json:
        print_json(payload)
        return 0
    s = payload["summary"]
    print(f"test {METRIC_LABELS[s['metric']]}: {s['test_mean']:.1f} ± {s['test_std']:.1f} % over {s['num_runs']} run(s) "
          f"(validation {s['val_mean']:.1f} ± {s['val_std']:.1f}; {1000 * s['seconds_per_epoch']:.0f} ms/epoch)")
    for spec, (mean, std) in s.get("solvers", {}).items():
        print(f"  same weights integrated with {spec}: test {METRIC_LABELS[s['metric']]} {mean:.1f} ± {std:.1f} %")
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}" +
          "".join(f", {p}" for p in payload.get("plots", [])))
    return 0
