"""One training run: Adam on the training nodes, full-batch or in random node partitions
(:mod:`.batching`), in one process or several (:mod:`.distributed`), evaluation on the full graph
every epoch, the test score (accuracy or ROC-AUC) taken at the epoch of best validation score,
atomic checkpoints and exact resume.

Resuming is exact: ``last.pt`` holds the model, the optimiser state, the epoch, the history, the
best state so far and torch's random-number state (dropout draws from it), so a run interrupted
after epoch e and resumed reproduces the uninterrupted run bit for bit on the same machine (with
several processes: each rank's random state is kept, and the world size must be the same).

A NaN or Inf stops the run with :class:`NonFiniteError`, naming the epoch and where it first
appeared (the model's output or a hidden state, the training loss, a parameter's gradient, a
parameter, the validation loss), before that epoch is checkpointed. The per-epoch cost is one
reduction over the gradients read back with the loss; finding the culprit happens only after a
failure.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from tqdm.auto import tqdm

import solvers

from ..data import Split, dataset_source
from ..diffusivities import on_graph
from ..models import ModelConfig, NodeClassifier
from ..models.chunked import check_chunkable, predict_chunked
from ..models.features import sparse_features
from .batching import induced_batch, node_partitions
from .checkpoint import load_checkpoint, save_atomic, write_json_atomic
from .config import TrainConfig
from .distributed import Distribution
from .metrics import accuracy, roc_auc, score_key


def history_fields(metric: str = "accuracy") -> tuple[str, ...]:
    """The columns of a run's per-epoch history (``history.csv``)."""
    scores = () if metric == "accuracy" else tuple(score_key(metric, part) for part in ("train", "val", "test"))
    return ("epoch", "loss", "train_acc", "val_acc", "test_acc", *scores, "val_loss", "seconds", "train_seconds")


@dataclass
class RunResult:
    """The outcome of one (split, run): accuracies and scores in [0, 1], epochs counted from 1.

    ``val_score``/``test_score`` are the values of ``metric`` at the chosen epoch (equal to
    ``val_acc``/``test_acc`` when the metric is accuracy)."""

    split: int
    run: int
    seed: int
    best_epoch: int
    val_acc: float
    test_acc: float
    train_acc: float
    metric: str
    val_score: float
    test_score: float
    epochs_run: int
    stopped_early: bool
    first_epoch_70: int
    chance: float
    seconds_per_epoch: float
    peak_memory_mb: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-epoch history."""
        out = dataclasses.asdict(self)
        out.pop("history")
        return out


class NonFiniteError(RuntimeError):
    """A NaN or Inf appeared during training; the run stopped before saving the epoch it appeared in.

    ``epoch`` is that epoch; ``quantity`` where it was first seen: ``"output"`` (``name``: the module
    whose output it was, ``""`` for the model itself), ``"loss"``, ``"gradient"`` or ``"parameter"``
    (``name``: the parameter) or ``"val_loss"``."""

    def __init__(self, message: str, *, epoch: int, quantity: str, name: str | None = None) -> None:
        super().__init__(message)
        self.epoch, self.quantity, self.name = epoch, quantity, name


def _describe(quantity: str, name: str | None) -> str:
    if quantity == "output":
        return "the model's output (logits)" if name == "" else f"the output of module {name!r}"
    if quantity in ("gradient", "parameter"):
        return f"{'the gradient of ' if quantity == 'gradient' else ''}parameter {name!r}"
    return {"loss": "the training loss", "val_loss": "the validation loss"}[quantity]


def _stored(tensor: torch.Tensor) -> torch.Tensor:
    """The entries of a dense tensor, the stored values of a sparse one."""
    return tensor if tensor.layout == torch.strided else tensor.values()


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every (stored) entry of a dense or sparse tensor is finite."""
    return bool(torch.isfinite(_stored(tensor)).all())


def _first_nonfinite(named: Iterable[tuple[str, torch.Tensor | None]]) -> str | None:
    return next((name for name, value in named if value is not None and not _finite(value)), None)


