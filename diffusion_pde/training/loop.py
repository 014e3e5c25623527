"""One training run: full-batch Adam on the training nodes, evaluation every epoch, the test
score (accuracy or ROC-AUC) taken at the epoch of best validation score, atomic checkpoints and
exact resume.

Resuming is exact: ``last.pt`` holds the model, the optimiser state, the epoch, the history, the
best state so far and torch's random-number state (dropout draws from it), so a run interrupted
after epoch e and resumed reproduces the uninterrupted run bit for bit on the same machine.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from tqdm.auto import tqdm

from ..data import Split
from ..models import NodeClassifier
from .checkpoint import load_checkpoint, save_atomic, write_json_atomic
from .config import TrainConfig
from .metrics import accuracy, roc_auc, score_key


def history_fields(metric: str = "accuracy") -> tuple[str, ...]:
    """The columns of a run's per-epoch history (``history.csv``)."""
    scores = () if metric == "accuracy" else tuple(score_key(metric, part) for part in ("train", "val", "test"))
    return ("epoch", "loss", "train_acc", "val_acc", "test_acc", *scores, "val_loss", "seconds")


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


def first_epoch_reaching(history: list[dict[str, float]], fraction: float = 0.7) -> int:
    """The first epoch whose validation accuracy reaches ``fraction`` of the best one."""
    best = max(row["val_acc"] for row in history)
    return next(int(row["epoch"]) for row in history if row["val_acc"] >= fraction * best)


def evaluate(model: NodeClassifier, data: Data, split: Split, metric: str = "accuracy") -> dict[str, float]:
    """Accuracies on the three node sets (and their ROC-AUC for ``metric="roc_auc"``) and the
    validation loss, in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(data.x)
    model.train(was_training)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    out = {f"{part}_acc": accuracy(logits, data.y, index) for part, index in parts.items()}
    if metric == "roc_auc":
        out.update({score_key("roc_auc", part): roc_auc(logits, data.y, index, where=f"the {part} nodes")
                    for part, index in parts.items()})
    out["val_loss"] = float(F.cross_entropy(logits[split.val], data.y[split.val]))
    return out


def _fingerprint(model: NodeClassifier, config: TrainConfig, split: Split, seed: int) -> dict[str, Any]:
    return {"model": dataclasses.asdict(model.config), "train": dataclasses.asdict(config),
            "split": [split.kind, split.index], "seed": seed}


def _rng_state() -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
) -> RunResult:
    """Train ``model`` (already seeded and on ``data``'s device) on ``split``.

    With ``run_dir`` the run writes ``last.pt`` (every ``checkpoint_every`` epochs and at the
    end), ``best.pt`` (the weights of the best validation epoch, at the same moments) and
    ``result.json`` when done. ``resume=True`` continues from ``last.pt`` (or returns the stored
    result of a finished run); the settings must match the checkpoint's. ``on_epoch(epoch,
    metrics)`` is called after every epoch (tests use it to interrupt a run).
    """
    device = data.x.device
    split = split.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fingerprint = _fingerprint(model, config, split, seed)
    history: list[dict[str, float]] = []
    num_classes = int(data.y.max()) + 1
    if config.metric == "roc_auc" and num_classes != 2:
        raise ValueError(f"metric='roc_auc' needs a two-class task, but the labels have {num_classes} classes; "
                         "use metric='accuracy' (--metric accuracy)")
    train_key, val_key, test_key = (score_key(config.metric, part) for part in ("train", "val", "test"))
    best: dict[str, Any] = {"epoch": 0, "score": -1.0, "state": None, "metrics": None}
    start = 1
    run_dir = Path(run_dir) if run_dir is not None else None

    if run_dir is not None and resume and (run_dir / "last.pt").exists():
        ckpt = load_checkpoint(run_dir / "last.pt", device)
        if ckpt["fingerprint"] != fingerprint:
            raise ValueError(
                f"{run_dir / 'last.pt'} was written with other settings; resume with the same settings, or "
                "start over with --overwrite (or another --out)"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, best = ckpt["history"], ckpt["best"]
        _set_rng_state(ckpt["rng"])
        start = ckpt["epoch"] + 1

    def checkpoint(epoch: int) -> None:
        if run_dir is None:
            return
        if best["state"] is not None:
            save_atomic({"epoch": best["epoch"], "model": best["state"], "metrics": best["metrics"],
                         "fingerprint": fingerprint}, run_dir / "best.pt")
        save_atomic({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "history": history, "best": best, "rng": _rng_state(), "fingerprint": fingerprint},
                    run_dir / "last.pt")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(total=config.epochs, initial=start - 1, desc=f"split {split.index} run {run}", unit="epoch",
               leave=False, disable=(not progress) if progress is not None else None, dynamic_ncols=True)
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
            model.train()
            optimizer.zero_grad(set_to_none=True)
            logits = model(data.x)
            loss = F.cross_entropy(logits[split.train], data.y[split.train])
            if not math.isfinite(loss.item()):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} at epoch {epoch}; lower lr or tau "
                    "(an explicit Euler step needs tau <= 1), or use float64"
                )
            loss.backward()
            optimizer.step()
            metrics = {"epoch": epoch, "loss": loss.item(), **evaluate(model, data, split, config.metric)}
            metrics["seconds"] = time.perf_counter() - tick
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
    if run_dir is not None:
        write_json_atomic({**result.summary(), "fingerprint": fingerprint}, run_dir / "result.json")
    return result


def stored_result(run_dir: str | Path, model: NodeClassifier, config: TrainConfig, split: Split, seed: int) -> RunResult | None:
    """The finished result in ``run_dir`` if it was produced with these settings, else None."""
    run_dir = Path(run_dir)
    path = run_dir / "result.json"
    if not path.exists() or not (run_dir / "last.pt").exists():
        return None
    stored = json.loads(path.read_text())
    if stored.pop("fingerprint") != _fingerprint(model, config, split, seed):
        return None
    history = load_checkpoint(run_dir / "last.pt")["history"]
    model.load_state_dict(load_checkpoint(run_dir / "best.pt", next(model.parameters()).device)["model"])
    return RunResult(**stored, history=history)
