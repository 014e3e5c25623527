"""``diffusion-pde train``: train a DIFFormer model or an MPNN baseline on a node-classification
dataset (built in, or your own graph) over several splits and initialisations; report the test
score (accuracy, or ROC-AUC on two-class graphs) at the best validation epoch as mean ± std, with
checkpoints, resume, JSON/CSV metrics and plots. ``diffusion-pde predict`` uses the trained model."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from torch_geometric.data import Data

import solvers

from ..data import (DATASETS, INSTANCE_DATASETS, KNN_METRICS, SPLIT_KINDS, SYNTHETIC_DEFAULTS, available_datasets,
                    dataset_source, open_dataset)
from ..data.temporal import is_temporal
from ..models import MODELS, ModelConfig
from ..models.config import DISCRETE_SETTINGS, QK_NORMS, model_uses
from ..training import MODEL_DEFAULTS, PRESETS, TrainConfig, prepare_experiment, resolve
from ..training.config import DATASET_DEFAULTS
from ..training.distributed import initialise, local_device, shutdown
from ..training.metrics import METRIC_LABELS, METRICS
from ..training.plots import plot_attention, plot_learning_curves
from ._common import HelpFormatter, count_or_fraction, flag_names, print_json, resolve_device, usage_errors
from .forecast import add_forecasting_arguments, train_forecasting
from .sequence import (SEQUENCE_ONLY_MODELS, add_sequence_arguments, check_no_sequence_flags, is_sequence_task,
                       train_sequence_task)

_FIELD_DEFAULTS = {f.name: f.default for config in (ModelConfig, TrainConfig) for f in dataclasses.fields(config)}
_SHOWN = {None: "none", True: "on", False: "off"}
_TRAIN_SETTINGS = {f.name for f in dataclasses.fields(TrainConfig)}


def _shown(value: Any) -> str:
    return _SHOWN[value] if value is None or isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def setting_default(name: str) -> str:
    """The real default of setting ``name`` before a preset, per model (from :data:`MODEL_DEFAULTS`;
    only the models that use it) and per dataset (the dataset defaults), the default model's
    value first."""
    by_value: dict[str, list[str]] = {}
    users = [model for model in MODELS if name in _TRAIN_SETTINGS or model_uses(model, name)]
    for model in users:
        by_value.setdefault(_shown(MODEL_DEFAULTS[model].get(name, _FIELD_DEFAULTS[name])), []).append(model)
    if len(by_value) == 1:
        by_value = {value: [] for value in by_value}
    for dataset, settings in DATASET_DEFAULTS.items():
        if name in settings:
            by_value.setdefault(_shown(settings[name]), []).append(dataset)
    unused = [model for model in MODELS if model not in users]
    return "default: " + "; ".join(value + (f" for {', '.join(users)}" if users else "") for value, users in by_value.items()) \
        + (f"; not used by {', '.join(unused)}" if unused else "")


def _setting(group: argparse._ArgumentGroup, flag: str, help: str, **kwargs: Any) -> None:
    """A flag for a model/training setting (None on the command line = not given), its help
    ending with the setting's real default."""
    action = group.add_argument(flag, default=None, help=help, **kwargs)
    action.help = f"{help} ({setting_default(action.dest)})"


