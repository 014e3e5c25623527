"""Time and peak memory of generating the synthetic benchmark graph (diffusion_pde.data.synthetic_graph).

Each size runs in a fresh process with one intra-op thread, generating the graph ``--repeat``
times (the fastest wall time is reported, with its CPU time: the machine is shared); memory is
the growth of the process's peak resident set (VmHWM, reset before) during the first generation
over what it held before (torch and PyG imported), next to the size of the graph itself (x, edge_index, y).

    OMP_NUM_THREADS=1 python benchmarks/synthetic_graph.py 250000 1000000 2000000 [--repeat 3] [--write]

``--write`` puts the table into docs/scale.md (between its own markers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SCALE_MD = Path(__file__).resolve().parents[1] / "docs" / "scale.md"

CHILD = """
import json, sys, time
import torch
from diffusion_pde.data import synthetic_graph
torch.set_num_threads(1)
synthetic_graph(1000)  # warm up (first calls of each kernel)
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set (VmHWM) to the current one
before = status_mb("VmRSS")
best = peak = None
for _ in range(int(sys.argv[2])):
    data = None
    start, cpu = time.perf_counter(), time.process_time()
    data = synthetic_graph(int(sys.argv[1]))
    timing = (time.perf_counter() - start, time.process_time() - cpu)
    best = timing if best is None or timing[0] < best[0] else best
    peak = peak or status_mb("VmHWM")  # the first generation's
seconds, cpu_seconds = best
size = sum(t.numel() * t.element_size() for t in (data.x, data.edge_index, data.y)) / 2**20
e = data.edge_index
print(json.dumps({"nodes": data.num_nodes, "edges": int(e.shape[1]), "seconds": seconds, "cpu_seconds": cpu_seconds,
                  "before_mb": before,
                  "peak_mb": peak, "graph_mb": size, "degree": e.shape[1] / data.num_nodes,
                  "homophily": float((data.y[e[0]] == data.y[e[1]]).float().mean())}))
"""


def measure(num_nodes: int, repeat: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(num_nodes), str(repeat)], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| nodes | edges (directed) | avg degree | homophily | time (s) | CPU time (s) | peak memory growth (MB) | "
             "graph size (MB) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['nodes']:,} | {r['edges']:,} | {r['degree']:.2f} | {r['homophily']:.3f} | {r['seconds']:.2f} | "
                     f"{r['cpu_seconds']:.2f} | "
                     f"{r['peak_mb'] - r['before_mb']:.0f} | {r['graph_mb']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[250_000, 1_000_000, 2_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="generations per size; the fastest is reported")
    parser.add_argument("--write", action="store_true", help="write the table into docs/scale.md")
    args = parser.parse_args()
    markdown = table([measure(n, args.repeat) for n in args.sizes])
    print(markdown)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import write_section

        write_section("synthetic-graph", markdown, path=SCALE_MD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
