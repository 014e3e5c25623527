"""Reference: a plain PyG GCN (two GCNConv layers) against our `gcn` model on the same splits.

The reference is the textbook script — dropout 0.5 on the input, GCNConv(F, 64), ReLU, dropout
0.5, GCNConv(64, C); Adam lr 0.01, weight decay 5e-4 on all parameters, 200 epochs; the test
accuracy at the epoch of best validation accuracy — written here with PyG's own layer and
nothing from this package except the split (so both see the same nodes). Our model is
`diffusion-pde train --model gcn` (Euler steps of the `gcn` diffusivity) with the same settings.

    .venv/bin/python benchmarks/pyg_gcn_reference.py --splits 10 [--dataset cora] [--write]

``--write`` puts the table into docs/results.md (between its markers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from diffusion_pde.data import load_dataset  # noqa: E402
from diffusion_pde.training import make_split, resolve, run_experiment  # noqa: E402

RESULTS_MD = Path(__file__).resolve().parents[1] / "docs" / "results.md"


class ReferenceGCN(torch.nn.Module):
    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden)
        self.conv2 = GCNConv(hidden, out_channels)

    def forward(self, x, edge_index):
        x = F.dropout(x, 0.5, self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, 0.5, self.training)
        return self.conv2(x, edge_index)


def train_reference(data, split, seed: int, epochs: int = 200) -> tuple[float, list[float]]:
    """Test accuracy at the best validation epoch, and the seconds of every epoch (train step +
    evaluation; on CUDA each epoch ends with a synchronisation). Runs on ``data``'s device."""
    torch.manual_seed(seed)
    device = data.x.device
    model = ReferenceGCN(data.num_features, 64, int(data.y.max()) + 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    best_val, best_test, seconds = -1.0, 0.0, []
    for _ in range(epochs):
        tick = time.perf_counter()
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data.x, data.edge_index)[split.train], data.y[split.train])
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model(data.x, data.edge_index).argmax(dim=-1)
        val = float((pred[split.val] == data.y[split.val]).float().mean())
        if val > best_val:
            best_val, best_test = val, float((pred[split.test] == data.y[split.test]).float().mean())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - tick)
    return best_test, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--root", default=None)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    data = load_dataset(args.dataset, root=args.root)
    reference, ref_time = [], []
    for s in range(args.splits):
        acc, seconds = train_reference(data, make_split(data, "random", s), seed=1000 * s)
        reference.append(100 * acc)
        ref_time.append(statistics.fmean(seconds))
        print(f"split {s}: PyG GCNConv reference test {100 * acc:.1f}", flush=True)
    model_config, train_config = resolve(args.dataset, "gcn")
    ours = run_experiment(data, model_config, train_config, split="random", splits=args.splits, progress=False)
    our_acc = [100 * r["test_acc"] for r in ours["results"]]
    our_time = statistics.fmean(r["seconds_per_epoch"] for r in ours["results"])
    rows = "\n".join(f"| {s} | {a:.1f} | {b:.1f} | {b - a:+.1f} |" for s, (a, b) in enumerate(zip(reference, our_acc)))
    mean_ref, mean_ours = statistics.fmean(reference), statistics.fmean(our_acc)
    markdown = (
        f"Command: `.venv/bin/python benchmarks/pyg_gcn_reference.py --dataset {args.dataset} --splits {args.splits} --write`\n\n"
        "| split | PyG `GCNConv` reference | ours (`--model gcn`) | difference |\n|---|---|---|---|\n"
        f"{rows}\n| **mean** | **{mean_ref:.2f}** ± {statistics.stdev(reference) if len(reference) > 1 else 0:.2f} | "
        f"**{mean_ours:.2f}** ± {statistics.stdev(our_acc) if len(our_acc) > 1 else 0:.2f} | **{mean_ours - mean_ref:+.2f}** |\n\n"
        f"Time per epoch (train step + evaluation, same run): reference {1000 * statistics.fmean(ref_time):.0f} ms, "
        f"ours {1000 * our_time:.0f} ms (ratio {our_time / statistics.fmean(ref_time):.2f}).\n"
    )
    print(markdown)
    if args.write:
        write_section(f"gcn-reference-{args.dataset}", markdown, RESULTS_MD)


if __name__ == "__main__":
    main()
