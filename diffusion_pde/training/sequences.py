"""Training sequence classifiers: AdamW on mini-batches of sequences, evaluation of the three
parts every epoch, the test accuracy at the epoch of best validation accuracy, atomic checkpoints
and exact resume — the node trainer's contract (:mod:`.loop`) for batches of sequences.

Batches hold sequences of one length (:func:`length_batches`), so no model ever computes on
padding: an epoch shuffles the training sequences with a generator seeded by (seed, epoch), groups
them by length into batches of at most ``batch_size`` and shuffles the batches, so a resumed run
draws the same batches. (With equal lengths, as MNIST-1D and pixel sequences, these are plain
shuffled mini-batches.) ``last.pt`` holds the model, the optimiser, the history, the best state and torch's
random state (dropout), so a run interrupted after epoch e and resumed reproduces the
uninterrupted run bit for bit on the same machine.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.sequences import SequenceData, load_sequences
from ..models.sequence import SequenceClassifier, SequenceModelConfig, build_sequence_model
from .checkpoint import load_checkpoint, write_json_atomic, write_text_atomic
from .experiment import _csv, check_one_split_args, run_seeds
from .loop import (RunResult, _digest, _rng_state, _set_rng_state, first_epoch_reaching, history_fields, read_last,
                   write_checkpoints)


@dataclass(frozen=True)
class SequenceTrainConfig:
    """AdamW (decoupled ``weight_decay``) with learning rate ``lr`` on the cross-entropy of
    mini-batches of ``batch_size`` training sequences; gradients clipped to total norm
    ``max_grad_norm`` (None: not clipped); evaluation in batches of ``eval_batch_size``;
    ``epochs`` at most, ``patience`` epochs without a better validation accuracy stop the run
    (None: never); ``last.pt`` every ``checkpoint_every`` epochs and at the end."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    eval_batch_size: int = 128
    patience: int | None = None
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ValueError(f"patience must be a positive int or None, got {self.patience!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= (0 if name == "weight_decay" else 1e-300)):
                raise ValueError(f"{name} must be a finite number {'>= 0' if name == 'weight_decay' else '> 0'}, got {value!r}")
        if self.max_grad_norm is not None and not (isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")


def sequence_fingerprint(model_config: SequenceModelConfig, config: SequenceTrainConfig, data: SequenceData,
                         seed: int) -> dict[str, Any]:
    """What a run's checkpoints must have been written with to be resumed (the node trainer's
    layout: model and training settings, the data's identity and contents, the split, the seed)."""
    train = {k: v for k, v in dataclasses.asdict(config).items() if k != "checkpoint_every"}
    return {"model": dataclasses.asdict(model_config), "train": train,
            "data": {"name": data.name, "inputs": _digest(data.inputs), "y": _digest(data.y),
                     "lengths": _digest(data.lengths)},
            "split": {part: _digest(getattr(data, part)) for part in ("train", "val", "test")},
            "seed": seed, "world_size": 1}


def length_batches(index: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """``index`` split into batches of at most ``batch_size`` sequences of one length each: in a
    random order drawn from ``generator`` (batches and their members), or sorted without one."""
    if generator is not None:
        index = index[torch.randperm(len(index), generator=generator)]
    order = torch.argsort(lengths[index], stable=True)
    index = index[order]
    _, counts = torch.unique_consecutive(lengths[index], return_counts=True)
    batches = [chunk for group in index.split(counts.tolist()) for chunk in group.split(batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _batch(data: SequenceData, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    lengths = data.lengths[index]
    inputs = data.inputs[index, :int(lengths.max())]
    return inputs.to(device), lengths.to(device), data.y[index].to(device)


@torch.no_grad()
def evaluate_sequences(model: SequenceClassifier, data: SequenceData, index: torch.Tensor,
                       batch_size: int = 128) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode over the sequences ``index``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct, loss = 0, 0.0
    try:
        for chunk in length_batches(index, data.lengths, batch_size):
            inputs, lengths, y = _batch(data, chunk, device)
            logits = model(inputs, lengths)
            correct += int((logits.argmax(dim=-1) == y).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
    finally:
        model.train(was_training)
    return correct / max(1, len(index)), loss / max(1, len(index))


def train_sequences(model: SequenceClassifier, data: SequenceData, config: SequenceTrainConfig, *, seed: int,
                    run: int = 0, run_dir: str | Path | None = None, resume: bool = False,
                    progress: bool | None = None,
                    on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> RunResult:
    """Train ``model`` (already seeded) on ``data``'s training sequences; return the
    :class:`~.loop.RunResult` (accuracies in [0, 1], epochs from 1). With ``run_dir``: ``last.pt``
    and ``best.pt`` (the best validation epoch's weights) and ``result.json``; ``resume``
    continues from ``last.pt`` written with the same settings and data, and may raise the epoch
    budget (``epochs``) of a finished or interrupted run: the learning rate is constant and each
    epoch's batch order is drawn from (seed, epoch), so epochs 1..k do not depend on the budget and
    the resumed run is the run that had the larger budget from the start (tested)."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    expected = sequence_fingerprint(model.config, config, data, seed)
    run_dir = Path(run_dir) if run_dir is not None else None
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"epoch": 0, "score": -1.0, "state": None, "metrics": None}
    start = 1
    ckpt = read_last(run_dir, expected, device) if run_dir is not None and resume else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, best = ckpt["history"], ckpt["best"]
        _set_rng_state(ckpt["rng"][0])
        start = ckpt["epoch"] + 1
    rebuild = {"architecture": {"task": "sequence classification", "config": dataclasses.asdict(model.config),
                                "num_classes": data.num_classes,
                                "max_length": data.max_length, "vocab_size": data.vocab_size,
                                "channels": data.channels},
               "dataset": data.source}

    saved = start - 1

    def checkpoint(epoch: int) -> None:
        nonlocal saved
        saved = epoch
        if run_dir is None:
            return
        write_checkpoints(run_dir, epoch, model, optimizer, history, best, [_rng_state()], expected, rebuild)

    if ckpt is None:
        torch.manual_seed(seed)  # dropout draws
    since_best = 0 if not history else history[-1]["epoch"] - best["epoch"]
    stopped_early = False
    for epoch in range(start, config.epochs + 1):
        if config.patience is not None and since_best >= config.patience:
            stopped_early = True
            break
        started = time.perf_counter()
        model.train()
        batches = length_batches(data.train, data.lengths, config.batch_size,
                                 torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        total, correct, seen = 0.0, 0, 0
        for chunk in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress if progress is not None else None):
            inputs, lengths, y = _batch(data, chunk, device)
            logits = model(inputs, lengths)
            loss = F.cross_entropy(logits, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"epoch {epoch}: the training loss is {loss_value} (NaN/Inf); lower the "
                                         "learning rate (--lr) or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            total += loss_value * len(chunk)
            correct += int((logits.argmax(dim=-1) == y).sum())
            seen += len(chunk)
        train_seconds = time.perf_counter() - started
        val_acc, val_loss = evaluate_sequences(model, data, data.val, config.eval_batch_size)
        test_acc, _ = evaluate_sequences(model, data, data.test, config.eval_batch_size)
        row = {"epoch": epoch, "loss": total / seen, "train_acc": correct / seen, "val_acc": val_acc,
               "test_acc": test_acc, "val_loss": val_loss, "seconds": time.perf_counter() - started,
               "train_seconds": train_seconds}
        history.append(row)
        if val_acc > best["score"]:
            best = {"epoch": epoch, "score": val_acc, "metrics": dict(row),
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            since_best = 0
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch, row)
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            checkpoint(epoch)
    if history and saved != history[-1]["epoch"]:  # stopped early between checkpoints
        checkpoint(int(history[-1]["epoch"]))
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    chosen = best["metrics"]
    majority = float(torch.bincount(data.y[data.test], minlength=data.num_classes).max()) / max(1, len(data.test))
    result = RunResult(
        split=0, run=run, seed=seed, best_epoch=best["epoch"], val_acc=chosen["val_acc"], test_acc=chosen["test_acc"],
        train_acc=chosen["train_acc"], metric="accuracy", val_score=chosen["val_acc"], test_score=chosen["test_acc"],
        epochs_run=len(history), stopped_early=stopped_early, first_epoch_70=first_epoch_reaching(history),
        chance=majority, seconds_per_epoch=sum(r["seconds"] for r in history) / len(history), peak_memory_mb=None,
        extra={"parameters": sum(p.numel() for p in model.parameters())}, history=history)
    if run_dir is not None:
        write_json_atomic(result.summary(), run_dir / "result.json")
    return result


SUMMARY_FIELDS = ("run", "seed", "best_epoch", "val_acc", "test_acc", "train_acc", "epochs_run", "stopped_early",
                  "first_epoch_70", "chance", "seconds_per_epoch")


@dataclass
class SequenceExperiment:
    """A checked sequence-classification experiment (from :func:`prepare_sequences`): ``run()``
    trains ``runs`` initialisations (seeds ``seed``..``seed + runs − 1``) and writes them."""

    data: SequenceData
    model_config: SequenceModelConfig
    train_config: SequenceTrainConfig
    runs: int
    seed: int
    device: torch.device
    out: Path | None
    resume: bool
    overwrite: bool

    def run_dir(self, r: int) -> Path | None:
        return self.out / "split0" / f"run{r}" if self.out is not None else None

    def build(self) -> SequenceClassifier:
        """A fresh model for this data (drawn from torch's global generator)."""
        data = self.data
        return build_sequence_model(self.model_config, num_classes=data.num_classes, max_length=data.max_length,
                                    vocab_size=data.vocab_size, channels=data.channels).to(self.device)

    def run(self, *, progress: bool | None = None, log: Callable[[str], None] = print,
            on_run: Callable[[RunResult, SequenceClassifier], None] | None = None) -> dict[str, Any]:
        """Train every run (``overwrite``: after deleting ``out``'s results), write and return the
        results; ``on_run(result, model)`` sees every finished run with its best weights."""
        started = time.perf_counter()

        def train_one(r: int, run_seed: int, run_dir: Path | None) -> tuple[RunResult, SequenceClassifier]:
            model = self.build()
            return train_sequences(model, self.data, self.train_config, seed=run_seed, run=r, run_dir=run_dir,
                                   resume=self.resume, progress=progress), model

        results = run_seeds(self.out, self.overwrite, self.runs, self.seed, self.run_dir, train_one, history_fields(),
                            lambda r, result: f"run {r}: test accuracy {100 * result.test_acc:.1f} at epoch "
                                              f"{result.best_epoch} (val {100 * result.val_acc:.1f}; "
                                              f"{result.seconds_per_epoch:.1f} s/epoch)", log, on_run)
        test = [100 * r.test_acc for r in results]
        val = [100 * r.val_acc for r in results]
        payload = {
            "task": "sequence classification", "dataset": self.data.name, "source": dict(self.data.source),
            "num_sequences": len(self.data.y), "max_length": self.data.max_length,
            "split_sizes": [len(self.data.train), len(self.data.val), len(self.data.test)],
            "runs": self.runs, "seed": self.seed, "device": str(self.device),
            "model": dataclasses.asdict(self.model_config), "train": dataclasses.asdict(self.train_config),
            "parameters": results[0].extra["parameters"],
            "summary": {"test_mean": statistics.fmean(test), "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
                        "val_mean": statistics.fmean(val), "chance": 100 * results[0].chance,
                        "seconds_per_epoch": statistics.fmean(r.seconds_per_epoch for r in results),
                        "num_runs": len(results)},
            "results": [r.summary() for r in results], "wall_seconds": time.perf_counter() - started,
        }
        if self.out is not None:
            write_json_atomic(payload, self.out / "results.json")
            write_text_atomic(_csv([r.summary() for r in results], SUMMARY_FIELDS), self.out / "results.csv")
        return payload


def prepare_sequences(dataset: str | SequenceData, model_config: SequenceModelConfig,
                      train_config: SequenceTrainConfig, *, runs: int = 1, seed: int = 0,
                      root: str | Path | None = None, device: torch.device | str = "cpu",
                      out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                      data_options: dict[str, Any] | None = None) -> SequenceExperiment:
    """Check a sequence-classification experiment and load (or generate) its data, training
    nothing and touching no file: ``dataset`` a name of
    :data:`~diffusion_pde.data.sequences.SEQUENCE_DATASETS` (with ``data_options`` for its loader)
    or a :class:`~diffusion_pde.data.sequences.SequenceData`. Raises ValueError/TypeError naming
    the argument and the fix (bad settings, an ``out`` that is not ours or holds results without
    ``resume``/``overwrite``, a checkpoint written with other settings on resume)."""
    out_dir = check_one_split_args(model_config, SequenceModelConfig, train_config, SequenceTrainConfig, runs, seed, out, resume, overwrite)
    data = dataset if isinstance(dataset, SequenceData) else load_sequences(dataset, root=root, **(data_options or {}))
    experiment = SequenceExperiment(data, model_config, train_config, runs, seed, torch.device(device), out_dir,
                                    resume, overwrite)
    if resume and out_dir is not None:
        for r in range(runs):
            read_last(experiment.run_dir(r), sequence_fingerprint(model_config, train_config, data, seed + r))
    return experiment


def load_sequence_model(run: str | Path, *, device: torch.device | str = "cpu") -> SequenceClassifier:
    """The trained sequence classifier of ``run`` (a run folder, a results folder with one run, or
    a checkpoint file: ``best.pt`` preferred), in eval mode on ``device``: call it as
    ``model(inputs, lengths)`` (inputs [B, L] tokens or [B, L, C] values) for logits [B, classes].
    Raises FileNotFoundError (no checkpoint) or ValueError (a damaged checkpoint, or a run of
    another task), naming the file."""
    from .inference import find_checkpoint

    path = find_checkpoint(run)
    ckpt = load_checkpoint(path, device, keys=("model", "architecture"), weights_only=True,
                           remedy="train the run again (diffusion-pde train ... --overwrite), or use its other "
                                  "checkpoint (best.pt or last.pt) if that one is intact")
    spec = ckpt["architecture"]
    if not isinstance(spec, dict) or spec.get("task") != "sequence classification":
        raise ValueError(f"{path} is not a sequence-classification run; load node-classification runs with "
                         "diffusion_pde.training.load_model")
    with torch.random.fork_rng(devices=[]):  # the initial weights drawn here are replaced at once
        model = build_sequence_model(SequenceModelConfig(**spec["config"]), num_classes=spec["num_classes"],
                                     max_length=spec["max_length"], vocab_size=spec["vocab_size"],
                                     channels=spec["channels"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