def add_model_arguments(p: argparse.ArgumentParser, extra_models: tuple[str, ...] = ()) -> None:
    """Model, data and optimisation flags shared by ``train`` and ``sweep`` (``extra_models``: the
    sequence models that ``train`` also offers)."""
    p.add_argument("--dataset", default="cora", metavar="NAME|PATH",
                   help=f"a built-in dataset ({', '.join(available_datasets())}; cora is embedded, synthetic is "
                        "generated (--num-nodes); digits (in scikit-learn), fashion-mnist and 20newsgroups are "
                        "instances without a graph (--knn builds one); the others are read from --root) or your own "
                        "graph: a saved "
                        "torch_geometric Data (.pt) or a folder with edge_index, x, y [and train/val/test_mask] as .csv "
                        "or .npy files (see docs/training.md)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="built-in datasets: folder with the PyG raw files (<root>/Planetoid/CiteSeer/raw/..., e.g. "
                        "../shared/data), OGB's (<root>/ogbn_arxiv/raw/..., split/...) or LINKX's pokec.mat; only read, "
                        "copied to the cache first; nothing is downloaded when it is given (default: download into the "
                        "cache; pokec is never downloaded)")
    p.add_argument("--num-nodes", type=int, default=None, metavar="N",
                   help=f"--dataset synthetic: the number of nodes of the generated graph (default: "
                        f"{SYNTHETIC_DEFAULTS['num_nodes']}; the other settings are synthetic_graph's defaults, see "
                        "docs/scale.md)")
    i = p.add_argument_group("datasets without a graph (digits, fashion-mnist, 20newsgroups; docs/training.md)")
    i.add_argument("--num-instances", type=int, default=None, metavar="N",
                   help="keep a seeded random subset of N instances (default: all; 15000 on fashion-mnist)")
    i.add_argument("--pca", type=int, default=None, metavar="D",
                   help="reduce the features to D principal components (scikit-learn's PCA; default: none)")
    i.add_argument("--knn", type=int, default=None, metavar="K",
                   help="build the k-nearest-neighbour graph of the features (undirected, exact): the graph of gcn, "
                        "gat, sgc, appnp and of the attention models' graph term (default: no graph; attention then "
                        "diffuses over all instances, --no-graph)")
    i.add_argument("--knn-metric", default=None, choices=KNN_METRICS,
                   help="the distance of --knn (default: euclidean, as the DIFFormer authors)")
    p.add_argument("--model", default="difformer_s", choices=(*MODELS, *extra_models),
                   help="the propagation rule" + (f" ({', '.join(extra_models)}: sequence classification)" if extra_models else ""))
    _setting(p, "--depth", "discrete: --layers Euler layers with own weights; continuous: one field integrated over "
                           "[0, --t1] with the solver flags below", choices=("discrete", "continuous"))
    p.add_argument("--preset", default=None, choices=PRESETS,
                   help="paper: our recommended DIFFormer settings for Cora/CiteSeer (the authors' settings, plus "
                        "the source term except for Cora DIFFormer-s, which is their model exactly: tuned on split "
                        "seeds 10-19, see docs/results.md); authors: their released code exactly (q/k biases, torch's "
                        "encoder init, no additions); both replace the defaults below (explicit flags still win; "
                        "default: no preset)")
    m = p.add_argument_group("model (defaults: the model's usual settings, see docs/training.md; --preset paper "
                             "replaces them)")
    _setting(m, "--layers", "number of layers L (SGC/APPNP: K steps)", dest="num_layers", type=int)
    _setting(m, "--hidden", "hidden width", type=int)
    _setting(m, "--heads", "attention heads", type=int)
    _setting(m, "--tau", "Euler step of a discrete layer: Z <- (1-tau) Z + tau P(Z)", type=float)
    _setting(m, "--dropout", "dropout rate (where each model applies it: docs/training.md)", type=float)
    _setting(m, "--input-dropout", "attention models and mlp: dropout on the input features, before the encoder",
             type=float)
    _setting(m, "--graph", "add the input graph's GCN term to the attention", dest="use_graph",
             action=argparse.BooleanOptionalAction)
    _setting(m, "--graph-weight", "mix the graph term with weight W in (0,1) instead of summing it (none: summed)",
             type=float, metavar="W")
    _setting(m, "--source-weight", "source term mu (Z0 - Z), mu in [0,1)", type=float, metavar="MU")
    _setting(m, "--qk-norm", "row: per-node unit q, k (the paper); global: one Frobenius norm (the authors' code)",
             choices=QK_NORMS)
    _setting(m, "--value-proj", "per-layer value projection W_v", action=argparse.BooleanOptionalAction)
    _setting(m, "--layer-norm", "LayerNorm after encoder and layers", action=argparse.BooleanOptionalAction)
    _setting(m, "--qk-bias", "biases on W_q and W_k (the authors' code has them)", action=argparse.BooleanOptionalAction)
    _setting(m, "--encoder-bias", "the encoder bias at initialisation: zero, or torch's uniform U(+-1/sqrt(fan_in)) "
                                  "(the authors' code)", choices=("zero", "uniform"))
    c = p.add_argument_group("continuous depth (only with --depth continuous)")
    _setting(c, "--method", "integrator", choices=solvers.available_methods())
    _setting(c, "--t1", "integration time T", type=float, metavar="T")
    _setting(c, "--n-steps", "fixed-step methods: steps over [0, T]", type=int)
    _setting(c, "--rtol", "adaptive methods: relative tolerance", type=float)
    _setting(c, "--atol", "adaptive methods: absolute tolerance", type=float)
    _setting(c, "--adjoint", "adaptive methods: gradients by the adjoint method", action="store_true")
    t = p.add_argument_group("training")
    _setting(t, "--epochs", "the most epochs", type=int)
    _setting(t, "--lr", "Adam's learning rate", type=float)
    _setting(t, "--weight-decay", "Adam's (L2) weight decay", type=float)
    _setting(t, "--patience", "stop after this many epochs without a better validation score (none: never)", type=int)
    _setting(t, "--metric", "the score that picks the epoch and is reported", choices=METRICS)
    _setting(t, "--checkpoint-every", "write last.pt every this many epochs", type=int)
    _setting(t, "--batch-size", "mini-batches: shuffle the nodes into random partitions of at most B nodes every epoch "
             "and take one step per partition on its induced subgraph (none: full batch); needed with torchrun",
             type=int, metavar="B")
    s = p.add_argument_group("splits")
    s.add_argument("--split", default=None, choices=SPLIT_KINDS,
                   help="random (training nodes per class, then validation and test nodes), public (Planetoid), "
                        "geom-gcn (10 fixed 60/20/20 splits), fixed (the splits stored with the data: "
                        "minesweeper/tolokers, OGB's official split, pokec's 5 LINKX 50/25/25 splits, or the masks of "
                        "your own graph) or grand (GRAND's protocol, on cora, citeseer, pubmed and your own graph: the "
                        "graph is cut to its largest connected component, which alone is trained and evaluated on; "
                        "--development-size random nodes of it, of which --train-per-class per class train and the "
                        "rest validate; all other nodes test) (default: random on cora, citeseer, pubmed, synthetic; "
                        "fixed on minesweeper, tolokers, ogbn-*, pokec and on your own graph when it has masks, else "
                        "random; geom-gcn elsewhere)")
    s.add_argument("--train-per-class", "--labels-per-class", dest="per_class", type=count_or_fraction, default=None,
                   metavar="N|FRACTION",
                   help="random and grand splits: training nodes per class, a count or (random splits) a fraction of "
                        "each class's nodes (default: 20 on built-in datasets, as in the paper, and on grand splits; "
                        "10 on digits and fashion-mnist, 100 on 20newsgroups; "
                        "0.5 on synthetic, ogbn-arxiv, ogbn-products; on your own graph min(20, half the smallest "
                        "class))")
    s.add_argument("--development-size", dest="num_development", type=count_or_fraction, default=None,
                   metavar="N|FRACTION",
                   help="grand splits: development nodes (training and validation), a count or a fraction of the "
                        "largest connected component's nodes (default: 1500, GRAND's)")
    s.add_argument("--val-size", dest="num_val", type=count_or_fraction, default=None, metavar="N|FRACTION",
                   help="random splits: validation nodes, a count or a fraction of the nodes left after the training "
                        "nodes (default: 500 on built-in datasets; 1000 on fashion-mnist and 20newsgroups, 300 on "
                        "digits; 0.5 on synthetic, ogbn-arxiv, ogbn-products and on your own graph)")
    s.add_argument("--test-size", dest="num_test", type=count_or_fraction, default=None, metavar="N|FRACTION",
                   help="random splits: test nodes, as --val-size (default: 1000 on built-in datasets; every node "
                        "left on digits, fashion-mnist and 20newsgroups; 0.5 on synthetic, ogbn-arxiv, ogbn-products "
                        "and on your own graph)")
    s.add_argument("--splits", type=int, default=1, help="number of splits K (random: split seeds F..F+K-1)")
    s.add_argument("--first-split", type=int, default=0, metavar="F",
                   help="index of the first split; e.g. tune on --first-split 10, report on 0..K-1")
    s.add_argument("--runs", type=int, default=1, help="initialisations R per split")
    s.add_argument("--seed", type=int, default=0, help="run r on split s uses torch seed SEED + 1000 s + r")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)")


