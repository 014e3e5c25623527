"""Full-graph DIFFormer-s at scale: build, forward, training step and peak memory versus N.

The model of issue 18: 2-layer DIFFormer-s, hidden 64, 1 head, the input graph's ``gcn`` term
summed, LayerNorm, τ = 0.5, 7 classes, with the command line's defaults for DIFFormer-s
(``MODEL_DEFAULTS``: global q/k normalisation, source weight μ = 0.1; dropout 0.2). The graph has
N nodes with 64 Gaussian features, 5N uniform random node pairs made undirected
(``to_undirected``) and a self-loop on every node (average degree ≈ 11), seeded.

Per N, in a fresh subprocess (so the peak memory is that N's own):

* build: ``build_model(config, data)`` (the model and its normalised graph operator);
* forward: ``model.eval()`` + ``torch.no_grad()`` forward of all nodes;
* train step: train-mode forward, cross-entropy on all nodes, backward, Adam step (lr 1e-3,
  weight decay 0.01, the training defaults);
* peak: the process's peak resident memory (``ru_maxrss``) at the end, graph and features included.

Times are medians of ``--repeats`` runs after one warm-up (build: warmed up on a 1,000-node graph).
``--baseline-commit REV`` measures the code of an older commit in the same run (checked out in a
temporary ``git worktree``, put first on the child's ``PYTHONPATH``) and reports old/new ratios.

    OMP_NUM_THREADS=1 python benchmarks/scale_full_graph.py [--sizes 100000 500000 1000000 2000000]
        [--repeats 3] [--threads 1] [--baseline-commit fa1a2b3] [--no-write]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import baseline_tree, median_seconds, run_in_child, write_section  # noqa: E402
FEATURES, CLASSES, PAIRS_PER_NODE = 64, 7, 5


def make_graph(n: int, seed: int = 0):
    """N nodes, 64 Gaussian features, 7 random labels, 5N uniform pairs made undirected, self-loops."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import add_self_loops, to_undirected

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=gen)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    pairs = torch.randint(0, n, (2, PAIRS_PER_NODE * n), generator=gen)
    edge_index, _ = add_self_loops(to_undirected(pairs, num_nodes=n), num_nodes=n)
    return Data(x=x, y=y, edge_index=edge_index, num_nodes=n)


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def save_graph(n: int, path: str) -> None:
    """Runs in a child of its own: the graph is generated once per N and loaded by every
    measurement, so that no generation temporaries count towards a measured peak."""
    import torch

    torch.save(make_graph(n), path)
    return None


def measure(n: int, graph_path: str, repeats: int, threads: int) -> dict[str, object]:
    """Runs inside the child process (which may import an older ``diffusion_pde``)."""
    import torch
    import torch.nn.functional as F

    import diffusion_pde
    from diffusion_pde.models import ModelConfig, build_model

    torch.set_num_threads(threads)
    config = ModelConfig(model="difformer_s", num_layers=2, hidden=64, heads=1, use_graph=True, layer_norm=True,
                         tau=0.5, qk_norm="global", source_weight=0.1)
    torch.manual_seed(0)
    build_model(config, make_graph(1000, seed=1))  # warm-up of the build's code paths
    data = torch.load(graph_path, weights_only=False)
    assert data.num_nodes == n
    peaks = {"data": _peak_gb()}

    def median(fn) -> float:
        return median_seconds(fn, repeats, warm_up=False)

    model = None

    def build() -> None:
        nonlocal model
        model = None
        gc.collect()
        torch.manual_seed(0)
        model = build_model(config, data)

    build_s = median(build)
    peaks["build"] = _peak_gb()

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(data.x)

    forward()
    forward_s = median(forward)
    peaks["forward"] = _peak_gb()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.x), data.y)
        loss.backward()
        optimizer.step()

    train_step()
    train_s = median(train_step)
    peaks["train"] = _peak_gb()
    return {"n": n, "edges": int(data.edge_index.shape[1]), "build": build_s, "forward": forward_s,
            "train": train_s, "peak_gb": _peak_gb(), "peaks": peaks, "threads": torch.get_num_threads(),
            "module": str(Path(diffusion_pde.__file__).resolve().parent)}


def run_child(n: int, graph_path: Path, repeats: int, threads: int, code_root: Path | None) -> dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if code_root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code_root), *filter(None, [env.get("PYTHONPATH")])])
    # run in the tree measured: a child imports from its working folder before PYTHONPATH
    result = run_in_child("scale_full_graph", f"measure({n}, {str(graph_path)!r}, {repeats}, {threads})", env=env,
                          cwd=code_root or ROOT)
    expected = (code_root or ROOT) / "diffusion_pde"
    if Path(result["module"]) != expected.resolve():
        raise SystemExit(f"the child imported {result['module']}, not {expected}")
    return result


def slope(rows: list[dict], key: str) -> float:
    return float(np.polyfit(np.log([r["n"] for r in rows]), np.log([r[key] for r in rows]), 1)[0])


