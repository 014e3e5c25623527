"""A trained model after training: rebuilt from its checkpoint, and its predictions.

``best.pt`` (and ``last.pt``) hold the model's settings, its input width and number of classes,
its weights and the identity of the dataset it was trained on (:func:`~diffusion_pde.data.
dataset_source`). :func:`load_model` rebuilds the model from them; its graph operators are built
from the graph it is given (the run's own dataset by default: for a run trained on a largest
connected component, ``--split grand``, that component), which must have as many features per
node as the training graph. :func:`predict` gives per-node class probabilities and the hidden
states before the decoder; :func:`write_predictions` writes them as CSV, atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ..data import largest_component, open_dataset, validate_graph_data
from ..models import ModelConfig, NodeClassifier, build_model, predict_chunked
from .checkpoint import load_checkpoint, write_text_atomic
from .loop import REBUILD_KEYS

def predictions_header(num_classes: int, width: int = 0) -> str:
    """The first line of a predictions file: ``node,predicted,p_0..p_{C-1}[,h_0..h_{d-1}]``."""
    return ",".join(["node", "predicted", *(f"p_{c}" for c in range(num_classes)), *(f"h_{k}" for k in range(width))])


def is_predictions_header(line: str) -> bool:
    """Whether ``line`` is, as a whole, the first line of a predictions file we write."""
    cells = line.split(",")
    return len(cells) > 2 and line == predictions_header(sum(c.startswith("p_") for c in cells),
                                                          sum(c.startswith("h_") for c in cells))


PREDICTIONS_FILE = ("a diffusion-pde predictions file (node,predicted,p_0,...)", is_predictions_header)


def find_checkpoint(run: str | Path) -> Path:
    """The checkpoint ``run`` names: a checkpoint file, a run folder holding ``best.pt``, or the
    results folder of an experiment with a single (split, run)."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise FileNotFoundError(f"run {run} does not exist; give a run folder (holding best.pt), a results folder with "
                                "one run, or a checkpoint file")
    if (run / "best.pt").is_file():
        return run / "best.pt"
    found = sorted(run.glob("split*/run*/best.pt"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"run {run} holds no best.pt (nor split*/run*/best.pt): it is not a finished "
                                "diffusion-pde run; give the folder of a trained run")
    shown = ", ".join(str(p.parent) for p in found[:4]) + (", ..." if len(found) > 4 else "")
    raise ValueError(f"run {run} holds {len(found)} runs ({shown}); give one of their folders")


# What a run of another task offers instead of predict/load_model.
_OTHER_TASKS = {
    "forecasting": "Its test forecasts are scored in results.json; plot them with diffusion-pde train ... --plot "
                   "(forecast.png).",
    "sequence classification": "Load it with diffusion_pde.training.sequences.load_sequence_model(run) and call "
                               "model(inputs, lengths).",
}


def read_checkpoint(run: str | Path, device: torch.device | str = "cpu") -> tuple[Path, dict[str, Any]]:
    """(path, contents) of the checkpoint ``run`` names, checked to hold what rebuilding needs
    (loaded with ``weights_only``: tensors and plain values only, no code runs)."""
    path = find_checkpoint(run)
    ckpt = load_checkpoint(path, device, keys=REBUILD_KEYS, weights_only=True,
                           remedy="train the run again (diffusion-pde train ... --overwrite), or use its other "
                                  "checkpoint (best.pt or last.pt) if that one is intact")
    task = ckpt["architecture"].get("task", "node classification") if isinstance(ckpt["architecture"], dict) else None
    if task in _OTHER_TASKS:
        raise ValueError(f"{path} is a {task} run; predict and load_model read node-classification runs. "
                         f"{_OTHER_TASKS[task]}")
    return path, ckpt


def run_dataset(ckpt: dict[str, Any], *, require_labels: bool = False) -> Data:
    """The dataset a checkpoint was trained on, loaded again from its identity (a built-in
    dataset with the same root, generated again with the same settings, or the same file or
    folder), restricted to its largest connected component when the run was (``--split grand``;
    ``n_id`` then holds each node's index in the whole dataset)."""
    source = ckpt["dataset"]
    component = source.get("largest_component", False)
    if source["kind"] == "builtin":
        data = open_dataset(source["name"], root=source["root"], require_labels=require_labels,
                            **source.get("options", {}))
    elif source["kind"] == "file":
        if not Path(source["path"]).exists():
            raise FileNotFoundError(f"the run was trained on {source['path']}, which no longer exists; give the graph "
                                    "to predict on (--dataset PATH, or data= in Python)")
        data = open_dataset(source["path"], require_labels=require_labels)
    else:
        part = " (its largest connected component: diffusion_pde.data.largest_component(data))" if component else ""
        raise ValueError(f"the run was trained on a Data built in Python ({source.get('name')!r}){part}, which was not "
                         "saved with it; give the graph to predict on (--dataset PATH, or data= in Python)")
    return largest_component(data) if component else data


def _prepared(data: Data, in_channels: int) -> Data:
    """``data`` checked for prediction: float32 features of the width the model was trained on."""
    data = validate_graph_data(data, where="data", dtype=torch.float32, require_labels=False)
    if data.x.shape[1] != in_channels:
        raise ValueError(f"data has {data.x.shape[1]} features per node but the model was trained on {in_channels}; "
                         "give a graph with the same features (same columns, same preparation)")
    return data


def load_model(run: str | Path, data: Data | None = None, *, device: torch.device | str = "cpu") -> NodeClassifier:
    """The trained model of ``run`` (a run folder, a results folder with one run, or a
    checkpoint file), in eval mode on ``device``, with its graph operators built from ``data``
    (default: the run's own dataset). Global random state is left as it was.

    Raises FileNotFoundError (no checkpoint), ValueError (a damaged checkpoint, naming the file;
    a graph with another number of features)."""
    path, ckpt = read_checkpoint(run, device)
    spec = ckpt["architecture"]
    graph = _prepared(run_dataset(ckpt) if data is None else data, spec["in_channels"])
    with torch.random.fork_rng(devices=[]):  # the initial weights drawn here are replaced at once
        model = build_model(ModelConfig(**spec["config"]), graph, num_classes=spec["num_classes"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(f"{path} does not match the model its settings describe ({str(err).splitlines()[0]}); it "
                         "is damaged or was written by another version: train the run again") from err
    return model.to(device).eval()


@dataclass(frozen=True)
class Predictions:
    """Per-node outputs of a trained model: ``probabilities`` [N, C] (softmax of the logits),
    ``embeddings`` [N, d], the last state before the decoder: the hidden state for the attention
    models and mlp, the class scores for gcn, gat and appnp (for sgc, before its bias), and
    ``nodes`` [N], the node ids of the rows: the graph's ``n_id`` (each node's index in the whole
    dataset, for a largest connected component) or None for 0..N−1."""

    probabilities: torch.Tensor
    embeddings: torch.Tensor
    nodes: torch.Tensor | None = None

    @property
    def predicted(self) -> torch.Tensor:
        """The most probable class of every node, [N]."""
        return self.probabilities.argmax(dim=1)


def predict(model: NodeClassifier, data: Data, *, chunk_size: int | None = None) -> Predictions:
    """``model``'s predictions on ``data`` (eval mode, no gradients); ``data`` is the graph the
    model's operators were built on (the one given to :func:`load_model` or used in training).
    The rows are ``data``'s nodes, named by its ``n_id`` when it has one (:class:`Predictions`).

    ``chunk_size``: evaluate ``chunk_size`` nodes at a time (:func:`~diffusion_pde.models.chunked.
    predict_chunked`): the same predictions, exactly, for a graph whose one-shot forward pass does
    not fit in memory (memory beyond a few N-row states and the graph is bounded by the chunk
    size). Discrete-depth difformer_s, gcn, sgc, appnp and mlp, and continuous depth with a
    fixed-step method; other models raise a ValueError naming the fix (no ``chunk_size``).
    """
    nodes = data.n_id.cpu() if getattr(data, "n_id", None) is not None else None
    if chunk_size is not None:
        logits, hidden = predict_chunked(model, data, chunk_size, return_hidden=True)
        return Predictions(torch.softmax(logits, dim=1).cpu(), hidden.cpu(), nodes)
    x = data.x.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)
    model.eval()
    with torch.no_grad():
        hidden = model.states(x)[-1]
        logits = model.decoder(hidden)
    return Predictions(torch.softmax(logits, dim=1).cpu(), hidden.cpu(), nodes)


def write_predictions(predictions: Predictions, path: str | Path, *, embeddings: bool = False) -> None:
    """CSV, atomically: ``node,predicted,p_0..p_{C-1}`` (and ``h_0..h_{d-1}`` with ``embeddings``,
    see :class:`Predictions`); ``node`` is the row's node id (:attr:`Predictions.nodes`)."""
    probabilities = predictions.probabilities.double().numpy()
    nodes = predictions.nodes.numpy() if predictions.nodes is not None else np.arange(len(probabilities))
    columns = [nodes[:, None], predictions.predicted.numpy()[:, None], probabilities]
    if embeddings:
        columns.append(predictions.embeddings.double().numpy())
    width = columns[3].shape[1] if embeddings else 0
    formats = ["%d", "%d"] + ["%.9g"] * (probabilities.shape[1] + width)
    buffer = io.StringIO()
    np.savetxt(buffer, np.hstack(columns), fmt=formats, delimiter=",",
               header=predictions_header(probabilities.shape[1], width), comments="")
    write_text_atomic(buffer.getvalue(), path)
