"""``diffusion-pde train --task sequence``: sequence classification (listops, mnist1d, digits-seq,
fashion-mnist-seq) with Linear Diffusion Networks (``--model ldn``) or the baselines
(``transformer``, ``lstm``, ``cnn``), with the outputs of node classification (results.json,
results.csv, history.csv, checkpoints, ``--resume``, ``--plot``)
(:mod:`diffusion_pde.training.sequences`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data.sequences import LISTOPS_DEFAULTS, SEQUENCE_DATASETS
from ..models.ldn import LDN_KERNELS, LDN_REACTIONS
from ..models.sequence import SEQUENCE_MODELS, SequenceModelConfig
from ..training.sequences import SequenceTrainConfig, prepare_sequences
from ._common import print_json, resolve_device, usage_errors

TASKS = ("node", "sequence")
SEQUENCE_ONLY_MODELS = tuple(m for m in SEQUENCE_MODELS if m != "transformer")
# train flags shared with node classification that sequence classification reads: (dest, config field)
_MODEL_FLAGS = {"num_layers": "num_layers", "hidden": "hidden", "heads": "heads", "dropout": "dropout",
                "depth": "depth", "method": "method", "t1": "t1", "n_steps": "n_steps"}
_TRAIN_FLAGS = ("epochs", "lr", "weight_decay", "patience", "checkpoint_every", "batch_size")
# node-classification flags with no meaning here: (dest, the value that means "not given")
_NOT_FOR_SEQUENCES = (("split", None), ("splits", 1), ("first_split", 0), ("per_class", None),
                      ("num_development", None), ("metric", None), ("eval_solvers", ()), ("num_nodes", None),
                      ("pca", None), ("knn", None), ("knn_metric", None), ("preset", None), ("tau", None),
                      ("input_dropout", None), ("use_graph", None), ("graph_weight", None), ("source_weight", None),
                      ("qk_norm", None), ("qk_bias", None), ("encoder_bias", None), ("value_proj", None),
                      ("layer_norm", None), ("rtol", None), ("atol", None), ("adjoint", None), ("lags", None))


def add_sequence_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of sequence classification (``train`` only)."""
    p.add_argument("--task", default=None, choices=TASKS,
                   help="node: node classification (and forecasting on the temporal datasets); sequence: sequence "
                        f"classification on {', '.join(SEQUENCE_DATASETS)} (default: from --dataset)")
    q = p.add_argument_group("sequence classification (--task sequence; docs/training.md)")
    q.add_argument("--kernel", default=None, choices=LDN_KERNELS,
                   help="ldn: the position diffusivity K (default: sequence_window)")
    q.add_argument("--window", type=int, default=None, metavar="W",
                   help="ldn with sequence_window: the largest offset of the learned kernel (default: 4)")
    q.add_argument("--causal", action="store_true", default=None,
                   help="ldn: a causal kernel (and reaction); needs --no-attention")
    q.add_argument("--reaction", default=None, choices=LDN_REACTIONS,
                   help="ldn: the local nonlinear update F: conv (a depthwise convolution, kernel 3), mlp (per token) or "
                        "none (default: conv, the better one on MNIST-1D validation)")
    q.add_argument("--attention", default=None, action=argparse.BooleanOptionalAction,
                   help="ldn: add DIFFormer-s attention over the tokens (default: on)")
    q.add_argument("--attention-dropout", type=float, default=None, metavar="P",
                   help="transformer: dropout on the attention weights (default: --dropout, as torch's "
                        "TransformerEncoderLayer; 0 lets the fused attention kernel train, ~5x faster on CPU at L = 750)")
    q.add_argument("--num-train", type=int, default=None, metavar="N",
                   help=f"listops: training sequences (default: {LISTOPS_DEFAULTS['num_train']})")
    q.add_argument("--min-length", type=int, default=None, metavar="L",
                   help=f"listops: the shortest sequence (default: {LISTOPS_DEFAULTS['min_length']})")
    q.add_argument("--max-length", type=int, default=None, metavar="L",
                   help=f"listops: the longest sequence (default: {LISTOPS_DEFAULTS['max_length']})")


# flags that only sequence classification reads
SEQUENCE_ONLY_FLAGS = ("kernel", "window", "causal", "reaction", "attention", "attention_dropout", "num_train",
                       "min_length", "max_length")


def check_no_sequence_flags(args: argparse.Namespace) -> None:
    """ValueError naming the sequence-classification flags given to a node or forecasting run."""
    given = [args.flags[name] for name in SEQUENCE_ONLY_FLAGS if getattr(args, name) is not None]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise ValueError(f"{', '.join(given)}: only sequence classification (--task sequence, a sequence dataset) "
                         f"reads {them}; dataset {args.dataset!r} with --model {args.model} does not: drop {them}")