def _locate_nonfinite(model: NodeClassifier, x: torch.Tensor, graph: Data | None, training: bool,
                      rng: dict[str, Any]) -> tuple[str, str] | None:
    """After a failure: the first non-finite parameter, else the first module whose output is
    non-finite when the failed forward pass is replayed (train or eval mode, the same random
    draws), else None."""
    name = _first_nonfinite(model.named_parameters())
    if name is not None:
        return "parameter", name
    found: list[str] = []

    def watch(module_name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if not found and isinstance(output, torch.Tensor) and not _finite(output):
                found.append(module_name)
        return hook

    handles = [module.register_forward_hook(watch(module_name)) for module_name, module in model.named_modules()]
    model.train(training)
    _set_rng_state(rng)
    try:
        with torch.no_grad():
            model(x, graph)
    except (ValueError, solvers.IntegrationError):  # a solver refusing the non-finite state the hooks saw
        pass
    finally:
        for handle in handles:
            handle.remove()
    return ("output", found[0]) if found else None


@dataclass
class _Watch:
    """Turns a NaN/Inf met in an epoch of the run ``label`` into the NonFiniteError naming where it
    first appeared and what is left on disk (``saved``: the epoch ``last.pt`` holds, 0 for none).
    ``x`` and ``graph`` are the input of the step being watched (``graph`` None: the full graph)."""

    model: NodeClassifier
    x: torch.Tensor
    label: str
    run_dir: Path | None
    saved: int
    graph: Data | None = None

    def error(self, epoch: int, quantity: str, name: str | None, detail: str = "") -> NonFiniteError:
        if self.run_dir is None:
            kept = "no checkpoints are written without a run folder"
        elif self.saved:
            kept = f"{self.run_dir} keeps last.pt (epoch {self.saved}) and best.pt as they were"
        else:
            kept = f"no checkpoint had been written to {self.run_dir} yet"
        return NonFiniteError(
            f"{self.label}: {_describe(quantity, name)} became non-finite (NaN or Inf) at epoch {epoch}{detail}; "
            f"training stopped and {kept}. Too large a learning rate (lr) or step (tau, n_steps) is the usual "
            "cause: change it and start over (--resume would repeat the same steps)",
            epoch=epoch, quantity=quantity, name=name)

    def located(self, epoch: int, training: bool, rng: dict[str, Any], fallback: str | None,
                detail: str = "") -> NonFiniteError | None:
        """The error naming where the NaN/Inf was first seen, else the ``fallback`` quantity's
        (None without one: then the failure was not a non-finite value)."""
        where = _locate_nonfinite(self.model, self.x, self.graph, training, rng)
        if where is not None:
            return self.error(epoch, *where, detail)
        return self.error(epoch, fallback, None, detail) if fallback is not None else None

    @contextmanager
    def solver_refusals(self, epoch: int, training: bool, rng: dict[str, Any], detail: str = "") -> Iterator[None]:
        """A solver refusing a non-finite state (ValueError, IntegrationError) becomes the
        NonFiniteError naming where it appeared; other failures pass unchanged."""
        try:
            yield
        except (ValueError, solvers.IntegrationError) as err:
            error = self.located(epoch, training, rng, None, detail)
            if error is None:
                raise
            raise error from err


def first_epoch_reaching(history: list[dict[str, float]], fraction: float = 0.7) -> int:
    """The first epoch whose validation accuracy reaches ``fraction`` of the best one."""
    best = max(row["val_acc"] for row in history)
    return next(int(row["epoch"]) for row in history if row["val_acc"] >= fraction * best)


def evaluate(model: NodeClassifier, data: Data, split: Split, metric: str = "accuracy",
             chunk_size: int | None = None, *, features: torch.Tensor | None = None) -> dict[str, float]:
    """Accuracies on the three node sets (and their ROC-AUC for ``metric="roc_auc"``) and the
    validation loss, in eval mode (no dropout), on the full graph, without gradients
    (``torch.no_grad``, not ``inference_mode``: tensors a model caches during evaluation, e.g. a
    graph operator normalised for a bound graph, must stay usable by a later training step).
    With ``chunk_size`` a model that streams (:func:`~diffusion_pde.models.chunked.check_chunkable`)
    is evaluated in node chunks of that size (the same logits, memory bounded by the chunk); others
    at once, on ``features`` (default ``data.x``; e.g. its CSR form from
    :func:`~diffusion_pde.models.features.sparse_features`)."""
    if chunk_size is not None and _streams(model):
        logits = predict_chunked(model, data.x, chunk_size)
    else:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = model(data.x if features is None else features)
        finally:
            model.train(was_training)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    out = {f"{part}_acc": accuracy(logits, data.y, index) for part, index in parts.items()}
    if metric == "roc_auc":
        out.update({score_key("roc_auc", part): roc_auc(logits, data.y, index, where=f"the {part} nodes")
                    for part, index in parts.items()})
    out["val_loss"] = float(F.cross_entropy(logits[split.val], data.y[split.val]))
    return out


def _streams(model: NodeClassifier) -> bool:
    try:
        check_chunkable(model)
    except ValueError:
        return False
    return True


def _digest(tensor: torch.Tensor | None) -> str | None:
    """A cheap content hash of ``tensor`` (its dtype, shape and bytes), None for no tensor."""
    if tensor is None:
        return None
    value = tensor.detach().cpu().contiguous()
    digest = hashlib.blake2b(f"{value.dtype}{tuple(value.shape)}".encode(), digest_size=16)
    digest.update(value.numpy().tobytes())
    return digest.hexdigest()


# What a change of each fingerprint entry means, for the message refusing a resume.
_CONTENTS = {"x": "the node features x", "edge_index": "the edges (edge_index)", "edge_weight": "the edge weights",
             "y": "the labels y", "train": "the training nodes", "val": "the validation nodes", "test": "the test nodes",
             "inputs": "the forecasting inputs (lag windows)", "targets": "the forecasting targets"}
NOT_FINGERPRINTED = ("checkpoint_every",)  # training settings that do not change the results


def fingerprint(model_config: ModelConfig, config: TrainConfig, split: Split, seed: int, data: Data,
                world_size: int = 1) -> dict[str, Any]:
    """What a run's checkpoints must have been written with to be resumed: the settings the model
    uses and those that change training (not ``checkpoint_every``), the dataset's name, shape and
    contents (hashes of x, edge_index, edge_weight and y), the split (its kind, index and node
    sets), the seed and the number of processes (which decides the partitions of an epoch)."""
    train = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_FINGERPRINTED}
    return {"model": model_config.settings(), "train": train,
            "data": {"name": getattr(data, "name", None), "num_nodes": int(data.num_nodes),
                     "num_features": int(data.x.shape[1]), "num_classes": int(data.y.max()) + 1,
                     **{name: _digest(getattr(data, name, None)) for name in ("x", "edge_index", "edge_weight", "y")}},
            "split": {"kind": split.kind, "index": split.index,
                      **{part: _digest(getattr(split, part).long()) for part in ("train", "val", "test")}},
            "seed": seed, "world_size": world_size}


