"""Pictures of a forecasting experiment: learning curves (MSE per epoch against the last-value
floor) and the forecast of a trained model against the true series over the test period."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..data.temporal import TemporalSplit, Windows
from ..models import NodeClassifier
from .checkpoint import save_figure_atomic
from .forecasting import ForecastResult, predict_windows
from .plots import _pyplot


def forecast_curves_figure(results: list[ForecastResult], floor_mse: float, title: str = ""):
    """The figure of :func:`plot_forecast_curves` (matplotlib ``Figure``; close it when done)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(12, 4.4))
    for r in results:
        epochs = [int(row["epoch"]) for row in r.history]
        line, = ax_loss.plot(epochs, [row["loss"] for row in r.history], lw=1, label=f"run {r.run}")
        colour = line.get_color()
        ax_score.plot(epochs, [row["val_mse"] for row in r.history], lw=1, color=colour)
        ax_score.plot(epochs, [row["test_mse"] for row in r.history], lw=1, ls="--", color=colour)
        ax_score.plot([r.best_epoch], [r.test_mse], "o", ms=4, color=colour)
    ax_score.axhline(floor_mse, color="grey", ls=":", lw=1)
    for ax in (ax_loss, ax_score):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", yscale="log")
        ax.grid(alpha=0.3)
    ax_loss.set(ylabel="training loss (MSE)", title="training loss")
    ax_loss.legend(title="run", fontsize=7, ncol=max(1, len(results) // 10))
    ax_score.set(ylabel="MSE", title="MSE per epoch")
    styles = [plt.Line2D([], [], color="black", lw=1, label="validation"),
              plt.Line2D([], [], color="black", lw=1, ls="--", label="test"),
              plt.Line2D([], [], color="black", marker="o", ls="", ms=4, label="test at the chosen epoch"),
              plt.Line2D([], [], color="grey", lw=1, ls=":", label=f"last-value forecast, test ({floor_mse:.3f})")]
    ax_score.legend(handles=styles, fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_forecast_curves(results: list[ForecastResult], floor_mse: float, path: str | Path, title: str = "") -> None:
    """Training loss and validation/test MSE per epoch (log scale), one colour per run, with the
    chosen epoch and the last-value forecast's test MSE; saved atomically to ``path``."""
    plt = _pyplot()
    fig = forecast_curves_figure(results, floor_mse, title)
    save_figure_atomic(fig, path)
    plt.close(fig)


def busiest_nodes(windows: Windows, split: TemporalSplit, count: int = 4) -> list[int]:
    """The ``count`` nodes whose test targets vary most (largest variance over the test windows),
    in node order: the series where a forecast has the most to show."""
    spread = windows.y[list(split.test)].var(dim=0)
    return sorted(torch.argsort(spread, descending=True)[:count].tolist())


def forecast_figure(model: NodeClassifier, windows: Windows, split: TemporalSplit, nodes: Sequence[int],
                    names: Sequence[str] | None = None, title: str = ""):
    """The figure of :func:`plot_forecast` (matplotlib ``Figure``; close it when done)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    test = list(split.test)
    predicted = predict_windows(model, windows)[test].cpu()
    truth, last = windows.y[test].cpu(), windows.x[test, :, -1].cpu()
    times = windows.times[test].tolist()
    fig, axes = plt.subplots(len(nodes), 1, figsize=(10, 1.9 * len(nodes) + 0.6), sharex=True, squeeze=False)
    for ax, node in zip(axes[:, 0], nodes):
        ax.plot(times, truth[:, node], color="black", lw=1.2, label="true")
        ax.plot(times, predicted[:, node], color="tab:blue", lw=1, label=f"{model.config.model} forecast")
        ax.plot(times, last[:, node], color="grey", lw=0.8, ls=":", label="last value")
        mse = float((predicted[:, node] - truth[:, node]).square().mean())
        floor = float((last[:, node] - truth[:, node]).square().mean())
        name = names[node] if names is not None else f"node {node}"
        ax.set_ylabel(name, fontsize=8)
        ax.set_title(f"{name}: MSE {mse:.3f} (last value {floor:.3f})", fontsize=8, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=3)
    axes[-1, 0].set_xlabel("time step (test period)")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_forecast(model: NodeClassifier, windows: Windows, split: TemporalSplit, path: str | Path, *,
                  nodes: Sequence[int] | None = None, names: Sequence[str] | None = None, title: str = "") -> None:
    """The true series, ``model``'s one-step forecasts and the last-value forecast over the test
    windows for a few ``nodes`` (default: :func:`busiest_nodes`), one panel per node titled with
    both MSEs; saved atomically to ``path``."""
    plt = _pyplot()
    fig = forecast_figure(model, windows, split, busiest_nodes(windows, split) if nodes is None else nodes, names, title)
    save_figure_atomic(fig, path)
    plt.close(fig)
