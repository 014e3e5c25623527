"""Time per training epoch and peak memory on Fashion-MNIST without a graph, at 15k and 70k
instances: DIFFormer-s (O(N) attention over all instances) against an MLP (no propagation) at
each size and DIFFormer-a (O(N²)) at the smallest size, all in the same run.

Each (model, size) trains ``--epochs`` full-batch epochs through the library's own trainer
(``run_experiment``: forward, cross-entropy on the 100 training instances of a 10-per-class
split, backward, Adam step, then evaluation of all instances) in a fresh subprocess, so that its
peak resident memory is its own. Reported: the median seconds of the epochs after the first, and
the growth of the process's peak RSS (VmHWM, reset after loading the data) over its RSS
after loading (model, optimiser, activations, attention; Linux only). Models: 2 layers, hidden 64, the 784 pixel features, no
graph (``use_graph=False``), float32, CPU.

    python benchmarks/instances_scaling.py [--sizes 15000 70000] [--epochs 4] [--root ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import run_in_child, write_section  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def measure(model: str, n: int, epochs: int, root: str) -> dict[str, float]:
    """Runs inside the child process: median seconds per epoch (after the first) and the extra
    peak RSS of training ``model`` on ``n`` Fashion-MNIST instances."""
    import torch

    from diffusion_pde.data import load_dataset
    from diffusion_pde.training import resolve, run_experiment

    data = load_dataset("fashion-mnist", root=root, num_instances=n)
    model_config, train_config = resolve("fashion-mnist", model, num_layers=2, hidden=64, use_graph=False,
                                         epochs=epochs, checkpoint_every=epochs)
    histories = []
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) left by loading the data
    before = _status_kb("VmRSS")
    run_experiment(data, model_config, train_config, progress=False, log=lambda line: None,
                   on_run=lambda result, *_: histories.append(result.history))
    return {"model": model, "n": n, "seconds": statistics.median(row["seconds"] for row in histories[0][1:]),
            "extra_peak_mb": (_status_kb("VmHWM") - before) / 1024, "threads": torch.get_num_threads()}


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in kB (VmRSS: now, VmHWM: peak)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def run_child(model: str, n: int, epochs: int, root: str) -> dict[str, float]:
    return run_in_child("instances_scaling", f"measure({model!r}, {n}, {epochs}, {root!r})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[15_000, 70_000])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="the folder holding FashionMNIST/raw")
    parser.add_argument("--no-difformer-a", action="store_true", help="skip the O(N^2) DIFFormer-a baseline")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    runs = [(model, n) for n in args.sizes for model in ("difformer_s", "mlp")]
    if not args.no_difformer_a:
        runs.append(("difformer_a", args.sizes[0]))
    for model, n in runs:
        rows.append(run_child(model, n, args.epochs, args.root))
        r = rows[-1]
        print(f"{model:12s} N={n:>7,}: {r['seconds'] * 1e3:9.1f} ms/epoch, extra peak {r['extra_peak_mb']:8.1f} MB "
              f"({r['threads']} threads)", flush=True)
    by = {(r["model"], r["n"]): r for r in rows}
    small, large = args.sizes[0], args.sizes[-1]
    growth = large / small
    s_time = by["difformer_s", large]["seconds"] / by["difformer_s", small]["seconds"]
    s_memory = by["difformer_s", large]["extra_peak_mb"] / by["difformer_s", small]["extra_peak_mb"]
    threads = rows[0]["threads"]
    env = "OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"] + " " if "OMP_NUM_THREADS" in os.environ else ""
    lines = [
        "## Fashion-MNIST without a graph: time per epoch and peak memory versus N",
        "",
        f"`{env}python benchmarks/instances_scaling.py --sizes {' '.join(map(str, args.sizes))} --epochs {args.epochs}` "
        f"(torch on {threads} thread(s); one full-batch training epoch through `run_experiment`, evaluation included, "
        f"median of epochs 2–{args.epochs}; 2 layers, hidden 64, 784 pixel features, no graph, float32, CPU; extra peak "
        "memory = the process's peak RSS during training (VmHWM, reset after loading) minus its RSS after loading, in "
        "a fresh process per row).",
        "",
        "| model | N | time per epoch [ms] | extra peak memory [MB] |",
        "|---|---:|---:|---:|",
        *[f"| {r['model']} | {r['n']:,} | {r['seconds'] * 1e3:.0f} | {r['extra_peak_mb']:.0f} |" for r in rows],
        "",
        f"From {small:,} to {large:,} instances ({growth:.2f}× N) DIFFormer-s takes **{s_time:.2f}×** the time per "
        f"epoch and **{s_memory:.2f}×** the extra memory: "
        f"{'linear' if max(s_time, s_memory) <= 1.25 * growth else 'faster than linear'} in N (an O(N²) model would "
        f"take {growth ** 2:.0f}×). "
        + " ".join(f"At N = {n:,} DIFFormer-s costs {by['difformer_s', n]['seconds'] / by['mlp', n]['seconds']:.2f}× "
                   "the MLP's epoch." for n in args.sizes),
    ]
    if ("difformer_a", small) in by:
        a = by["difformer_a", small]
        lines.append(
            f"DIFFormer-a (all N² attention weights, kept for the backward pass) at N = {small:,}: "
            f"{a['seconds']:.1f} s per epoch and {a['extra_peak_mb'] / 1024:.1f} GB, "
            f"**{a['seconds'] / by['difformer_s', small]['seconds']:.0f}×** DIFFormer-s's time; at {large:,} its N² "
            f"attention weights alone would be {2 * 4 * large ** 2 / 2 ** 30:.0f} GB for 2 layers, so it is not run.")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("instances_scaling", text)


if __name__ == "__main__":
    main()
