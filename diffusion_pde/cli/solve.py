"""``diffusion-pde solve``: diffuse node features with several integrators and compare them.

For each method it reports the error of Z(t1) against the exact solution (``scipy.linalg.expm``,
for state-independent diffusivities), the work (steps, function evaluations), the wall time and
the Dirichlet energy at the saved times. The graph is the embedded Cora or your own (``--dataset
PATH``: a saved Data or a folder of edge_index/x .csv/.npy files; labels are not needed).

Memory is bounded before any work: the saved states and the dense expm reference may take at
most 2 GiB each (the error says how far to lower ``--n-save`` or to pass ``--no-reference``), and
the fixed-step grid at most 100,000 steps.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch

import solvers

from ..data import load_cora, load_graph, row_normalise
from ..diffusivities import (
    Diffusivity,
    QueryKeyDiffusivity,
    available_diffusivities,
    diffusivity_class,
    diffusivity_for,
)
from ..energies import dirichlet_energy
from ..exact import exact_solution
from ..field import DiffusionField
from ..training.checkpoint import save_figure_atomic
from ._common import (
    DTYPES,
    HelpFormatter,
    check_figure_path,
    flag_names,
    format_table,
    print_json,
    resolve_device,
    time_progress,
    usage_errors,
)

MEMORY_BUDGET = 2**31      # bytes the saved states of one method, and the dense expm reference, may take each
EXPM_DENSE_COPIES = 5      # N x N float64 matrices alive in exact_solution (S, I, M, e^{tM}, expm's work)
MAX_FIXED_STEPS = 100_000  # the fixed-step solvers build their time grid as Python floats
MAX_SAVED_TIMES = 10_000   # so do the saved times, and the report lists an energy for each


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "solve",
        help="diffuse node features with one or several ODE methods and compare them with the exact solution",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", default="cora", metavar="cora|PATH",
                   help="graph and features: the embedded cora, or your own graph (a saved Data .pt, or a folder with "
                        "edge_index and x as .csv or .npy files; see docs/training.md)")
    p.add_argument("--diffusivity", default="random_walk", metavar="NAME",
                   help=f"diffusivity S; one of: {', '.join(available_diffusivities())}")
    p.add_argument("--source-weight", type=float, default=0.0, metavar="MU",
                   help="source weight mu in [0, 1]: dZ/dt = (1-mu)(SZ - Z) + mu(Z0 - Z)")
    p.add_argument("--t1", type=float, default=2.0, help="end time")
    p.add_argument("--method", nargs="+", default=["euler", "rk4", "dopri5"], metavar="METHOD",
                   help=f"one or several of: {', '.join(solvers.available_methods())}")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--n-steps", type=int, default=None,
                       help=f"fixed-step methods: number of equal steps, at most {MAX_FIXED_STEPS:,} (default: 20)")
    steps.add_argument("--dt", type=float, default=None, help="fixed-step methods: step size (default: t1 / --n-steps)")
    p.add_argument("--rtol", type=float, default=1e-6, help="adaptive methods: relative tolerance")
    p.add_argument("--atol", type=float, default=1e-8, help="adaptive methods: absolute tolerance")
    p.add_argument("--n-save", type=int, default=None,
                   help="number of equally spaced times in [0, t1] at which the state is kept and the energy recorded, "
                        "at most 10,000 and as many as fit in 2 GiB (default: up to 11, chosen on the fixed-step grid so that no "
                        "extra steps are needed)")
    p.add_argument("--key-channels", type=int, default=64, help="query/key width of learned attention diffusivities")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the exact expm reference (it is a dense N x N matrix exponential)")
    p.add_argument("--dtype", default="float64", choices=sorted(DTYPES), help="floating type of the states")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)")
    p.add_argument("--raw-features", action="store_true",
                   help="cora: diffuse the raw 0/1 features instead of row-normalised ones (a graph from a file is "
                        "always diffused as stored)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="save Dirichlet energy versus time per method")
    p.add_argument("--overwrite", action="store_true", help="replace the --plot file if it exists")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights of learned diffusivities")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run, flags=flag_names(p))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_method(field: DiffusionField, energy_op: Diffusivity, z0: torch.Tensor, args: argparse.Namespace, method: str,
               t_eval: list[float], exact: torch.Tensor | None) -> dict[str, Any]:
    """Solve with one method and collect its error, work, time and energies."""
    options: dict[str, Any] = {"method": method, "t_eval": t_eval}
    if method in solvers.fixed_step_methods():
        if args.dt is not None:
            options["dt"] = args.dt
        else:
            options["n_steps"] = 20 if args.n_steps is None else args.n_steps
    else:
        options.update(rtol=args.rtol, atol=args.atol)
    with time_progress(args.t1, method, args.quiet) as bar:
        def advance(t: float, z: torch.Tensor) -> None:
            bar.update(t - bar.n)
        _sync(z0.device)
        start = time.perf_counter()
        with torch.no_grad():
            solution = solvers.solve(field, z0, args.t1, callback=advance, **options)
        _sync(z0.device)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        energies = [float(dirichlet_energy(z, energy_op)) for z in solution.states]
    row: dict[str, Any] = {"method": method, **solution.stats.as_dict(), "wall_seconds": seconds,
                           "times": solution.times.tolist(), "dirichlet_energy": energies}
    if exact is not None:
        diff = solution.final.detach().cpu().double() - exact
        row["max_abs_error"] = float(diff.abs().max())
        row["rel_error"] = float(diff.norm() / exact.norm())
    return row


def fixed_steps(args: argparse.Namespace) -> int:
    """The number of steps of the fixed-step methods."""
    return math.ceil(args.t1 / args.dt - 1e-9) if args.dt is not None else (args.n_steps or 20)


def default_n_save(steps: int) -> int:
    """Up to 11 saved times that lie on the fixed-step grid (``steps`` divisible by n_save − 1)."""
    return 1 + max(d for d in range(1, 11) if steps % d == 0)


def prepare(args: argparse.Namespace) -> tuple[torch.device, str, Diffusivity, Diffusivity, DiffusionField, torch.Tensor]:
    """Check every argument and build the problem before any integration: (device, the graph's
    name, S, the operator of the Dirichlet energy, the field, Z⁰)."""
    if not (math.isfinite(args.t1) and args.t1 > 0):
        raise ValueError(f"--t1 must be a positive finite time, got {args.t1}")
    if args.dt is not None and not (math.isfinite(args.dt) and args.dt > 0):
        raise ValueError(f"--dt: dt must be > 0 and finite, got {args.dt}; or give --n-steps instead")
    if args.n_steps is not None and args.n_steps < 1:
        raise ValueError(f"--n-steps: n_steps must be a positive integer (>= 1), got {args.n_steps}")
    if any(m in solvers.fixed_step_methods() for m in args.method) and fixed_steps(args) > MAX_FIXED_STEPS:
        given = f"--dt {args.dt}" if args.dt is not None else f"--n-steps {args.n_steps}"
        raise ValueError(f"{given} asks for {fixed_steps(args):,} fixed steps; the most is {MAX_FIXED_STEPS:,} (the "
                         "time grid is built in Python): take fewer, larger steps, or an adaptive method such as dopri5")
    for flag, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a finite tolerance > 0, got {value}")
    unknown = [m for m in args.method if m not in solvers.available_methods()]
    if unknown:
        raise ValueError(f"unknown --method {', '.join(unknown)}; valid: {', '.join(solvers.available_methods())}")
    steps = fixed_steps(args)
    if args.n_save is None:
        args.n_save = default_n_save(steps)
    if args.n_save < 2:
        raise ValueError("--n-save must be at least 2 (the start and the end time)")
    if args.n_save > MAX_SAVED_TIMES:
        raise ValueError(f"--n-save {args.n_save} is more saved times than the {MAX_SAVED_TIMES:,} the report can hold; "
                         f"lower --n-save to at most {MAX_SAVED_TIMES:,}")
    if args.n_save > steps + 1 and any(m in solvers.fixed_step_methods() for m in args.method):
        raise ValueError(f"--n-save {args.n_save} asks for more saved times than the {steps} fixed steps give "
                         f"({steps + 1}; each extra time would add a step): lower --n-save or raise --n-steps")
    if args.plot:
        check_figure_path(args.plot, "--plot", args.overwrite)
    device, dtype = resolve_device(args.device), DTYPES[args.dtype]
    data, z0 = load_features(args, dtype)
    z0 = z0.to(device)
    state_bytes = z0.numel() * z0.element_size()
    if args.n_save * state_bytes > MEMORY_BUDGET:
        raise ValueError(f"--n-save {args.n_save} would keep {args.n_save} states of {z0.shape[0]} x {z0.shape[1]} "
                         f"{args.dtype} ({args.n_save * state_bytes / 2**30:.1f} GiB, over the budget of "
                         f"{MEMORY_BUDGET / 2**30:.0f} GiB); lower --n-save to at most {MEMORY_BUDGET // state_bytes}")
    torch.manual_seed(args.seed)  # learned diffusivities get seeded random weights
    learned_qk = issubclass(diffusivity_class(args.diffusivity), QueryKeyDiffusivity)
    extra = {"key_channels": args.key_channels} if learned_qk else {}
    s = diffusivity_for(args.diffusivity, graph=data, in_channels=z0.shape[1], dtype=dtype, **extra).to(device)
    dense_bytes = EXPM_DENSE_COPIES * 8 * z0.shape[0] ** 2
    if not s.properties.depends_on_state and not args.no_reference and dense_bytes > MEMORY_BUDGET:
        raise ValueError(f"the exact reference (scipy expm of the dense {z0.shape[0]} x {z0.shape[0]} matrix) would take "
                         f"about {dense_bytes / 2**30:.1f} GiB, over the budget of {MEMORY_BUDGET / 2**30:.0f} GiB; pass "
                         "--no-reference to compare the methods without it")
    # The energy is measured with S itself when S is a fixed graph operator, else with the graph's gcn operator.
    energy_op = s if s.node_measure() is not None else diffusivity_for("gcn", graph=data, dtype=dtype).to(device)
    field = DiffusionField(s, source_weight=args.source_weight).set_initial_state(z0)
    return device, data.name, s, energy_op, field, z0


def load_features(args: argparse.Namespace, dtype: torch.dtype) -> tuple[Any, torch.Tensor]:
    """The graph and Z⁰: the embedded Cora (row-normalised unless ``--raw-features``) or the graph
    at ``--dataset PATH`` with its features as stored."""
    if args.dataset == "cora":
        data = load_cora(dtype=dtype)
        return data, data.x if args.raw_features else row_normalise(data.x)
    if not Path(args.dataset).exists():
        raise FileNotFoundError(f"--dataset {args.dataset!r} is neither cora (embedded) nor an existing file or folder; "
                                "give a saved Data (.pt) or a folder with edge_index and x as .csv or .npy files")
    if args.raw_features:
        raise ValueError("--raw-features keeps the embedded cora's 0/1 features; a graph from a file is diffused with "
                         "its features as stored: drop --raw-features")
    data = load_graph(args.dataset, dtype=dtype, require_labels=False)
    return data, data.x


def run(args: argparse.Namespace) -> int:
    with usage_errors(args.flags):
        device, name, s, energy_op, field, z0 = prepare(args)

    exact, exact_seconds, exact_energy = None, None, None
    if not s.properties.depends_on_state and not args.no_reference:
        start = time.perf_counter()
        exact = exact_solution(s, z0, args.t1, args.source_weight)
        exact_seconds = time.perf_counter() - start
        exact_energy = float(dirichlet_energy(exact.to(device=device, dtype=z0.dtype), energy_op))
    t_eval = torch.linspace(0.0, args.t1, args.n_save, dtype=torch.float64)
    rows = [run_method(field, energy_op, z0, args, m, t_eval, exact) for m in args.method]

    payload = {
        "dataset": name, "num_nodes": int(z0.shape[0]), "num_features": int(z0.shape[1]),
        "diffusivity": args.diffusivity, "energy_operator": energy_op.name, "source_weight": args.source_weight, "t1": args.t1,
        "dtype": args.dtype, "device": str(device), "nonlinear": s.properties.depends_on_state,
        "exact": {"method": "scipy.linalg.expm", "seconds": exact_seconds, "dirichlet_energy_t1": exact_energy}
        if exact is not None else None,
        "methods": rows,
    }
    if args.plot:
        plot_energies(payload, args.plot)
    if args.json:
        print_json(payload)
    else:
        print_report(payload)
    return 0


def print_report(payload: dict[str, Any]) -> None:
    rows = payload["methods"]
    print(f"{payload['dataset']}: {payload['num_nodes']} nodes x {payload['num_features']} features, "
          f"diffusivity={payload['diffusivity']}, source weight={payload['source_weight']}, "
          f"t1={payload['t1']}, {payload['dtype']} on {payload['device']}")
    exact = payload["exact"]
    if exact:
        print(f"reference: exact solution by scipy.linalg.expm ({exact['seconds']:.2f} s)")
    elif payload["nonlinear"]:
        print("reference: none (S depends on Z, so the diffusion is nonlinear and has no expm solution)")
    else:
        print("reference: skipped (--no-reference)")
    print(f"E = Dirichlet energy <Z, (I - S)Z>_m of the {payload['energy_operator']} operator")
    headers = ["method", "steps", "nfe", "max|err|", "rel err", "time [s]", "E(t1)"]
    table = []
    for r in rows:
        energy = r["dirichlet_energy"]
        table.append([r["method"], str(r["steps"]), str(r["nfe"]),
                      f"{r['max_abs_error']:.3e}" if "max_abs_error" in r else "n/a",
                      f"{r['rel_error']:.3e}" if "rel_error" in r else "n/a",
                      f"{r['wall_seconds']:.3f}", f"{energy[-1]:.6g}"])
    if exact:
        table.append(["exact", "", "", "0", "0", f"{exact['seconds']:.3f}", f"{exact['dirichlet_energy_t1']:.6g}"])
    print(format_table(headers, table))
    if rows:
        print("\nDirichlet energy at the saved times")
        times = rows[0]["times"]
        print(format_table(["t", *[r["method"] for r in rows]],
                           [[f"{t:.3g}", *[f"{r['dirichlet_energy'][i]:.6g}" for r in rows]] for i, t in enumerate(times)]))


def plot_energies(payload: dict[str, Any], path: str) -> None:
    """Dirichlet energy versus time, one line per method (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in payload["methods"]:
        ax.plot(r["times"], r["dirichlet_energy"], marker="o", markersize=3, label=f"{r['method']} ({r['nfe']} nfe)")
    exact = payload["exact"]
    if exact:
        ax.plot([payload["t1"]], [exact["dirichlet_energy_t1"]], "k*", markersize=10, label="exact (expm) at t1")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(f"Dirichlet energy ({payload['energy_operator']} operator)")
    ax.set_title(f"{payload['dataset']}: {payload['diffusivity']} diffusion, μ = {payload['source_weight']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
