"""Time and peak memory of one forward + backward of a Linear Diffusion Network stack versus L.

A stack of ``--layers`` LDN layers (``diffusion_pde.ldn``: one Euler step of learned stable size
of dH/dt = K H + (S_attn(H) − I) H + F(H), with K a position kernel, DIFFormer-s attention over the
tokens and a per-token MLP reaction) against the same number of ``torch.nn.TransformerEncoderLayer``
of similar size (d_model = d, 4 heads, feed-forward 2d, no dropout, batch first), on states
[batch, L, d] float32, for L = 1k, 2k, 4k, 8k. The loss is the mean square of the output; one
measurement is the median wall time of ``--repeats`` forward + backward passes after one
unmeasured pass, and the peak memory the growth of the process's peak RSS over them. Every
(model, L) runs in a fresh subprocess with ``--threads`` intra-op threads, so its peak memory is
its own. The fitted log–log slope of time versus L must stay ≤ 1.15 for the LDN stacks
(the issue's acceptance); the Transformer's slope is measured beside them.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sequence_scaling.py [--lengths 1024 2048 4096 8192]
        [--batch 8] [--dim 64] [--layers 2] [--repeats 3] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_seconds, run_in_child, write_section  # noqa: E402

# label -> how the stack is built (measure() knows each)
MODELS = {
    "LDN, window kernel (w = 4, 8 heads)": "ldn_window",
    "LDN, global FFT kernel (4 scales, 8 heads)": "ldn_global",
    "Transformer encoder (4 heads, ff 2d)": "transformer",
}
SLOPE_LIMIT = 1.15


def build(model: str, dim: int, layers: int):
    import torch

    from diffusion_pde.ldn import ldn_field, ldn_layer

    if model == "transformer":
        return torch.nn.Sequential(*[torch.nn.TransformerEncoderLayer(dim, 4, dim_feedforward=2 * dim, dropout=0.0,
                                                                      batch_first=True) for _ in range(layers)])
    kernel, params = {"ldn_window": ("sequence_window", {"window": 4, "heads": 8}),
                      "ldn_global": ("sequence_global", {"scales": 4, "heads": 8})}[model]
    return torch.nn.Sequential(*[ldn_layer(ldn_field(dim, kernel=kernel, kernel_params=params)) for _ in range(layers)])


def measure(model: str, length: int, batch: int, dim: int, layers: int, repeats: int) -> dict:
    """Runs inside the child process: median seconds and extra peak RSS of forward + backward."""
    import torch

    torch.manual_seed(0)
    net = build(model, dim, layers)
    x = torch.randn(batch, length, dim)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = median_seconds(step, repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"length": length, "seconds": seconds, "extra_peak_mb": (peak - before) / 1024,
            "parameters": sum(p.numel() for p in net.parameters()), "threads": torch.get_num_threads()}


def slope(rows: list[dict], key: str) -> float:
    return float(np.polyfit(np.log([r["length"] for r in rows]), np.log([max(r[key], 1e-3) for r in rows]), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    results: dict[str, list[dict]] = {}
    for label, model in MODELS.items():
        rows = results[label] = []
        for length in args.lengths:
            call = f"measure({model!r}, {length}, {args.batch}, {args.dim}, {args.layers}, {args.repeats})"
            rows.append(run_in_child("sequence_scaling", call, env=env))
            print(f"{label:45s} L={length:>6,}: {rows[-1]['seconds'] * 1e3:10.1f} ms, extra peak "
                  f"{rows[-1]['extra_peak_mb']:8.1f} MB", flush=True)
    slopes = {label: (slope(rows, "seconds"), slope(rows, "extra_peak_mb")) for label, rows in results.items()}
    for label, (s_t, s_m) in slopes.items():
        print(f"{label}: log-log slope of time {s_t:.3f}, of memory {s_m:.3f}")

    header = "| model | parameters | " + " | ".join(f"L = {n:,}: time [ms] / peak [MB]" for n in args.lengths) + \
             " | slope time | slope memory |"
    lines = [
        "## Sequence models: LDN versus a Transformer encoder, forward + backward versus L",
        "",
        f"`OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/sequence_scaling.py --lengths "
        f"{' '.join(map(str, args.lengths))} --batch {args.batch} --dim {args.dim} --layers {args.layers} --repeats "
        f"{args.repeats}` ({args.layers} layers each, states [{args.batch}, L, {args.dim}] float32, CPU, "
        f"{args.threads} thread(s); median of {args.repeats} forward + backward passes of the mean-square loss; peak "
        "memory = growth of the process's peak RSS, a fresh process per model and L). The machine is shared "
        "with other sessions, so absolute times are noisy; the slopes and the ratios within one run are the "
        "comparison.",
        "",
        header,
        "|---|---:|" + "---:|" * len(args.lengths) + "---:|---:|",
    ]
    for label, rows in results.items():
        cells = " | ".join(f"{r['seconds'] * 1e3:.0f} / {r['extra_peak_mb']:.0f}" for r in rows)
        s_t, s_m = slopes[label]
        lines.append(f"| {label} | {rows[0]['parameters']:,} | {cells} | {s_t:.2f} | {s_m:.2f} |")
    transformer = results[next(label for label, m in MODELS.items() if m == "transformer")]
    window = results[next(label for label, m in MODELS.items() if m == "ldn_window")]
    ratio = transformer[-1]["seconds"] / window[-1]["seconds"]
    lines += ["", f"At L = {args.lengths[-1]:,} the Transformer takes **{ratio:.1f}×** the time of the LDN stack with "
              f"the window kernel. Acceptance: the LDN time slopes must be ≤ {SLOPE_LIMIT}. The Transformer's memory "
              "grows linearly too (PyTorch's CPU scaled_dot_product_attention never stores the L × L weights); its "
              "time grows quadratically."]
    if not args.no_write:
        write_section("sequence_scaling", "\n".join(lines))
    bad = {label: s_t for label, (s_t, _) in slopes.items() if label.startswith("LDN") and s_t > SLOPE_LIMIT}
    if bad:
        raise SystemExit(f"LDN time grows faster than linearly: {bad}")


if __name__ == "__main__":
    main()
