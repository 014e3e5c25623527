"""Help a newcomer can trust (every flag explained, with its real default) and readable plots."""

from __future__ import annotations

import argparse
import re

import matplotlib
import pytest
import torch
from matplotlib.ticker import MaxNLocator
from torch_geometric.data import Data

from diffusion_pde.cli import build_parser
from diffusion_pde.data import Split
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.training import MODEL_DEFAULTS, RunResult
from diffusion_pde.training.plots import attention_figure, learning_curves_figure

matplotlib.use("Agg")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["solve", "train", "predict", "sweep", "check"])
def test_every_flag_has_help_and_no_default_is_none(command: str) -> None:
    parser = subcommands()[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help text"
    text = parser.format_help()
    assert "default: None" not in text and "(default: )" not in text


def test_setting_defaults_are_the_real_ones() -> None:
    flags = {a.dest: a for a in subcommands()["train"]._actions}
    epochs = flags["epochs"].help
    assert "500 for difformer_s, difformer_a, transformer" in epochs and "100 for sgc" in epochs
    assert all(f"{MODEL_DEFAULTS[m]['epochs']} for" in epochs for m in ("gcn", "sgc"))
    assert "default: accuracy; roc_auc for minesweeper, tolokers" in flags["metric"].help
    assert re.search(r"default: 64; not used by sgc\)$", flags["hidden"].help)   # the same for every model using it
    source = flags["source_weight"].help                              # no default for models that cannot use it
    assert re.search(r"default: 0\.1 for difformer_s, appnp; 0 for difformer_a, transformer, sgc; not used by gat, gcn, "
                     r"mlp\)$", source)
    assert flags["layer_norm"].help.endswith("(default: on; not used by gat, gcn, sgc, appnp)")
    help_text = subcommands()["train"].format_help()
    assert "--preset paper" in help_text and "(default: 0)" in help_text  # zero defaults are shown too


def history(epochs: int, seed: int) -> list[dict[str, float]]:
    g = torch.Generator().manual_seed(seed)
    return [{"epoch": e, "loss": 2.0 / e, "val_acc": float(torch.rand(1, generator=g)),
             "test_acc": float(torch.rand(1, generator=g))} for e in range(1, epochs + 1)]


def result(split: int, seed: int) -> RunResult:
    return RunResult(split=split, run=0, seed=seed, best_epoch=3, val_acc=0.5, test_acc=0.5, train_acc=1.0,
                     metric="accuracy", val_score=0.5, test_score=0.5, epochs_run=7, stopped_early=False,
                     first_epoch_70=1, chance=0.3, seconds_per_epoch=0.01, peak_memory_mb=None, history=history(7, seed))


def test_learning_curves_have_integer_epochs_a_legend_per_run_and_the_chance_level() -> None:
    fig = learning_curves_figure([result(0, 0), result(1, 1)])
    ax_loss, ax_score = fig.axes
    for ax in (ax_loss, ax_score):
        locator = ax.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["split 0 run 0", "split 1 run 0"]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax_loss.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"[0-9.]+", label) for label in labels)   # plain numbers, not 10^x
    assert any(line.get_linestyle() == ":" and set(line.get_ydata()) == {30.0} for line in ax_score.get_lines())
    assert "chance: the majority class (30.0%)" in [t.get_text() for t in ax_score.get_legend().get_texts()]
    matplotlib.pyplot.close(fig)


def test_the_attention_heatmap_has_class_labels_and_one_colour_scale() -> None:
    ring = torch.stack([torch.arange(9), (torch.arange(9) + 1) % 9])
    graph = Data(x=torch.rand(9, 3), edge_index=ring, y=torch.arange(9) % 3)
    model = build_model(ModelConfig(num_layers=3, hidden=4), graph)
    split = Split("random", 0, torch.tensor([0]), torch.tensor([1]), torch.arange(9))
    fig = attention_figure(model, graph, split)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 3                                        # first, middle and last layer
    assert [t.get_text() for t in heatmaps[0].get_xticklabels()] == ["class 0", "class 1", "class 2"]
    assert {ax.images[0].get_clim() for ax in heatmaps} == {heatmaps[0].images[0].get_clim()}
    assert heatmaps[0].images[0].get_clim()[0] == 0
    matplotlib.pyplot.close(fig)
