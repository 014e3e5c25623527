"""Pictures of a training experiment: learning curves and the learned attention diffusivity."""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Data

from ..data import Split
from ..models import NodeClassifier
from .checkpoint import save_figure_atomic
from .loop import RunResult
from .metrics import METRIC_LABELS, score_key


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def learning_curves_figure(results: list[RunResult], title: str = ""):
    """The figure of :func:`plot_learning_curves` (matplotlib ``Figure``; close it when done)."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(12, 4.4))
    metric = results[0].metric
    val_key, test_key = score_key(metric, "val"), score_key(metric, "test")
    for r in results:
        epochs = [int(row["epoch"]) for row in r.history]
        line, = ax_loss.plot(epochs, [row["loss"] for row in r.history], lw=1, label=f"split {r.split} run {r.run}")
        colour = line.get_color()
        ax_score.plot(epochs, [100 * row[val_key] for row in r.history], lw=1, color=colour)
        ax_score.plot(epochs, [100 * row[test_key] for row in r.history], lw=1, ls="--", color=colour)
        ax_score.plot([r.best_epoch], [100 * r.test_score], "o", ms=4, color=colour)
    # chance: a constant prediction's score (the majority class's share; ROC-AUC 50%)
    chance = 50.0 if metric == "roc_auc" else 100 * max(r.chance for r in results)
    ax_score.axhline(chance, color="grey", ls=":", lw=1)
    for ax in (ax_loss, ax_score):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.set(ylabel="training loss (cross-entropy)", yscale="log", title="training loss")
    ax_loss.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_loss.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax_loss.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax_loss.legend(title="run", fontsize=7, ncol=max(1, len(results) // 10))
    ax_score.set(ylabel=f"{METRIC_LABELS[metric]} [%]", title=f"{METRIC_LABELS[metric]} per epoch")
    styles = [plt.Line2D([], [], color="black", lw=1, label="validation"),
              plt.Line2D([], [], color="black", lw=1, ls="--", label="test"),
              plt.Line2D([], [], color="black", marker="o", ls="", ms=4, label="test at the chosen epoch"),
              plt.Line2D([], [], color="grey", lw=1, ls=":",
                         label="chance (50%)" if metric == "roc_auc" else f"chance: the majority class ({chance:.1f}%)")]
    ax_score.legend(handles=styles, fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning_curves(results: list[RunResult], path: str | Path, title: str = "") -> None:
    """Training loss and the validation/test score (the runs' metric) per epoch, one colour per
    (split, run) named in the legend, with the chosen epoch and the chance level (a constant
    prediction's score); saved atomically to ``path``."""
    plt = _pyplot()
    fig = learning_curves_figure(results, title)
    save_figure_atomic(fig, path)
    plt.close(fig)


def sample_by_class(y: torch.Tensor, nodes: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Up to ``per_class`` of ``nodes`` from every class, ordered by class (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    nodes, labels = nodes.cpu(), y.cpu()[nodes.cpu()]
    picked = []
    for c in labels.unique(sorted=True):
        members = nodes[labels == c]
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.cat(picked)


def attention_figure(model: NodeClassifier, data: Data, split: Split, per_class: int = 20):
    """The figure of :func:`plot_attention` (matplotlib ``Figure``; close it when done)."""
    plt = _pyplot()
    nodes = sample_by_class(data.y, split.test, per_class).to(data.x.device)
    model.eval()
    with torch.no_grad():
        matrices = model.attention_matrices(data.x, nodes)
    layers = sorted({0, len(matrices) // 2, len(matrices) - 1})
    labels = data.y[nodes].cpu()
    classes, counts = torch.unique_consecutive(labels, return_counts=True)
    bounds = counts.cumsum(0)[:-1].tolist()
    centres = (counts.cumsum(0) - counts / 2 - 0.5).tolist()
    images = [(matrices[k] * data.num_nodes).cpu().numpy() for k in layers]
    top = max(float(image.max()) for image in images)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers) + 1.2, 4.8), squeeze=False, layout="constrained")
    for ax, k, image in zip(axes[0], layers, images):
        shown = ax.imshow(image, cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
        for b in bounds:
            ax.axhline(b - 0.5, color="grey", lw=0.5)
            ax.axvline(b - 0.5, color="grey", lw=0.5)
        ax.set_xticks(centres, [f"class {int(c)}" for c in classes], rotation=90, fontsize=7)
        ax.set_yticks(centres, [f"class {int(c)}" for c in classes], fontsize=7)
        # The range in the title: attention that is nearly uniform (the global q/k normalisation
        # of the authors' code) shows as one colour, and the numbers say how close to 1 it is.
        ax.set(title=f"layer {k + 1}: N·S in [{image.min():.4f}, {image.max():.4f}]", xlabel="attended node j")
    axes[0][0].set_ylabel("node i")
    fig.colorbar(shown, ax=axes[0].tolist(), fraction=0.03,
                 label=f"attention weight × N (N = {data.num_nodes}; 1 = uniform)")
    fig.suptitle(f"learned {model.config.model} attention among {len(nodes)} test nodes, grouped by class")
    return fig


def plot_attention(model: NodeClassifier, data: Data, split: Split, path: str | Path, per_class: int = 20) -> None:
    """Heatmaps of the learned attention S_attn(Z^k) of the first, middle and last layer on a
    class-ordered sample of test nodes (rows and columns labelled by class), on one linear colour
    scale from 0, entries scaled by N so that 1 is uniform attention; saved atomically."""
    plt = _pyplot()
    fig = attention_figure(model, data, split, per_class)
    save_figure_atomic(fig, path)
    plt.close(fig)
