"""Time per epoch and peak memory of the Cora DIFFormer-s presets against an older commit, in one run.

Issue 19 asks for ``--preset paper`` in at most 0.30× the time per epoch of the paper preset of
commit 0811c64, and ``--preset authors`` in at most 0.40× the time of 0811c64's reproduction of the
authors' settings (``--preset paper --source-weight 0 --input-dropout 0``). Each pair is measured
here in the same run, the old code from a temporary ``git worktree`` of ``--baseline-commit``:

* one run = ``train_run`` (the package's own loop: one full-batch Adam step and one evaluation
  forward per epoch) of ``--epochs`` epochs on Cora's random split 0, in a fresh process with
  ``--threads`` threads; its time per epoch is the median of the epochs after the first
  ``--warmup``; its peak memory the growth of the process's peak resident set over the training
  (dataset excluded; Linux ``clear_refs``);
* the variants are interleaved (old, new, old, new, ...) ``--repeats`` times, so that both see
  the same machine load, and each figure is the median over the repeats.

    OMP_NUM_THREADS=1 python benchmarks/cora_preset_speed.py [--baseline-commit 0811c64]
        [--epochs 60] [--warmup 10] [--repeats 3] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import baseline_tree, run_in_child, write_section  # noqa: E402
from train_epoch_cora import _peak_rss_mb, _start_peak_rss  # noqa: E402

# (label, this tree's settings, the baseline's settings, the bound on new / old)
PAIRS = [
    ("`--preset paper`", {"preset": "paper"}, {"preset": "paper"}, 0.30),
    ("`--preset authors`", {"preset": "authors"},
     {"preset": "paper", "source_weight": 0.0, "input_dropout": 0.0}, 0.40),
]


def measure(settings: dict, epochs: int, warmup: int) -> dict:
    """In the child: one training run of DIFFormer-s on Cora split 0 with ``settings`` (a preset
    and overrides), its median time per epoch and its peak memory growth."""
    import torch

    import diffusion_pde
    from diffusion_pde.data import load_dataset
    from diffusion_pde.models import build_model
    from diffusion_pde.training import make_split, resolve, train_run

    settings = dict(settings)
    model_config, train_config = resolve("cora", "difformer_s", settings.pop("preset"), epochs=epochs, **settings)
    data = load_dataset("cora")
    split = make_split(data, "random", 0)
    before = _start_peak_rss()
    torch.manual_seed(0)
    model = build_model(model_config, data)
    result = train_run(model, data, split, train_config, seed=0, progress=False)
    return {"seconds": statistics.median(row["seconds"] for row in result.history[warmup:]),
            "peak_mb": _peak_rss_mb() - before, "threads": torch.get_num_threads(),
            "module": str(Path(diffusion_pde.__file__).resolve().parent)}


def run_child(settings: dict, epochs: int, warmup: int, threads: int, tree: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = run_in_child("cora_preset_speed", f"measure({settings!r}, {epochs}, {warmup})", env=env, cwd=tree)
    if Path(result["module"]) != (tree / "diffusion_pde").resolve():
        raise SystemExit(f"the child imported {result['module']}, not the code of {tree}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-commit", metavar="REV", default="0811c64")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="epochs left out of the median")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.epochs:
        raise SystemExit(f"--warmup must lie in [0, --epochs), got {args.warmup} with --epochs {args.epochs}")

    rows = []
    with ExitStack() as stack:
        old_tree, commit = stack.enter_context(baseline_tree(args.baseline_commit, ROOT))
        for label, new_settings, old_settings, bound in PAIRS:
            runs: dict[str, list[dict]] = {"old": [], "new": []}
            for _ in range(args.repeats):
                for name, settings, tree in (("old", old_settings, old_tree), ("new", new_settings, ROOT)):
                    r = run_child(settings, args.epochs, args.warmup, args.threads, tree)
                    runs[name].append(r)
                    print(f"{label:<20} {name}: {r['seconds'] * 1e3:7.1f} ms/epoch, peak +{r['peak_mb']:6.1f} MB, "
                          f"{r['threads']} thread(s)", flush=True)
            old = {key: statistics.median(r[key] for r in runs["old"]) for key in ("seconds", "peak_mb")}
            new = {key: statistics.median(r[key] for r in runs["new"]) for key in ("seconds", "peak_mb")}
            rows.append((label, old_settings, old, new, bound))

    lines = [
        "## Cora presets: time per epoch against an older commit",
        "",
        f"`OMP_NUM_THREADS={args.threads} python benchmarks/cora_preset_speed.py --baseline-commit "
        f"{args.baseline_commit} --epochs {args.epochs} --warmup {args.warmup} --repeats {args.repeats} "
        f"--threads {args.threads}` (DIFFormer-s on Cora random split 0, `train_run`: one full-batch Adam step and "
        f"one evaluation forward per epoch; median over epochs {args.warmup + 1}–{args.epochs}, then over "
        f"{args.repeats} interleaved runs; {args.threads} thread(s); peak = growth of the peak RSS during training).",
        "",
        f"| this tree | {commit} settings | {commit} [ms/epoch] | this tree [ms/epoch] | new / old | bound | "
        f"peak {commit} [MB] | peak this tree [MB] |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, old_settings, old, new, bound in rows:
        described = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in old_settings.items())
        ratio = new["seconds"] / old["seconds"]
        lines.append(f"| {label} | `{described}` | {old['seconds'] * 1e3:.1f} | {new['seconds'] * 1e3:.1f} | "
                     f"**{ratio:.2f}** | ≤ {bound:.2f} | {old['peak_mb']:.1f} | {new['peak_mb']:.1f} |")
    print("\n".join(lines))
    if not args.no_write:
        write_section("cora_preset_speed", "\n".join(lines))


if __name__ == "__main__":
    main()