SETTING_FLAGS = ("depth", "num_layers", "hidden", "heads", "tau", "dropout", "input_dropout", "use_graph", "graph_weight", "source_weight",
                 "qk_norm", "qk_bias", "encoder_bias", "value_proj", "layer_norm", "method", "t1", "n_steps", "rtol", "atol", "adjoint", "epochs",
                 "lr", "weight_decay", "patience", "checkpoint_every", "metric", "batch_size")
SOLVER_FLAGS = {"method": "--method", "t1": "--t1", "n_steps": "--n-steps", "rtol": "--rtol", "atol": "--atol",
                "adjoint": "--adjoint"}
SIZE_FLAGS = ("per_class", "num_val", "num_test", "num_development")


def settings_from_args(args: argparse.Namespace, **changes: Any) -> tuple[ModelConfig, TrainConfig]:
    """(ModelConfig, TrainConfig) from the flags, the preset and the model's defaults (``changes``
    win over the flags); a flag the model would ignore is refused (:func:`check_used`)."""
    overrides = {name: getattr(args, name) for name in SETTING_FLAGS}
    if overrides["use_graph"] is None and args.dataset in INSTANCE_DATASETS and args.knn is None:
        overrides["use_graph"] = False  # no input graph: attention alone diffuses over all instances
    overrides.update(changes)
    model_config, train_config = resolve(args.dataset, args.model, args.preset, **overrides)
    given = [flag for name, flag in SOLVER_FLAGS.items() if getattr(args, name) is not None]
    if given and model_config.depth != "continuous":
        raise ValueError(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} the integrator of a continuous-depth "
                         f"model, but this {model_config.model} model is discrete: add --depth continuous or drop "
                         f"{', '.join(given)}")
    if model_config.is_adaptive and args.n_steps is not None:
        raise ValueError(f"--n-steps counts the steps of a fixed-step method, but --method {model_config.method} is "
                         "adaptive (its steps follow --rtol/--atol): drop --n-steps or choose a fixed-step method")
    fixed_only = [flag for name, flag in SOLVER_FLAGS.items() if name in ("rtol", "atol") and getattr(args, name) is not None]
    if not model_config.is_adaptive and fixed_only:
        raise ValueError(f"{', '.join(fixed_only)} appl{'ies' if len(fixed_only) == 1 else 'y'} to adaptive methods, but "
                         f"--method {model_config.method} takes fixed steps (--n-steps): drop "
                         f"{'it' if len(fixed_only) == 1 else 'them'} or choose an adaptive method such as dopri5")
    check_used(args, model_config)
    return model_config, train_config