def fingerprint_changes(stored: Any, expected: dict[str, Any]) -> str:
    """What differs between a checkpoint's ``stored`` fingerprint and the ``expected`` one, in
    words: ``lr 0.01 then, 0.02 now; the labels y``."""
    if not isinstance(stored, dict) or set(stored) != set(expected) or \
            not all(isinstance(stored[key], dict) for key in ("model", "train", "data", "split")):
        return "it was written by another version of diffusion-pde"
    changes = []
    for group in ("model", "train", "data", "split"):
        old, new = stored[group], expected[group]
        for key in dict.fromkeys([*new, *old]):
            if old.get(key) != new.get(key):
                changes.append(f"{_CONTENTS[key]} changed" if key in _CONTENTS and group in ("data", "split") else
                               f"{key} {old.get(key, 'unset')!r} then, {new.get(key, 'unset')!r} now")
    for key, what in (("seed", "seed"), ("world_size", "processes (world size)")):
        if stored[key] != expected[key]:
            changes.append(f"{what} {stored[key]} then, {expected[key]} now")
    return "; ".join(changes)


def architecture(model: NodeClassifier, data: Data) -> dict[str, Any]:
    """What :func:`~diffusion_pde.training.load_model` rebuilds a model from: its settings, the
    input width and the number of classes (the graph operators come from the graph it is given)."""
    return {"config": dataclasses.asdict(model.config), "in_channels": int(data.x.shape[1]),
            "num_classes": int(data.y.max()) + 1}


REBUILD_KEYS = ("epoch", "model", "architecture", "dataset")  # what load_model reads, from best.pt or last.pt
LAST_KEYS = (*REBUILD_KEYS, "optimizer", "history", "best", "rng", "fingerprint")
BEST_KEYS = (*REBUILD_KEYS, "metrics", "fingerprint")


def _without_epochs(fp: Any) -> Any:
    if not isinstance(fp, dict) or not isinstance(fp.get("train"), dict):
        return fp
    return {**fp, "train": {k: v for k, v in fp["train"].items() if k != "epochs"}}