KEYS = (("build", "build [s]", "{:.2f}"), ("forward", "forward [s]", "{:.2f}"), ("train", "train step [s]", "{:.2f}"),
        ("peak_gb", "peak [GB]", "{:.2f}"))


def table(rows: list[dict], label: str) -> list[str]:
    lines = [f"| N | edges | {' | '.join(f'{title} (× prev)' for _, title, _ in KEYS)} | of which data [GB] |",
             "|---:|---:|" + "---:|" * (len(KEYS) + 1)]
    for i, r in enumerate(rows):
        cells = []
        for key, _, fmt in KEYS:
            cell = fmt.format(r[key])
            if i:
                cell += f" (×{r[key] / rows[i - 1][key]:.2f})"
            cells.append(cell)
        lines.append(f"| {r['n']:,} | {r['edges']:,} | {' | '.join(cells)} | {r['peaks']['data']:.2f} |")
    if len(rows) > 1:
        lines += ["", f"{label}: fitted log-log slope versus N, " + ", ".join(
            f"{title.split(' [')[0]} **{slope(rows, key):.2f}**" for key, title, _ in KEYS) + "."]
    if len(rows) > 2:
        lines[-1] += (f" Without the smallest N ({rows[1]['n']:,} to {rows[-1]['n']:,}): " + ", ".join(
            f"{title.split(' [')[0]} {slope(rows[1:], key):.2f}" for key, title, _ in KEYS) + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 500_000, 1_000_000, 2_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--baseline-commit", metavar="REV", help="also measure this commit's code, in the same run")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    with ExitStack() as stack:
        variants: list[tuple[str, Path | None]] = [("new", None)]
        if args.baseline_commit:
            tree, commit = stack.enter_context(baseline_tree(args.baseline_commit, ROOT))
            variants.insert(0, (f"baseline {commit}", tree))
        results: dict[str, list[dict]] = {name: [] for name, _ in variants}
        graphs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-graphs-")))
        for n in args.sizes:
            graph_path = graphs / f"graph_{n}.pt"
            run_in_child("scale_full_graph", f"save_graph({n}, {str(graph_path)!r})", cwd=ROOT)
            for name, code_root in variants:  # interleaved, so that both see the same machine load
                r = run_child(n, graph_path, args.repeats, args.threads, code_root)
                results[name].append(r)
                print(f"{name:>16} N={n:>9,}: build {r['build']:6.2f} s, forward {r['forward']:6.2f} s, "
                      f"train step {r['train']:6.2f} s, peak {r['peak_gb']:5.2f} GB "
                      f"(after data {r['peaks']['data']:.2f}, build {r['peaks']['build']:.2f}, "
                      f"forward {r['peaks']['forward']:.2f}), {r['threads']} thread(s)", flush=True)
            graph_path.unlink()

    threads = results["new"][0]["threads"]
    lines = [
        "## Full-graph DIFFormer-s at scale",
        "",
        f"`OMP_NUM_THREADS={args.threads} python benchmarks/scale_full_graph.py --sizes "
        f"{' '.join(map(str, args.sizes))} --repeats {args.repeats} --threads {args.threads}"
        + (f" --baseline-commit {args.baseline_commit}`" if args.baseline_commit else "`"),
        "",
        "2-layer DIFFormer-s (hidden 64, 1 head, graph term summed, LayerNorm, τ = 0.5, global q/k norm, "
        "μ = 0.1, dropout 0.2, 7 classes), float32, CPU, "
        f"**{threads} thread{'s' if threads > 1 else ''}**; random graph with 5N pairs made undirected plus "
        "self-loops (degree ≈ 11), 64 Gaussian features. Median of "
        f"{args.repeats} after a warm-up; each N in a fresh process; peak = the process's peak RSS "
        "(graph and features included; \"of which data\": the peak once the graph is loaded, before the model "
        "is built). An N×64 float32 tensor below about 130,000 nodes is under glibc's 32 MB mmap threshold, so "
        "freed ones are reused from the heap; above it every new one is a fresh mapping whose first touch "
        "page-faults (see docs/scale.md): the smallest N is cheaper per node for that reason, hence the second "
        "slope.",
    ]
    for name, rows in results.items():
        lines += ["", f"**{name}** ({'this tree' if name == 'new' else 'the same measurement on that commit'}):", "",
                  *table(rows, name)]
    if len(variants) > 1:
        base = results[variants[0][0]]
        lines += ["", "Old / new in the same run (> 1: the new code is faster or smaller):", "",
                  "| N | build | forward | train step | peak |", "|---:|---:|---:|---:|---:|"]
        for old, new in zip(base, results["new"]):
            lines.append(f"| {new['n']:,} | " + " | ".join(f"{old[k] / new[k]:.2f}×" for k, _, _ in KEYS) + " |")
    print("\n".join(lines))
    if not args.no_write:
        write_section("scale_full_graph", "\n".join(lines))


if __name__ == "__main__":
    main()
