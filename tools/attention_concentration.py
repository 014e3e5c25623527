"""How far a trained sequence model's attention can single out one token: for each attention
module, the largest weight a query gives any key, times the length L (1 = uniform, L = all on one
key), and the weight on the first token (the outermost operator in ListOps), times L.

For LDN the weights are DIFFormer-s's S (``difformer_s.dense``: (1 + q̂ᵢ·k̂ⱼ)/Σₗ(1 + q̂ᵢ·k̂ₗ),
the mean over its heads); for the Transformer each head's softmax(q kᵀ/√d_h) restated from its
``in_proj`` weights (the largest over heads is reported). Both are computed from the modules'
inputs, captured with forward pre-hooks, on the first test sequences of the run's own data (the
dataset and options stored in its checkpoint), one sequence at a time. A module called several
times per forward (a continuous-depth LDN: once per solver stage) pools all its calls.

    python tools/attention_concentration.py RUN [RUN ...] [--sequences 16] [--root DIR]

RUN: a run folder (or checkpoint) of ``diffusion-pde train --task sequence`` (``best.pt`` is
used); ``--root``: the data folder of a dataset read from files (``fashion-mnist-seq``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from diffusion_pde.data.sequences import load_sequences
from diffusion_pde.diffusivities.difformer_s import DIFFormerSimple
from diffusion_pde.training.checkpoint import load_checkpoint
from diffusion_pde.training.inference import find_checkpoint
from diffusion_pde.training.sequences import load_sequence_model


def _softmax_weights(module: torch.nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, L] attention weights of ``module`` (batch_first, self-attention on x [B, L, d])."""
    d, heads = module.embed_dim, module.num_heads
    q, k, _ = torch.nn.functional.linear(x, module.in_proj_weight, module.in_proj_bias).split(d, dim=-1)
    q, k = (t.unflatten(-1, (heads, d // heads)).transpose(1, 2) for t in (q, k))
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)


def attention_weights(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, L] weights of an attention module on its input x [B, L, d] (H = 1 for DIFFormer-s:
    the mean of its heads, which is its S)."""
    if isinstance(module, DIFFormerSimple):
        return module.dense(x).unsqueeze(1)
    return _softmax_weights(module, x)


def concentration(run: str | Path, sequences: list[torch.Tensor]) -> list[dict[str, float]]:
    """Per attention module of the model in ``run`` (in the order of their first call), over all
    queries of all its calls on the ``sequences`` ([L] token ids or [L, C] values each, run one at
    a time): the median and maximum of L · max_j S_ij, the median of L · S_i0, and the calls per
    sequence."""
    model = load_sequence_model(run)
    captured: list[tuple[torch.nn.Module, torch.Tensor]] = []
    for module in model.modules():
        if isinstance(module, (DIFFormerSimple, torch.nn.MultiheadAttention)):
            module.register_forward_pre_hook(lambda mod, args: captured.append((mod, args[0].detach())))
    peaks: dict[torch.nn.Module, list[torch.Tensor]] = {}  # in the order of first call
    firsts: dict[torch.nn.Module, list[torch.Tensor]] = {}
    for tokens in sequences:
        captured.clear()
        with torch.enable_grad():  # keeps nn.TransformerEncoderLayer off its fused path, which skips self_attn
            model(tokens[None], torch.tensor([len(tokens)]))
        with torch.no_grad():
            for module, x in captured:
                weights = attention_weights(module, x)
                length = weights.shape[-1]
                peaks.setdefault(module, []).append((length * weights.amax(dim=-1)).amax(dim=1).flatten())
                firsts.setdefault(module, []).append((length * weights[..., 0]).amax(dim=1).flatten())
    rows = []
    for module in peaks:
        peak, first = torch.cat(peaks[module]), torch.cat(firsts[module])
        rows.append({"kind": type(module).__name__, "peak_median": float(peak.median()), "peak_max": float(peak.max()),
                     "first_median": float(first.median()), "calls": len(peaks[module]) / len(sequences)})
    return rows


def first_test_sequences(run: str | Path, count: int, root: str | None = None) -> list[torch.Tensor]:
    """The first ``count`` test sequences of the data ``run`` was trained on (its checkpoint's
    dataset and options), each cut to its length."""
    source = dict(load_checkpoint(find_checkpoint(run), "cpu", keys=("dataset",), weights_only=True,
                                  remedy="train the run again")["dataset"])
    data = load_sequences(source.pop("name"), root=root, **source)
    return [data.inputs[i, :int(data.lengths[i])] for i in data.test[:count].tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--sequences", type=int, default=16, help="how many test sequences (the first ones)")
    parser.add_argument("--root", default=None, help="data folder of a dataset read from files")
    args = parser.parse_args()
    for run in args.runs:
        sequences = first_test_sequences(run, args.sequences, args.root)
        lengths = [len(t) for t in sequences]
        print(f"{run}: the first {len(sequences)} test sequences, L = {min(lengths)}–{max(lengths)}")
        for i, row in enumerate(concentration(run, sequences)):
            calls = f", {row['calls']:g} calls per sequence" if row["calls"] != 1 else ""
            print(f"  attention {i + 1} ({row['kind']}{calls}): L·max_j S_ij median {row['peak_median']:.2f}, "
                  f"max {row['peak_max']:.2f}; L·S_i0 median {row['first_median']:.2f}")
    print("(uniform attention gives 1; all weight on one key gives L)")


if __name__ == "__main__":
    main()
