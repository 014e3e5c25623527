"""Peak memory of chunked full-graph inference (``predict_chunked``) versus the one-shot forward.

A 2-layer DIFFormer-s (hidden 64, one head, graph term summed, LayerNorm, tau = 0.5, 7 classes;
random weights: memory does not depend on them) on a synthetic graph of N nodes with 64 Gaussian
features and 5N uniform random pairs made undirected (``torch_geometric.utils.to_undirected``).
Each (N, mode) runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``: the whole
process, with the graph, the features, the model's CSR operator and the Python/torch runtime) is
its own. Chunked inference runs at every size, one-shot at the sizes given by ``--one-shot``. At
N = 2M chunked inference must stay under 3 GB (``--limit-gb``).

    python benchmarks/chunked_inference.py [--sizes 250000 1000000 2000000] [--chunk-size 100000]
        [--one-shot 250000 1000000] [--no-write]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import run_in_child, write_section  # noqa: E402

STATES = ("x", "Z", "Z'")  # what a run must hold at N rows besides the graph


def rss_mb() -> float:
    """Current resident memory of this process [MB]."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    """Peak resident memory of this process [MB] (since the start, or since :func:`reset_peak`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start the peak over from the current resident memory (Linux >= 4.0: writing 5 to
    /proc/self/clear_refs resets the high-water mark that ``ru_maxrss`` reports)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def measure(n: int, chunk_size: int | None, seed: int = 0) -> dict[str, float]:
    """Runs inside the child process: build the graph and model, predict once, report memory."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    from diffusion_pde.models import ModelConfig, build_model, predict_chunked

    torch.manual_seed(seed)
    start_mb = rss_mb()
    x = torch.randn(n, 64)
    edge_index = to_undirected(torch.randint(0, n, (2, 5 * n)), num_nodes=n)
    num_edges = int(edge_index.shape[1])
    data = Data(x=x, edge_index=edge_index)
    config = ModelConfig(model="difformer_s", num_layers=2, hidden=64, heads=1, tau=0.5, use_graph=True,
                         graph_weight=None, layer_norm=True, dropout=0.0)
    model = build_model(config, data, num_classes=7).eval()
    del data, edge_index  # the model holds the normalised operator (CSR) it predicts with
    setup_rss, setup_peak = rss_mb(), peak_mb()
    reset_peak()  # from here on the peak is the inference's (the whole process: runtime, x, graph, model, states)
    begin, begin_cpu = time.perf_counter(), time.process_time()
    if chunk_size is None:
        with torch.no_grad():
            logits = model(x)
    else:
        logits = predict_chunked(model, x, chunk_size)
    seconds, cpu_seconds = time.perf_counter() - begin, time.process_time() - begin_cpu
    assert logits.shape == (n, 7) and bool(torch.isfinite(logits).all())
    return {"n": n, "edges": num_edges, "chunk_size": chunk_size, "seconds": seconds, "cpu_seconds": cpu_seconds, "import_mb": start_mb,
            "setup_rss_mb": setup_rss, "setup_peak_mb": setup_peak, "peak_mb": peak_mb(),
            "state_mb": n * 64 * 4 / 2**20}


def run_child(n: int, chunk_size: int | None) -> dict[str, float]:
    return run_in_child("chunked_inference", f"measure({n}, {chunk_size})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000])
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--one-shot", type=int, nargs="*", default=[250_000, 1_000_000],
                        help="the sizes at which the one-shot forward is measured too")
    parser.add_argument("--limit-gb", type=float, default=3.0, help="the largest size's chunked peak must stay below")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        for chunk in ([args.chunk_size] + ([None] if n in args.one_shot else [])):
            row = run_child(n, chunk)
            rows.append(row)
            mode = f"chunks of {chunk:,}" if chunk else "one shot"
            print(f"N={n:>9,} {mode:>17}: inference peak RSS {row['peak_mb']:6.0f} MB (resident before "
                  f"{row['setup_rss_mb']:6.0f} MB; graph/model build peak {row['setup_peak_mb']:6.0f} MB), "
                  f"{row['seconds']:6.2f} s ({row['cpu_seconds']:.2f} s CPU)", flush=True)

    largest = max(args.sizes)
    worst = max(r["peak_mb"] for r in rows if r["n"] == largest and r["chunk_size"])
    lines = [
        "## Chunked full-graph inference",
        "",
        f"`OMP_NUM_THREADS=1 python benchmarks/chunked_inference.py --sizes {' '.join(map(str, args.sizes))} "
        f"--chunk-size {args.chunk_size} --one-shot {' '.join(map(str, args.one_shot))}`: a 2-layer DIFFormer-s "
        "(hidden 64, 1 head, graph term summed, LayerNorm, τ = 0.5, 7 classes) on a random graph of N nodes with 64 "
        "Gaussian features and 5N uniform random pairs made undirected (`to_undirected`); float32, CPU, one thread, a "
        "fresh process per row. *Resident before* is the process's resident memory once the graph and the model are "
        "built (Python and torch ≈ 380 MB, the features, the model's CSR operator; the edge list freed). *Inference "
        "peak* is the peak RSS of the whole process during the prediction (`ru_maxrss`, its high-water mark reset "
        "after the build through `/proc/self/clear_refs`), so it includes all of that. *Build peak* is the peak "
        "before, while `to_undirected` and `build_model` assemble the graph and its normalised operator. Time is "
        "wall clock (the machine is shared with other jobs: compare the CPU time, the process's own).",
        "",
        "| N | edges | mode | resident before [MB] | inference peak [MB] | time [s] | CPU time [s] | build peak [MB] | one N×64 state [MB] |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['n']:,} | {r['edges']:,} | {'chunks of ' + format(r['chunk_size'], ',') if r['chunk_size'] else 'one shot'} "
          f"| {r['setup_rss_mb']:.0f} | **{r['peak_mb']:.0f}** | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['setup_peak_mb']:.0f} | {r['state_mb']:.0f} |"
          for r in rows],
        "",
        f"At N = {largest:,} chunked inference peaks at **{worst / 1024:.2f} GB** for the whole process (limit "
        f"{args.limit_gb:g} GB): beyond what was resident before, it holds the states Z and Z' (a source term would "
        "keep Z⁰ too) and the logits, plus temporaries of O(chunk size); the one-shot forward also builds N-row "
        "queries, keys, products and graph terms in every layer. The build peak is the graph's construction, not the "
        "inference's, and is the same for both modes.",
    ]
    if not args.no_write:
        write_section("chunked_inference", "\n".join(lines))
    if worst >= args.limit_gb * 1024:
        raise SystemExit(f"chunked inference at N={largest:,} peaked at {worst:.0f} MB >= {args.limit_gb:g} GB")


if __name__ == "__main__":
    main()