def read_last(run_dir: str | Path, expected: dict[str, Any], device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """``run_dir/last.pt`` checked for a resume (complete, written with the ``expected``
    fingerprint), or None when the run has none.

    The epoch budget (``expected["train"]["epochs"]``) may be larger than the checkpoint's: every
    trainer here keeps a constant learning rate and draws each epoch's batches and dropout from
    the restored generator state, so epochs 1..k do not depend on the budget, and a run resumed
    with a larger one is the run that had it from the start (tested for each task). A budget
    below the epochs already run is refused."""
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, device, keys=LAST_KEYS,
                           remedy="delete it to train this run again from scratch, or start over with --overwrite")
    stored, wanted = _without_epochs(ckpt["fingerprint"]), _without_epochs(expected)
    if stored != wanted:
        raise ValueError(f"{path} was written with other settings or data ({fingerprint_changes(stored, wanted)}); "
                         "resume with the same settings and data, or start over with --overwrite (or another --out)")
    epochs = expected["train"]["epochs"]
    if int(ckpt["epoch"]) > int(epochs):
        raise ValueError(f"{path} has already run {ckpt['epoch']} epochs, more than epochs={epochs} (--epochs): "
                         f"resume with epochs >= {ckpt['epoch']}, or start over with --overwrite")
    return ckpt


def check_metric(config: TrainConfig, num_classes: int) -> None:
    if config.metric == "roc_auc" and num_classes != 2:
        raise ValueError(f"metric='roc_auc' needs a two-class task, but the labels have {num_classes} classes; "
                         "use metric='accuracy' (--metric accuracy)")


def _rng_state() -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoints(run_dir: Path, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      history: list[dict[str, float]], best: dict[str, Any], rng: list[dict[str, Any]],
                      expected: dict[str, Any], rebuild: dict[str, Any]) -> None:
    """A run's two checkpoints, atomically: ``best.pt`` (the weights of the best validation epoch
    so far, its metrics) and ``last.pt`` (model, optimiser, ``epoch``, history, best state and the
    random state of every rank: what an exact resume needs); both hold the ``expected``
    fingerprint and what rebuilds the model (``rebuild``). Every task's trainer writes these."""
    if best["state"] is not None:
        save_atomic({"epoch": best["epoch"], "model": best["state"], "metrics": best["metrics"],
                     "fingerprint": expected, **rebuild}, run_dir / "best.pt")
    save_atomic({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "history": history, "best": best, "rng": rng, "fingerprint": expected, **rebuild},
                run_dir / "last.pt")


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy over ``index``; 0 (still a function of the logits, so every rank of
    a distributed step has gradients to average) when ``index`` is empty."""
    if index.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits[index], y[index])


def _optimiser_step(model: NodeClassifier, optimizer: torch.optim.Optimizer, watch: _Watch, epoch: int,
                    loss: torch.Tensor, rng: dict[str, Any]) -> float:
    """Backward and step; a NaN/Inf in the loss or a gradient raises the NonFiniteError."""
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise watch.located(epoch, True, rng, "loss", f" (the training loss is {loss_value})")
    loss.backward()
    grads = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    largest = torch.nn.utils.get_total_norm([g for _, g in grads], math.inf)  # the largest |entry|; NaN if any is
    if not math.isfinite(largest.item()):
        raise watch.error(epoch, "gradient", _first_nonfinite(grads), f" (the training loss, {loss_value:.6g}, is finite)")
    optimizer.step()
    return loss_value


def adam(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam with ``config``'s learning rate and (L2) weight decay, torch's fused kernel where all
    parameters allow it (floating point, on CPU or CUDA): the same update as the per-tensor loop
    (to round-off), one kernel for all parameters instead of about ten per parameter."""
    params = list(model.parameters())
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


