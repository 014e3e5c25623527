"""``diffusion-pde predict``: per-node class probabilities (and hidden states) of a trained run.

The model is rebuilt from the run's ``best.pt`` (its settings, weights and the identity of the
dataset it was trained on); its graph operators are built from the graph predicted on: the run's
own dataset, or ``--dataset`` (a built-in name or your own graph, with as many features per node as
the training graph; labels are not needed). A run trained on a largest connected component
(``--split grand``) predicts on that component of its own dataset; ``--dataset`` is taken whole.
The CSV has one row per node: ``node`` (its index in the dataset), ``predicted``
(the most probable class), ``p_0`` .. ``p_{C-1}`` and, with ``--embeddings``, ``h_0`` .. ``h_{d-1}``,
the last state before the decoder: the final hidden state for difformer_s, difformer_a and
transformer, the encoder's output for mlp, and the class scores (logits) for gcn, gat and appnp
(for sgc without its bias), whose last step works on class scores. It is written atomically.
``--chunk-size N`` evaluates N nodes at a time (same predictions, bounded memory) for a graph
too large for one forward pass.
"""

from __future__ import annotations

import argparse

from ..data import open_dataset
from ..models import check_chunkable
from ..training.inference import PREDICTIONS_FILE, load_model, predict, read_checkpoint, run_dataset, write_predictions
from ..training.outputs import check_output_file
from ._common import HelpFormatter, flag_names, print_json, resolve_device, usage_errors


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("predict", help="predict node classes with a trained run", description=__doc__,
                            formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN",
                   help="a trained run: its folder (runs/NAME/split0/run0, holding best.pt), a results folder with a "
                        "single run, or a checkpoint file")
    p.add_argument("--dataset", default=None, metavar="NAME|PATH",
                   help="the graph to predict on: a built-in name, a saved Data (.pt) or a folder of edge_index, x "
                        "[, y] .csv/.npy files, with the training graph's features (default: the run's own dataset)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="with --dataset NAME: the folder with the PyG raw files (default: the run's own root for its "
                        "own dataset, else download)")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="the predictions (CSV, one row per node)")
    p.add_argument("--embeddings", action="store_true",
                   help="also write h_0..h_{d-1}, the last state before the decoder: the final hidden state "
                        "(difformer_s, difformer_a, transformer), the encoder's output (mlp), or the class scores "
                        "(gcn, gat, appnp; sgc before its bias)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is a predictions file written by diffusion-pde (its first line is "
                        "node,predicted,p_0,...; any other file is kept)")
    p.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help="evaluate N nodes at a time, for a graph whose one-shot forward pass does not fit in memory: "
                        "the same predictions, with memory beyond a few node-by-hidden states and the graph bounded "
                        "by N (discrete-depth difformer_s, gcn, sgc, appnp, mlp; continuous depth with a fixed-step "
                        "method) (default: all nodes at once)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(run=run, flags=flag_names(p))


def run(args: argparse.Namespace) -> int:
    with usage_errors(args.flags):
        out = check_output_file(args.out, "--out", args.overwrite, ours=PREDICTIONS_FILE)
        if args.root is not None and args.dataset is None:
            raise ValueError("--root goes with --dataset NAME; the run's own dataset is read from the root it was "
                             "trained with: drop --root or add --dataset")
        if args.chunk_size is not None and args.chunk_size < 1:
            raise ValueError(f"--chunk-size {args.chunk_size}: give a positive number of nodes per chunk (or leave it "
                             "out to predict all nodes at once)")
        device = resolve_device(args.device)
        path, ckpt = read_checkpoint(args.run_dir)
        data = run_dataset(ckpt) if args.dataset is None else \
            open_dataset(args.dataset, root=args.root, require_labels=False)
        model = load_model(path, data, device=device)
        if args.chunk_size is not None:
            check_chunkable(model)
    predictions = predict(model, data, chunk_size=args.chunk_size)
    write_predictions(predictions, out, embeddings=args.embeddings)
    num_nodes, num_classes = predictions.probabilities.shape
    summary = {"checkpoint": str(path), "epoch": ckpt["epoch"], "dataset": data.name, "num_nodes": num_nodes,
               "num_edges": int(data.edge_index.shape[1]),
               "num_classes": num_classes, "embeddings": args.embeddings, "chunk_size": args.chunk_size, "out": str(out)}
    if args.json:
        print_json(summary)
    else:
        print(f"{data.name}: {num_nodes} nodes, {int(data.edge_index.shape[1])} edges"
              f"{' (weighted)' if getattr(data, 'edge_weight', None) is not None else ''}, {num_classes} classes, predicted by {path} (epoch {ckpt['epoch']}); "
              f"written to {out}")
    return 0
