"""``diffusion-pde sweep``: accuracy versus depth L and step tau, with and without the source
term, and the Dirichlet energy of the final states — over-smoothing made visible.

For every (L, tau, mu) it trains the model (``--splits`` × ``--runs``) and measures, at
initialisation and after training, the normalised Dirichlet energy of the final hidden states
Z^L with respect to the graph's random-walk operator D̃⁻¹Ã,

    e(Z) = ½ Σ_ij Ã_ij ‖z_i − z_j‖² / Σ_i d̃_i ‖z_i‖²  ∈ [0, 2),

which is 0 exactly when all nodes (of a connected component) carry the same state, the
over-smoothed limit, and stays away from 0 when the source term mu (Z⁰ − Z) keeps the states
tied to the encoder's output.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import torch

from ..diffusivities import diffusivity_for
from ..data.sequences import SEQUENCE_DATASETS
from ..data.temporal import is_temporal
from ..energies import normalised_dirichlet_energy
from ..models import NodeClassifier, build_model
from ..models.config import SOURCE_TERM_MODELS, model_uses
from ..training import prepare_experiment
from ..training.checkpoint import save_figure_atomic, write_json_atomic
from ..training.outputs import SWEEP_LAYOUT, check_out, make_results_folder, remove_results, results_path
from ._common import HelpFormatter, flag_names, format_table, print_json, resolve_device, usage_errors
from .train import SIZE_FLAGS, add_model_arguments, dataset_arg, settings_from_args


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sweep", help="accuracy and Dirichlet energy versus depth, step and source term",
                            description=__doc__, formatter_class=HelpFormatter)
    add_model_arguments(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--depths", nargs="+", type=int, default=[2, 4, 8, 16, 32, 64], help="numbers of layers L")
    g.add_argument("--taus", nargs="+", type=float, default=[0.1, 0.25, 0.5, 0.8], help="Euler steps tau")
    g.add_argument("--source-weights", nargs="+", type=float, default=None, metavar="MU",
                   help="source weights mu (0 = no source term; default: 0 0.1, and only 0 for gcn and gat, which have "
                        "no source term)")
    g.add_argument("--out", default="runs/sweep", metavar="DIR",
                   help="results, checkpoints and plots; a new or empty folder, or one of our results folders")
    g.add_argument("--resume", action="store_true", help="skip finished configurations, continue interrupted ones")
    g.add_argument("--overwrite", action="store_true",
                   help="start over: first delete the files diffusion-pde wrote in --out (only those; a folder without "
                        "its .diffusion-pde-run marker, the current and the home folder are refused)")
    g.add_argument("--plot", action="store_true", help="save sweep.png (accuracy and energy versus depth) in --out")
    g.add_argument("--json", action="store_true", help="print the results as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    # the swept settings are set by the sweep's flags; --layers, --tau, --source-weight are refused
    p.set_defaults(run=run, flags={**flag_names(p), **SWEPT})


SWEPT = {"num_layers": "--depths", "tau": "--taus", "source_weight": "--source-weights"}  # setting -> the sweep's flag


def check_sweep(args: argparse.Namespace) -> None:
    """The sweep varies depth, step and source weight: their single-value flags and a model
    that uses none of them are refused, and so are the datasets of other tasks."""
    if is_temporal(args.dataset) or args.dataset in SEQUENCE_DATASETS:
        task = "forecasting" if is_temporal(args.dataset) else "sequence classification"
        raise ValueError(f"dataset {args.dataset!r} is for {task}, which the sweep (node classification over "
                         f"depth x tau x mu) does not run: train it with diffusion-pde train --dataset {args.dataset}")
    for name, sweep_flag in SWEPT.items():
        if getattr(args, name) is not None:
            flag = {"num_layers": "--layers", "tau": "--tau", "source_weight": "--source-weight"}[name]
            raise ValueError(f"{flag}: the sweep sets {name} from {sweep_flag}; drop {flag} (give {sweep_flag} one value "
                             "to fix it)")
    if args.depth == "continuous":
        raise ValueError("--depth continuous: the sweep varies the number of layers and the Euler step tau of a discrete "
                         "model; drop --depth, or compare integrators with diffusion-pde train --depth continuous "
                         "--eval-solvers")
    if not any(model_uses(args.model, name) for name in SWEPT):
        raise ValueError(f"--model {args.model} has no layers, step or source term for the sweep to vary; choose another "
                         "--model (or train it with diffusion-pde train)")


def source_weights(args: argparse.Namespace) -> list[float]:
    """--source-weights as given, else 0 and 0.1 where the model has a source term, only 0 where not."""
    if args.source_weights is not None:
        return args.source_weights
    return [0.0, 0.1] if args.model in SOURCE_TERM_MODELS else [0.0]


def normalised_energy(model: NodeClassifier, x: torch.Tensor, graph_operator) -> list[float]:
    """e(Z^k) for every hidden state Z^0..Z^L (eval mode), ``graph_operator`` = ``random_walk``."""
    model.eval()
    with torch.no_grad():
        return [float(normalised_dirichlet_energy(z, graph_operator)) for z in model.states(x)]


def run(args: argparse.Namespace) -> int:
    with usage_errors(args.flags):
        check_sweep(args)
        grid = list(itertools.product(source_weights(args), args.taus, args.depths))
        settings = [settings_from_args(args, num_layers=depth, tau=tau, source_weight=mu) for mu, tau, depth in grid]
        device = resolve_device(args.device)
        check_out(Path(args.out), args.resume, args.overwrite)  # its messages show --out as given
        out = results_path(args.out)
        experiments = []
        for (mu, tau, depth), (model_config, train_config) in zip(grid, settings):  # the data is loaded once, by the first
            experiments.append(prepare_experiment(
                experiments[0].data if experiments else dataset_arg(args), model_config, train_config, split=args.split,
                splits=args.splits, runs=args.runs, first_split=args.first_split, seed=args.seed, root=args.root,
                device=device, out=out / f"L{depth}-tau{tau:g}-mu{mu:g}", resume=args.resume, overwrite=not args.resume,
                **{name: getattr(args, name) for name in SIZE_FLAGS}))
        data, split = experiments[0].data, experiments[0].split
    if args.overwrite:
        remove_results(out, SWEEP_LAYOUT)
    make_results_folder(out)
    graph_operator = diffusivity_for("random_walk", graph=data).to(device)
    rows: list[dict[str, Any]] = []
    for number, ((mu, tau, depth), experiment) in enumerate(zip(grid, experiments), 1):
        torch.manual_seed(args.seed)
        initial = normalised_energy(build_model(experiment.model_config, data).to(device), data.x, graph_operator)
        trained: list[list[float]] = []
        payload = experiment.run(
            progress=False if args.quiet else None, log=lambda line: None,
            on_run=lambda result, model, _split: trained.append(normalised_energy(model, data.x, graph_operator)),
        )
        s = payload["summary"]
        row = {"layers": depth, "tau": tau, "source_weight": mu, "test_mean": s["test_mean"], "test_std": s["test_std"],
               "energy_init": initial[-1], "energy_trained": sum(e[-1] for e in trained) / len(trained),
               "energy_init_by_layer": initial, "energy_trained_by_layer": trained[0],
               "seconds_per_epoch": s["seconds_per_epoch"]}
        rows.append(row)
        if not (args.quiet or args.json):
            print(f"[{number}/{len(grid)}] L={depth} tau={tau:g} mu={mu:g}: test {row['test_mean']:.1f} ± "
                  f"{row['test_std']:.1f}, energy e(Z^L) at init {row['energy_init']:.2e}, trained {row['energy_trained']:.2e}",
                  flush=True)
    result = {"dataset": args.dataset, "model": args.model, "split": split, "splits": args.splits, "runs": args.runs,
              "train": payload["train"], "rows": rows}
    write_json_atomic(result, out / "sweep.json")
    if args.plot:
        plot_sweep(rows, out / "sweep.png", f"{args.dataset}: {args.model}")
        result["plot"] = str(out / "sweep.png")
    if args.json:
        print_json(result)
        return 0
    print(format_table(
        ["mu", "tau", "L", "test [%]", "e(Z^L) init", "e(Z^L) trained"],
        [[f"{r['source_weight']:g}", f"{r['tau']:g}", str(r["layers"]), f"{r['test_mean']:.1f} ± {r['test_std']:.1f}",
          f"{r['energy_init']:.2e}", f"{r['energy_trained']:.2e}"] for r in rows]))
    print(f"results: {out / 'sweep.json'}" + (f", {result['plot']}" if args.plot else ""))
    return 0


ROUND_OFF = 1e-8  # float32 states: energies below this are round-off (they can even come out negative)


def plot_sweep(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Test accuracy and final-state energy versus depth: one line per tau, solid without and
    dashed with the source term."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_init, ax_trained) = plt.subplots(1, 3, figsize=(15, 4.2))
    taus = sorted({r["tau"] for r in rows})
    colours = dict(zip(taus, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for (tau, mu) in sorted({(r["tau"], r["source_weight"]) for r in rows}):
        sel = sorted((r for r in rows if r["tau"] == tau and r["source_weight"] == mu), key=lambda r: r["layers"])
        style = dict(color=colours[tau], ls="-" if mu == 0 else "--", marker="o", ms=3, label=f"tau={tau:g}, mu={mu:g}")
        depths = [r["layers"] for r in sel]
        ax_acc.plot(depths, [r["test_mean"] for r in sel], **style)
        ax_init.plot(depths, [max(r["energy_init"], ROUND_OFF) for r in sel], **style)
        ax_trained.plot(depths, [max(r["energy_trained"], ROUND_OFF) for r in sel], **style)
    ax_acc.set(xscale="log", xlabel="layers L", ylabel="test accuracy [%]", title="accuracy")
    ax_init.set(xscale="log", yscale="log", xlabel="layers L", ylabel="e(Z^L)", title="Dirichlet energy at initialisation")
    ax_trained.set(xscale="log", yscale="log", xlabel="layers L", ylabel="e(Z^L)", title="Dirichlet energy after training")
    for ax in (ax_init, ax_trained):
        ax.axhline(ROUND_OFF, color="grey", ls=":", lw=1)
        ax.text(min(r["layers"] for r in rows), ROUND_OFF * 2, "float32 round-off (values at or below this line)", fontsize=7, color="grey")
    for ax in (ax_acc, ax_init, ax_trained):
        ax.minorticks_off()
        ax.set_xticks(sorted({r["layers"] for r in rows}), [str(d) for d in sorted({r["layers"] for r in rows})])
    ax_acc.legend(fontsize=7)
    fig.suptitle(f"{title}: solid = no source term, dashed = source term")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