def train_run(
    model: NodeClassifier,
    data: Data,
    split: Split,
    config: TrainConfig,
    *,
    seed: int,
    run: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    distribution: Distribution | None = None,
) -> RunResult:
    """Train ``model`` (already seeded and on ``data``'s device) on ``split``.

    Full batch (``config.batch_size`` None): one step per epoch on the whole graph. Mini-batch:
    one step per random node partition of the epoch (:func:`~.batching.node_partitions`), on its
    induced subgraph, with a progress bar over the partitions. With a ``distribution`` of W > 1
    processes (:mod:`.distributed`; the model is wrapped in DistributedDataParallel here) rank r
    takes partitions r, r + W, ...; the gradients of a step are averaged over the ranks.

    With ``run_dir`` the run writes ``last.pt`` (every ``checkpoint_every`` epochs and at the
    end), ``best.pt`` (the weights of the best validation epoch, at the same moments; both also
    hold the architecture and the dataset's identity, which :func:`load_model` rebuilds the model
    from) and ``result.json`` when done; only rank 0 writes. ``resume=True`` continues from
    ``last.pt`` (or returns the stored result of a finished run); the settings must match the
    checkpoint's. ``on_epoch(epoch, metrics)`` is called after every epoch (tests use it to
    interrupt a run). A NaN or Inf raises :class:`NonFiniteError` before its epoch is checkpointed.
    """
    device = data.x.device
    bad = solvers.count_nonfinite(_stored(data.x))
    if bad:
        raise ValueError(f"data.x contains {bad} non-finite (NaN or Inf) features: clean them (e.g. "
                         "torch.nan_to_num(data.x)) before training")
    dist_ = distribution or Distribution()
    split = split.to(device)
    dist_.check_batches(config.batch_size)
    optimizer = adam(model, config)
    expected = fingerprint(model.config, config, split, seed, data, dist_.world_size)
    rebuild = {"architecture": architecture(model, data), "dataset": dataset_source(data)}
    history: list[dict[str, float]] = []
    num_classes = int(data.y.max()) + 1
    check_metric(config, num_classes)
    train_key, val_key, test_key = (score_key(config.metric, part) for part in ("train", "val", "test"))
    best: dict[str, Any] = {"epoch": 0, "score": -1.0, "state": None, "metrics": None}
    start = 1
    run_dir = Path(run_dir) if run_dir is not None else None
    train_mask = torch.zeros(data.num_nodes, dtype=torch.bool, device=device)
    train_mask[split.train] = True

    ckpt = read_last(run_dir, expected, device) if run_dir is not None and resume else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # a checkpoint of an older version holds fused=None: keep ours
            group["fused"] = optimizer.defaults["fused"]
        history, best = ckpt["history"], ckpt["best"]
        _set_rng_state(ckpt["rng"][dist_.rank])
        start = ckpt["epoch"] + 1
    starts = dist_.gather(start)
    if len(set(starts)) > 1:
        raise RuntimeError(f"the {dist_.world_size} processes resumed from different epochs "
                           f"({', '.join(str(s - 1) for s in starts)}): every machine must see the same --out "
                           "(shared storage), since every rank reads the checkpoints")
    trainer = dist_.wrap(model)  # after loading: DDP starts every rank from rank 0's parameters
    # Progress bars on rank 0 only; there ``progress`` None leaves it to tqdm (shown on a terminal).
    hide_bars = True if not dist_.is_main else (None if progress is None else not progress)
    # Bag-of-words features stay sparse for the full-batch steps and the evaluation (the models
    # take either layout; mini-batches slice the dense rows).
    features = sparse_features(data.x)
    watch = _Watch(model, features, f"split {split.index} run {run}", run_dir, saved=start - 1)

    def checkpoint(epoch: int) -> None:
        rng = dist_.gather(_rng_state())  # one state per rank
        if run_dir is None or not dist_.is_main:
            return
        write_checkpoints(run_dir, epoch, model, optimizer, history, best, rng, expected, rebuild)
        watch.saved = epoch

    def full_batch_step(epoch: int) -> float:
        optimizer.zero_grad(set_to_none=True)
        rng = _rng_state()
        watch.x, watch.graph = features, None
        with watch.solver_refusals(epoch, True, rng):
            logits = trainer(features)
        return _optimiser_step(model, optimizer, watch, epoch, _cross_entropy(logits, data.y, split.train), rng)

    def mini_batch_steps(epoch: int) -> float:
        parts = node_partitions(data.num_nodes, config.batch_size, seed=seed, epoch=epoch, world_size=dist_.world_size)
        mine = parts[dist_.rank::dist_.world_size]
        total, count = 0.0, 0
        with tqdm(mine, desc=f"epoch {epoch}", unit="batch", leave=False, dynamic_ncols=True, disable=hide_bars) as batches:
            for nodes in batches:
                batch = induced_batch(data, nodes, train_mask)
                optimizer.zero_grad(set_to_none=True)
                rng = _rng_state()
                watch.x, watch.graph = batch.graph.x, batch.graph
                # Bound for the forward and the backward pass: the adjoint re-evaluates the field then.
                with on_graph(model, batch.graph):
                    with watch.solver_refusals(epoch, True, rng, f" (a mini-batch of {nodes.numel()} nodes)"):
                        logits = trainer(batch.graph.x)
                    loss = _optimiser_step(model, optimizer, watch, epoch,
                                           _cross_entropy(logits, batch.graph.y, batch.train), rng)
                total, count = total + loss * batch.train.numel(), count + batch.train.numel()
                batches.set_postfix(loss=f"{loss:.3f}")
        return total / max(count, 1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(total=config.epochs, initial=start - 1, desc=f"split {split.index} run {run}", unit="epoch",
               leave=False, disable=hide_bars, dynamic_ncols=True)
    since_best = (start - 1) - best["epoch"]
    stopped_early = False
    epoch = start - 1
    try:
        for epoch in range(start, config.epochs + 1):
            if config.patience is not None and since_best >= config.patience:
                stopped_early = True
                epoch -= 1
                break
            tick = time.perf_counter()
            trainer.train()
            loss_value = full_batch_step(epoch) if config.batch_size is None else mini_batch_steps(epoch)
            train_seconds = time.perf_counter() - tick
            watch.x, watch.graph = features, None
            with watch.solver_refusals(epoch, False, _rng_state(), " after the optimiser step"):
                metrics = {"epoch": epoch, "loss": loss_value,
                           **evaluate(model, data, split, config.metric, config.batch_size, features=features)}
            if not math.isfinite(metrics["val_loss"]):
                raise watch.located(epoch, False, _rng_state(), "val_loss", " after the optimiser step")
            metrics["seconds"], metrics["train_seconds"] = time.perf_counter() - tick, train_seconds
            history.append(metrics)
            if metrics[val_key] > best["score"]:
                best = {"epoch": epoch, "score": metrics[val_key], "metrics": metrics,
                        "state": copy.deepcopy(model.state_dict())}
                since_best = 0
            else:
                since_best += 1
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", train=f"{metrics[train_key]:.3f}",
                            val=f"{metrics[val_key]:.3f}", test=f"{metrics[test_key]:.3f}",
                            best=f"{best['metrics'][test_key]:.3f}@{best['epoch']}")
            if epoch % config.checkpoint_every == 0:
                checkpoint(epoch)
            if on_epoch is not None:
                on_epoch(epoch, metrics)
    finally:
        bar.close()
    checkpoint(epoch)

    if not history:
        raise ValueError("no epoch was trained (epochs must be >= 1)")
    model.load_state_dict(best["state"])
    chosen = best["metrics"]
    counts = torch.bincount(data.y[split.test], minlength=num_classes)
    result = RunResult(
        split=split.index, run=run, seed=seed, best_epoch=best["epoch"], val_acc=chosen["val_acc"],
        test_acc=chosen["test_acc"], train_acc=chosen["train_acc"], metric=config.metric,
        val_score=chosen[val_key], test_score=chosen[test_key], epochs_run=len(history),
        stopped_early=stopped_early, first_epoch_70=first_epoch_reaching(history),
        chance=float(counts.max()) / float(counts.sum()),
        seconds_per_epoch=sum(row["seconds"] for row in history) / len(history),
        peak_memory_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        history=history,
    )
    if run_dir is not None and dist_.is_main:
        write_json_atomic({**result.summary(), "fingerprint": expected}, run_dir / "result.json")
    return result


