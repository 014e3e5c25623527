"""Mini-batch training on large synthetic graphs: one epoch's time and peak memory versus N at a
fixed batch size, and one process × 2 threads against 2 processes × 1 thread (torchrun).

The graph is ``diffusion_pde.data.synthetic_graph(N)`` (10 planted classes, degree ≈ 10, 64
features); the model the 2-layer DIFFormer-s of ``scale_full_graph.py`` (hidden 64, 1 head, graph
term summed, LayerNorm, τ = 0.5, the CLI's defaults: global q/k normalisation, source weight 0.1);
the split random 50/25/25. One epoch = the optimisation steps over every partition of
``--batch-size`` nodes (one step each, on its induced subgraph) plus the evaluation on the full
graph. Each N runs in a fresh process, 1 thread; the resident memory (RSS) is sampled every 5 ms
by a thread, so the peak *during the epoch* is seen apart from the peak of generating the graph.

    python benchmarks/scale_minibatch.py [--sizes 250000 1000000 2000000] [--batch-size 100000]
                                         [--processes-at 1000000] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """The largest resident memory seen while the ``with`` block runs (sampled every 5 ms)."""

    def __enter__(self) -> "PeakRSS":
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def measure(n: int, batch_size: int) -> dict[str, float]:
    """In the child: generate the graph; then one epoch's optimisation steps (the loop of
    ``train_run``: partitions, induced subgraphs, Adam) and its full-graph evaluation (in chunks
    of the batch size), each with its own peak; a warm-up epoch first."""
    import torch
    import torch.nn.functional as F

    from diffusion_pde.data import random_split, synthetic_graph
    from diffusion_pde.diffusivities import on_graph
    from diffusion_pde.models import build_model
    from diffusion_pde.training import evaluate, resolve
    from diffusion_pde.training.batching import induced_batch, node_partitions

    torch.set_num_threads(1)
    data = synthetic_graph(n)
    split = random_split(data.y, 0, per_class=0.5, num_val=0.5, num_test=0.5)
    model_config, train_config = resolve("synthetic", "difformer_s", num_layers=2, hidden=64, heads=1, tau=0.5)
    torch.manual_seed(0)
    model = build_model(model_config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[split.train] = True
    data_mb = _rss_mb()

    def steps(epoch: int) -> None:
        model.train()
        for nodes in node_partitions(n, batch_size, seed=0, epoch=epoch):
            batch = induced_batch(data, nodes, mask)
            optimizer.zero_grad()
            with on_graph(model, batch.graph):
                logits = model(batch.graph.x)
                F.cross_entropy(logits[batch.train], batch.graph.y[batch.train]).backward()
            optimizer.step()

    steps(1)
    evaluate(model, data, split, chunk_size=batch_size)  # warm-up
    with PeakRSS() as train_peak:
        tick = time.perf_counter()
        steps(2)
        train_s = time.perf_counter() - tick
    with PeakRSS() as eval_peak:
        tick = time.perf_counter()
        evaluate(model, data, split, chunk_size=batch_size)
        eval_s = time.perf_counter() - tick
    return {"n": n, "edges": int(data.edge_index.shape[1]), "train_s": train_s, "eval_s": eval_s,
            "data_mb": data_mb, "train_extra_mb": train_peak.peak - data_mb, "eval_extra_mb": eval_peak.peak - data_mb,
            "peak_mb": max(train_peak.peak, eval_peak.peak)}


def run_child(n: int, batch_size: int) -> dict[str, float]:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from scale_minibatch import measure; "
            f"print(json.dumps(measure({n}, {batch_size})))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_epoch(n: int, batch_size: int, processes: int, threads: int) -> dict[str, float]:
    """One epoch through the command line (torchrun for several processes); its seconds per epoch
    and optimisation-step seconds from the written history."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", "diffusion_pde.cli", "train", "--dataset", "synthetic", "--num-nodes", str(n), "--model",
                "difformer_s", "--layers", "2", "--hidden", "64", "--tau", "0.5", "--epochs", "2", "--batch-size",
                str(batch_size), "--quiet", "--json", "--out", str(Path(tmp) / "out")]
        if processes > 1:
            args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *args]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True, env=env)
        json.loads(out.stdout)
        history = (Path(tmp) / "out" / "split0" / "run0" / "history.csv").read_text().splitlines()
        header, last = history[0].split(","), history[-1].split(",")  # epoch 2: after the warm-up epoch
        row = dict(zip(header, last))
        return {"processes": processes, "threads": threads, "epoch_s": float(row["seconds"]),
                "train_s": float(row["train_seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000])
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--processes-at", type=int, default=1_000_000, help="N of the processes comparison (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        rows.append(run_child(n, args.batch_size))
        r = rows[-1]
        print(f"N={n:>9,}: steps {r['train_s']:.2f} s (+{r['train_extra_mb']:.0f} MB), evaluation {r['eval_s']:.2f} s "
              f"(+{r['eval_extra_mb']:.0f} MB), data {r['data_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB", flush=True)
    lanes = []
    if args.processes_at:
        for processes, threads in ((1, 2), (2, 1)):
            lanes.append(cli_epoch(args.processes_at, args.batch_size, processes, threads))
            print(f"{processes} process(es) x {threads} thread(s): epoch {lanes[-1]['epoch_s']:.2f} s "
                  f"(steps {lanes[-1]['train_s']:.2f} s)", flush=True)

    lines = [
        "## Mini-batch training on synthetic graphs",
        "",
        f"`python benchmarks/scale_minibatch.py --sizes {' '.join(map(str, args.sizes))} --batch-size {args.batch_size} "
        f"--processes-at {args.processes_at}`: 2-layer DIFFormer-s (hidden 64, graph term summed, LayerNorm, τ = 0.5), "
        f"`synthetic_graph(N)`, random 50/25/25 split, partitions of {args.batch_size:,} nodes, 1 thread, a fresh "
        "process per N. *Steps*: one epoch's optimisation steps (every partition, on its induced subgraph; the loop of "
        "`train_run`); *evaluation*: the full graph in chunks of the batch size (its N-row states and logits grow "
        "with N by nature); the second epoch, after a warm-up. Memory: resident set sampled every 5 ms; *data* is the "
        "process after generating the graph and building the model; the other columns are peaks above it.",
        "",
        "| N | edges | steps [s] | evaluation [s] | data [MB] | steps: peak above data [MB] | evaluation: peak above data [MB] | peak [MB] |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['n']:,} | {r['edges']:,} | {r['train_s']:.2f} | {r['eval_s']:.2f} | {r['data_mb']:.0f} | "
          f"{r['train_extra_mb']:.0f} | {r['eval_extra_mb']:.0f} | {r['peak_mb']:.0f} |" for r in rows],
    ]
    if lanes:
        lines += ["", f"The same epoch at N = {args.processes_at:,} through the command line (torchrun for 2 processes):",
                  "", "| processes × threads | epoch [s] | of which steps [s] |", "|---|---:|---:|",
                  *[f"| {lane['processes']} × {lane['threads']} | {lane['epoch_s']:.2f} | {lane['train_s']:.2f} |"
                    for lane in lanes]]
    if not args.no_write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import write_section

        write_section("scale_minibatch", "\n".join(lines))


if __name__ == "__main__":
    main()
