"""Per-epoch training time and peak memory of every Cora model, with a PyG GCN as the yardstick.

Each model is trained for ``--epochs`` epochs by the package's own loop (``train_run``: one
full-batch Adam step plus one evaluation forward per epoch) on random split 0 of Cora, with the
settings ``diffusion-pde train`` uses (the paper preset for DIFFormer, each baseline's usual
settings). Every model runs in a fresh subprocess, so that its peak memory is its own:

* time per epoch: the median over the epochs after the first ``--warmup``;
* peak memory: on CPU the growth of the process's peak resident set (reset just before the model
  is built) over the training, dataset excluded; on CUDA ``torch.cuda.max_memory_allocated``
  over the training (dataset included, as it lives on the device).

The PyG reference (two ``GCNConv`` layers, ``benchmarks/pyg_gcn_reference.py``) is timed the
same way in the same run, so the ratio column compares models on one machine state.

    .venv/bin/python benchmarks/train_epoch_cora.py [--epochs 30] [--device cpu] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (label, model, extra settings); the DIFFormer rows use the paper preset.
MODELS = [
    ("DIFFormer-s (8 layers)", "difformer_s", {}),
    ("DIFFormer-s continuous (rk4, 8 steps)", "difformer_s", {"depth": "continuous"}),
    ("DIFFormer-a (8 layers)", "difformer_a", {}),
    ("Transformer (8 layers)", "transformer", {}),
    ("GCN", "gcn", {}),
    ("GAT (8 heads)", "gat", {}),
    ("APPNP (K = 10)", "appnp", {}),
    ("SGC (K = 2)", "sgc", {}),
    ("MLP", "mlp", {}),
]
REFERENCE = "PyG GCNConv reference"


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(float(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _start_peak_rss() -> float:
    """Reset the process's peak resident set to its current size (Linux: ``clear_refs`` 5) and
    return that size in MB; elsewhere fall back to the lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    try:
        return _status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepare(device: str):
    """Cora and its random split 0 on ``device``; then the peak-memory counter is started."""
    import torch

    from diffusion_pde.data import load_dataset
    from diffusion_pde.training import make_split

    dev = torch.device(device)
    data = load_dataset("cora").to(dev)
    split = make_split(data, "random", 0).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    return dev, data, split, _start_peak_rss()


def _peak_mb(dev, before: float) -> float:
    import torch

    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else _peak_rss_mb() - before


def measure(model: str, extra: dict, epochs: int, warmup: int, device: str) -> dict:
    """Runs in the child process: time per epoch, peak memory and parameter count of one model."""
    import torch

    from diffusion_pde.models import build_model
    from diffusion_pde.training import resolve, train_run

    preset = "paper" if model.startswith("difformer") else None
    model_config, train_config = resolve("cora", model, preset, epochs=epochs, **extra)
    dev, data, split, before = _prepare(device)
    torch.manual_seed(0)
    net = build_model(model_config, data).to(dev)
    result = train_run(net, data, split, train_config, seed=0, progress=False)
    seconds = [row["seconds"] for row in result.history[warmup:]]
    return {"seconds": statistics.median(seconds), "peak_mb": _peak_mb(dev, before),
            "params": sum(p.numel() for p in net.parameters())}


def measure_reference(epochs: int, warmup: int, device: str) -> dict:
    """The PyG GCN of ``pyg_gcn_reference.py`` (its own training loop), timed per epoch."""
    sys.path.insert(0, str(HERE))
    from pyg_gcn_reference import ReferenceGCN, train_reference

    dev, data, split, before = _prepare(device)
    _, seconds = train_reference(data, split, seed=0, epochs=epochs)
    params = sum(p.numel() for p in ReferenceGCN(data.num_features, 64, int(data.y.max()) + 1).parameters())
    return {"seconds": statistics.median(seconds[warmup:]), "peak_mb": _peak_mb(dev, before), "params": params}


def run_child(call: str) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import train_epoch_cora as b; print(json.dumps(b.{call}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="epochs left out of the median")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.epochs:
        raise SystemExit(f"--warmup must lie in [0, --epochs), got {args.warmup} with --epochs {args.epochs}")

    rows = [(REFERENCE, run_child(f"measure_reference({args.epochs}, {args.warmup}, {args.device!r})"))]
    print(f"{REFERENCE:<40} {rows[0][1]['seconds'] * 1e3:8.1f} ms/epoch  {rows[0][1]['peak_mb']:8.1f} MB", flush=True)
    for label, model, extra in MODELS:
        row = run_child(f"measure({model!r}, {extra!r}, {args.epochs}, {args.warmup}, {args.device!r})")
        rows.append((label, row))
        print(f"{label:<40} {row['seconds'] * 1e3:8.1f} ms/epoch  {row['peak_mb']:8.1f} MB", flush=True)

    reference = rows[0][1]["seconds"]
    memory = "peak allocated CUDA memory" if args.device.startswith("cuda") else "growth of peak RSS"
    lines = [
        f"## Training on Cora: time per epoch and peak memory ({args.device})",
        "",
        f"`python benchmarks/train_epoch_cora.py --epochs {args.epochs} --warmup {args.warmup} --device {args.device}` "
        f"(2,708 nodes, 1,433 features, float32; one epoch = one full-batch Adam step + one evaluation forward; "
        f"median over epochs {args.warmup + 1}–{args.epochs}; memory = {memory} during training, each model in a fresh "
        "process; DIFFormer with `--preset paper`, baselines with their defaults from `docs/training.md`).",
        "",
        "| model | parameters | time per epoch [ms] | × PyG GCN | peak memory [MB] |",
        "|---|---:|---:|---:|---:|",
        *[f"| {label} | {row['params']:,} | {row['seconds'] * 1e3:.1f} | {row['seconds'] / reference:.2f} | "
          f"{row['peak_mb']:.1f} |" for label, row in rows],
    ]
    if not args.no_write:
        sys.path.insert(0, str(HERE))
        from _report import write_section

        write_section(f"train_epoch_cora_{args.device.split(':')[0]}", "\n".join(lines))


if __name__ == "__main__":
    main()