def check_used(args: argparse.Namespace, model_config: ModelConfig) -> None:
    """Refuse a model flag given on the command line that ``model_config``'s model does not use
    (:meth:`ModelConfig.used_settings`); settings from defaults and presets are not checked."""
    used = model_config.used_settings()
    for name in SETTING_FLAGS:
        value = getattr(args, name)
        if value is None or name in used or name in _TRAIN_SETTINGS:
            continue
        setting = args.flags[name]
        flag = setting if value is not False else "--no-" + setting[2:]
        model = model_config.model
        if not model_uses(model, name):
            users = ", ".join(m for m in MODELS if model_uses(m, name))
            raise ValueError(f"{flag}: model {model} does not use {setting}, so it would be ignored; drop {flag}, or "
                             f"choose a model that uses it ({users})")
        if name in DISCRETE_SETTINGS:
            raise ValueError(f"{flag}: {setting} sets the discrete layers, but this {model} model has --depth continuous "
                             "(it integrates over [0, --t1]), so it would be ignored; drop it or use --depth discrete")
        raise ValueError(f"{flag}: {setting} weighs the graph term, which --no-graph turns off, so it would be "
                         "ignored; drop one of them")


def dataset_key(dataset: str) -> str:
    """``dataset`` as a short name (for the default ``--out``): a built-in name as it is, a path by
    its file or folder name."""
    if dataset in DATASETS:
        return dataset
    path = Path(dataset).resolve()
    return path.stem if path.suffix in (".pt", ".pth") else path.name


INSTANCE_FLAGS = ("num_instances", "pca", "knn", "knn_metric")


def dataset_arg(args: argparse.Namespace) -> str | Data:
    """``--dataset``, or with ``--num-nodes`` the synthetic graph of that size, or with the flags of
    the datasets without a graph (``--num-instances``, ``--pca``, ``--knn``, ``--knn-metric``)
    that dataset so prepared (loaded here: the experiment takes the ``Data``, which remembers how
    to load it again)."""
    options = {name: getattr(args, name) for name in INSTANCE_FLAGS if getattr(args, name) is not None}
    if options:
        if args.num_nodes is not None:
            raise ValueError("--num-nodes sizes the generated synthetic graph, the other dataset flags prepare the "
                             "datasets without a graph: drop one of them")
        return open_dataset(args.dataset, root=args.root, **options)
    if args.num_nodes is None:
        return args.dataset
    if args.dataset != "synthetic":
        raise ValueError(f"--num-nodes sets the size of the generated graph of --dataset synthetic, but dataset "
                         f"{args.dataset!r} has its own size: drop --num-nodes")
    return open_dataset("synthetic", root=args.root, num_nodes=args.num_nodes)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train a DIFFormer model or a baseline on node classification",
                            description=__doc__, formatter_class=HelpFormatter)
    add_model_arguments(p, SEQUENCE_ONLY_MODELS)
    add_forecasting_arguments(p)
    add_sequence_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, metavar="DIR",
                   help="results and checkpoints; a new or empty folder, or one of our results folders (default: "
                        "runs/DATASET-MODEL-DEPTH)")
    o.add_argument("--resume", action="store_true",
                   help="continue the runs in --out from their last checkpoints (with a larger --epochs, finished "
                        "runs train on to it)")
    o.add_argument("--overwrite", action="store_true",
                   help="start over: first delete the files diffusion-pde wrote in --out (only those; a folder without "
                        "its .diffusion-pde-run marker, the current and the home folder are refused)")
    o.add_argument("--eval-solvers", nargs="+", default=(), metavar="SPEC",
                   help="continuous depth: also evaluate the trained weights with other solvers, e.g. euler:4 "
                        "dopri5 dopri5:rtol=1e-6:atol=1e-8 (fields after the second are named)")
    o.add_argument("--plot", action="store_true", help="save curves.png (and attention.png for attention models) in --out")
    o.add_argument("--json", action="store_true", help="print the results as JSON")
    o.add_argument("--quiet", action="store_true", help="no progress bars or per-run lines")
    p.set_defaults(run=run, flags=flag_names(p))