def stored_result(run_dir: str | Path, expected: dict[str, Any], model: NodeClassifier | None = None, *,
                  kind: Callable[..., Any] = RunResult) -> Any:
    """The finished result in ``run_dir`` if it was produced with the ``expected`` fingerprint (its
    best weights loaded into ``model`` when given), as ``kind`` (:class:`RunResult`, or another
    task's result class, built from ``result.json`` and the history), else None. Damaged files
    raise a ValueError naming the file and the fix."""
    run_dir = Path(run_dir)
    path = run_dir / "result.json"
    if not all((run_dir / name).exists() for name in ("result.json", "last.pt", "best.pt")):
        return None
    try:
        stored = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON (it is truncated or damaged); delete it and --resume rebuilds it "
                         "from last.pt") from err
    if not isinstance(stored, dict) or stored.pop("fingerprint", None) != expected:
        return None
    last = read_last(run_dir, expected)
    device = next(model.parameters()).device if model is not None else "cpu"
    best = load_checkpoint(run_dir / "best.pt", device, keys=BEST_KEYS,
                           remedy="delete it and --resume rebuilds it from last.pt")
    if last["fingerprint"] != expected or best["fingerprint"] != expected:
        return None  # trained on since with a larger epoch budget (perhaps interrupted): not this result's weights
    history = last["history"]
    if model is not None:
        model.load_state_dict(best["model"])
    return kind(**stored, history=history)
