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


def plot_learning_curves(results: list[RunResult], path: str | Path, title: str = "") -> None:
    """Training loss and the validation/test score (the runs' metric) per epoch, one thin line per
    (split, run)."""
    plt = _pyplot()
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
    metric = results[0].metric
    val_key, test_key = score_key(metric, "val"), score_key(metric, "test")
    for r in results:
        epochs = [row["epoch"] for row in r.history]
        ax_loss.plot(epochs, [row["loss"] for row in r.history], lw=0.8, alpha=0.7)
        line, = ax_score.plot(epochs, [100 * row[val_key] for row in r.history], lw=0.8, alpha=0.7)
        ax_score.plot(epochs, [100 * row[test_key] for row in r.history], lw=0.8, alpha=0.7, ls="--",
                      color=line.get_color())
        ax_score.plot([r.best_epoch], [100 * r.test_score], "o", ms=3, color=line.get_color())
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax_score.set(xlabel="epoch", ylabel=f"{METRIC_LABELS[metric]} [%]",
                 title="validation (solid), test (dashed), chosen epoch (dot)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
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


def plot_attention(model: NodeClassifier, data: Data, split: Split, path: str | Path, per_class: int = 20) -> None:
    """Heatmaps of the learned attention S_attn(Z^k) of the first, middle and last layer on a
    class-ordered sample of test nodes (rows and columns; entries scaled by N so 1 = uniform)."""
    plt = _pyplot()
    nodes = sample_by_class(data.y, split.test, per_class).to(data.x.device)
    model.eval()
    with torch.no_grad():
        matrices = model.attention_matrices(data.x, nodes)
    layers = sorted({0, len(matrices) // 2, len(matrices) - 1})
    labels = data.y[nodes].cpu()
    bounds = [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 4), squeeze=False)
    n = data.num_nodes
    for ax, k in zip(axes[0], layers):
        image = ax.imshow((matrices[k] * n).cpu().numpy(), cmap="viridis", interpolation="nearest")
        for b in bounds:
            ax.axhline(b - 0.5, color="white", lw=0.5)
            ax.axvline(b - 0.5, color="white", lw=0.5)
        ax.set(title=f"layer {k + 1}: N·S_ij", xlabel="node j (by class)", ylabel="node i (by class)")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"learned {model.config.model} attention on {len(nodes)} test nodes, ordered by class")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