def is_sequence_task(args: argparse.Namespace) -> bool:
    """Whether ``train`` was asked for sequence classification (by --task or the dataset)."""
    if args.task is not None:
        return args.task == "sequence"
    return args.dataset in SEQUENCE_DATASETS or args.model in SEQUENCE_ONLY_MODELS


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    listops_only = {"num_train": "--num-train", "min_length": "--min-length", "max_length": "--max-length"}
    for dest, flag in listops_only.items():
        if getattr(args, dest) is not None:
            if args.dataset != "listops":
                raise ValueError(f"{flag} sets the generated ListOps data; dataset {args.dataset!r} has its own: drop {flag}")
            options[dest] = getattr(args, dest)
    if args.num_val is not None:
        options["num_val"] = args.num_val
    if args.num_test is not None:
        if args.dataset == "mnist1d":
            raise ValueError("--test-size: MNIST-1D keeps its own 1,000 test sequences; drop --test-size")
        options["num_test"] = args.num_test
    if args.num_instances is not None:
        if args.dataset not in ("digits-seq", "fashion-mnist-seq"):
            raise ValueError(f"--num-instances keeps a subset of the images of the pixel-sequence datasets; "
                             f"{args.dataset!r} is not one: drop --num-instances")
        options["num_instances"] = args.num_instances
    return options


def sequence_settings(args: argparse.Namespace) -> tuple[SequenceModelConfig, SequenceTrainConfig]:
    """The configurations of the given flags (the others keep their defaults)."""
    if args.dataset not in SEQUENCE_DATASETS:
        asked = "--task sequence" if args.task == "sequence" else f"--model {args.model}"
        raise ValueError(f"{asked} classifies sequences, of the sequence datasets ({', '.join(SEQUENCE_DATASETS)}); "
                         f"dataset {args.dataset!r} is not one: choose one of them, or a node model for it")
    if args.model not in SEQUENCE_MODELS:
        raise ValueError(f"--model {args.model} is a node model; sequence classification has {', '.join(SEQUENCE_MODELS)}")
    given = [args.flags[name] for name, unset in _NOT_FOR_SEQUENCES if hasattr(args, name) and getattr(args, name) not in (unset, None)]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise ValueError(f"{', '.join(given)}: sequence classification does not use {them} (its split comes with the "
                         f"dataset; --runs trains seeds); drop {them}")
    if args.model != "ldn":
        ldn_only = [flag for flag, dest in (("--kernel", "kernel"), ("--window", "window"), ("--causal", "causal"),
                                            ("--reaction", "reaction"), ("--attention", "attention"))
                    if getattr(args, dest) is not None]
        if args.depth not in (None, "discrete"):
            ldn_only.append("--depth")
        if ldn_only:
            raise ValueError(f"{', '.join(ldn_only)} set(s) the LDN layers; --model {args.model} has none: drop them")
    model = {field: getattr(args, dest) for dest, field in _MODEL_FLAGS.items() if getattr(args, dest) is not None}
    if args.attention_dropout is not None and args.model != "transformer":
        raise ValueError(f"--attention-dropout is the transformer's dropout on its attention weights; "
                         f"--model {args.model} has none: drop it")
    model.update({name: getattr(args, name) for name in ("kernel", "window", "causal", "reaction", "attention",
                                                         "attention_dropout")
                  if getattr(args, name) is not None})
    train = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None}
    return SequenceModelConfig(model=args.model, **model), SequenceTrainConfig(**train)


def train_sequence_task(args: argparse.Namespace) -> int:
    """``train --task sequence``: check, train ``--runs`` seeds, write and report."""
    with usage_errors(args.flags):
        model_config, train_config = sequence_settings(args)
        device = resolve_device(args.device)
        out = Path(args.out) if args.out else Path("runs") / f"{args.dataset}-{args.model}-{model_config.depth}"
        experiment = prepare_sequences(args.dataset, model_config, train_config, runs=args.runs, seed=args.seed,
                                       root=args.root, device=device, out=out, resume=args.resume,
                                       overwrite=args.overwrite, data_options=_data_options(args))
    data = experiment.data
    log = (lambda line: None) if (args.quiet or args.json) else print
    sizes = f"{len(data.train)} / {len(data.val)} / {len(data.test)}"
    kind = f"vocabulary {data.vocab_size}" if data.vocab_size is not None else f"{data.channels} channel(s)"
    log(f"{data.name} ({len(data.y)} sequences of length {int(data.lengths.min())}-{data.max_length}, {kind}, "
        f"{data.num_classes} classes; {sizes} train / validation / test): {args.model} (hidden {model_config.hidden}, "
        f"{model_config.num_layers if model_config.depth == 'discrete' else 'continuous'} layers), "
        f"{train_config.epochs} epochs, batches of <= {train_config.batch_size}, lr {train_config.lr}; "
        f"{args.runs} run(s) on {device}")
    kept: list[Any] = []
    payload = experiment.run(progress=False if args.quiet else None, log=log,
                             on_run=lambda result, model: kept.append(result))
    if args.plot:
        from ..training.plots import plot_learning_curves

        plot_learning_curves(kept, out / "curves.png", title=f"{data.name} {args.model}")
        payload["plots"] = [str(out / "curves.png")]
    if args.json:
        print_json(payload)
        return 0
    summary = payload["summary"]
    print(f"test accuracy: {summary['test_mean']:.1f} ± {summary['test_std']:.1f} over {summary['num_runs']} run(s) "
          f"(validation {summary['val_mean']:.1f}; majority class {summary['chance']:.1f}; "
          f"{summary['seconds_per_epoch']:.1f} s/epoch; {payload['parameters']} parameters)")
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}" + "".join(f", {p}" for p in payload.get("plots", [])))
    return 0