def run(args: argparse.Namespace) -> int:
    """Train (in every process of a torchrun launch: they form one data-parallel group)."""
    try:
        return _train(args)
    finally:
        shutdown()


def _train(args: argparse.Namespace) -> int:
    if is_sequence_task(args):
        return train_sequence_task(args)
    if args.model in SEQUENCE_ONLY_MODELS:
        with usage_errors(args.flags):
            raise ValueError(f"--model {args.model} classifies sequences (--task sequence, a sequence dataset); node "
                             "classification has " + ", ".join(MODELS))
    with usage_errors(args.flags):
        check_no_sequence_flags(args)
    if is_temporal(args.dataset) or args.lags is not None:
        return train_forecasting(args)
    with usage_errors(args.flags):
        model_config, train_config = settings_from_args(args)
        device = local_device(resolve_device(args.device))
        distribution = initialise(device)
        out = Path(args.out) if args.out else Path("runs") / f"{dataset_key(args.dataset)}-{args.model}-{model_config.depth}"
        experiment = prepare_experiment(
            dataset_arg(args), model_config, train_config, split=args.split, splits=args.splits, runs=args.runs,
            first_split=args.first_split, seed=args.seed, root=args.root, device=device, out=out, resume=args.resume,
            overwrite=args.overwrite, eval_solvers=args.eval_solvers, distribution=distribution,
            **{name: getattr(args, name) for name in SIZE_FLAGS},
        )
    data, first = experiment.data, next(iter(experiment.node_splits.values()))
    main = distribution.is_main
    log = (lambda line: None) if (args.quiet or args.json or not main) else print
    weighted = " (weighted)" if getattr(data, "edge_weight", None) is not None else ""
    batches = "full batch" if train_config.batch_size is None else f"mini-batches of <= {train_config.batch_size} nodes"
    processes = f" x {distribution.world_size} processes" if distribution.grouped else ""
    component = ", its largest connected component" if dataset_source(data).get("largest_component") else ""
    log(f"{data.name}{component} ({data.num_nodes} nodes, {data.edge_index.shape[1]} edges{weighted}, "
        f"{data.x.shape[1]} features): "
        f"{args.model} ({model_config.describe()}), {train_config.epochs} epochs, lr {train_config.lr}, "
        f"weight decay {train_config.weight_decay}, {batches}; {args.splits} {experiment.split} split(s) from index "
        f"{args.first_split} ({first.train.numel()} training, {first.val.numel()} validation, {first.test.numel()} "
        f"test nodes) x {args.runs} run(s) on {device}{processes}")
    kept: list[Any] = []
    payload = experiment.run(progress=False if args.quiet else None, log=log,
                             on_run=lambda result, model, node_split: kept.append((result, model, node_split)))
    if not main:
        return 0
    if args.plot:
        results = [k[0] for k in kept]
        plot_learning_curves(results, out / "curves.png", title=f"{data.name} {args.model} ({model_config.depth})")
        payload["plots"] = [str(out / "curves.png")]
        if model_config.model in ("difformer_s", "difformer_a", "transformer"):
            result, model, node_split = kept[0]
            plot_attention(model, data, node_split, out / "attention.png")
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
          "".join(f", {p}" for p in payload.get("plots", [])) +
          f"; predict with: diffusion-pde predict {experiment.run_dir(next(iter(experiment.node_splits)), 0)} "
          "--out predictions.csv")
    return 0
