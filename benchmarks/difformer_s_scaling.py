"""Time and peak memory of one DIFFormer-s field evaluation versus N (linear in N expected).

One evaluation of F(Z) = S(Z) Z − Z with the ``difformer_s`` diffusivity (row-normalised q, k;
one head, key width = d) at N = 10k, 100k, 1M nodes, d = 64, float32. Each size runs in a
fresh subprocess so that its peak resident memory is its own; the fitted log-log slope of time
versus N must stay below 1.15. At the smallest N the same evaluation through the brute-force
dense matrix (``S.dense(Z) @ Z − Z``, O(N²)) is timed in the same run as the baseline.

    python benchmarks/difformer_s_scaling.py [--sizes 10000 100000 1000000] [--dim 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import run_in_child, write_section  # noqa: E402


def measure(n: int, dim: int, repeats: int, dense: bool) -> dict[str, float]:
    """Runs inside the child process: median seconds and extra peak RSS of one evaluation."""
    import torch

    import diffusion_pde as dp

    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    s = dp.diffusivity("difformer_s", in_channels=dim)
    field = dp.DiffusionField(s)
    z = torch.randn(n, dim)
    evaluate = (lambda: s.dense(z) @ z - z) if dense else (lambda: field(torch.zeros(()), z))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    evaluate()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate()
        times.append(time.perf_counter() - start)
    return {"n": n, "seconds": float(np.median(times)), "extra_peak_mb": (peak - before) / 1024,
            "state_mb": n * dim * 4 / 2**20}


def run_child(n: int, dim: int, repeats: int, dense: bool) -> dict[str, float]:
    return run_in_child("difformer_s_scaling", f"measure({n}, {dim}, {repeats}, {dense})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        rows.append(run_child(n, args.dim, args.repeats, dense=False))
        print(f"N={n:>9,}: {rows[-1]['seconds'] * 1e3:9.2f} ms, extra peak {rows[-1]['extra_peak_mb']:8.1f} MB", flush=True)
    baseline = run_child(args.sizes[0], args.dim, max(1, args.repeats // 2), dense=True)
    log_n = np.log([r["n"] for r in rows])
    slope_t = float(np.polyfit(log_n, np.log([r["seconds"] for r in rows]), 1)[0])
    slope_m = float(np.polyfit(log_n, np.log([max(r["extra_peak_mb"], 1e-3) for r in rows]), 1)[0])
    ratio = baseline["seconds"] / rows[0]["seconds"]
    print(f"log-log slope of time vs N: {slope_t:.3f}, of memory: {slope_m:.3f}; dense baseline at N={args.sizes[0]:,} is {ratio:.1f}x slower")

    lines = [
        "## DIFFormer-s field evaluation versus N",
        "",
        f"`python benchmarks/difformer_s_scaling.py --sizes {' '.join(map(str, args.sizes))} --dim {args.dim} "
        f"--repeats {args.repeats}` (one evaluation of F(Z) = S(Z)Z − Z, float32, CPU, median of {args.repeats}; "
        "peak memory = growth of the process's peak RSS during the first evaluation, in a fresh process per size).",
        "",
        "| N | time [ms] | extra peak memory [MB] | one N×d state [MB] |",
        "|---:|---:|---:|---:|",
        *[f"| {r['n']:,} | {r['seconds'] * 1e3:.2f} | {r['extra_peak_mb']:.1f} | {r['state_mb']:.1f} |" for r in rows],
        "",
        f"Fitted log-log slope of time versus N: **{slope_t:.3f}** (linear is 1; the requirement is < 1.15); "
        f"of extra peak memory: **{slope_m:.3f}**.",
        f"Baseline in the same run: the brute-force dense S at N = {args.sizes[0]:,} takes "
        f"{baseline['seconds'] * 1e3:.1f} ms and {baseline['extra_peak_mb']:.0f} MB extra, "
        f"**{ratio:.1f}×** the time of the O(N) form.",
    ]
    if not args.no_write:
        write_section("difformer_s_scaling", "\n".join(lines))
    if slope_t >= 1.15:
        raise SystemExit(f"time grows faster than linearly: slope {slope_t:.3f} >= 1.15")


if __name__ == "__main__":
    main()
