"""How far a trained sequence model's attention can single out one token: for each layer, the
largest weight a query gives any key, times the length L (1 = uniform, L = all on one key), and
the weight on the first token (the outermost operator in ListOps), times L.

For LDN the weights are DIFFormer-s's S (``difformer_s.dense``: (1 + q̂ᵢ·k̂ⱼ)/Σₗ(1 + q̂ᵢ·k̂ₗ),
averaged over heads); for the Transformer each head's softmax(q kᵀ/√d_h) restated from its
``in_proj`` weights (the largest over heads is reported). Both are read from the layers' inputs,
captured with forward pre-hooks, on the first test sequences, one at a time.

    python tools/attention_concentration.py RUN [RUN ...] [--dataset listops] [--sequences 32]

RUN: a run folder of ``diffusion-pde train --task sequence`` (its ``best.pt`` is used). The data
options must be those the run was trained with (defaults: the ListOps defaults).
"""

from __future__ import annotations

import argparse
import math

import torch

from diffusion_pde.data.sequences import load_sequences
from diffusion_pde.diffusivities.difformer_s import DIFFormerSimple
from diffusion_pde.training.sequences import load_sequence_model


def _softmax_weights(module: torch.nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, L] attention weights of ``module`` (batch_first, self-attention on x [B, L, d])."""
    d, heads = module.embed_dim, module.num_heads
    q, k, _ = torch.nn.functional.linear(x, module.in_proj_weight, module.in_proj_bias).split(d, dim=-1)
    q, k = (t.unflatten(-1, (heads, d // heads)).transpose(1, 2) for t in (q, k))
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)


def concentration(run: str, sequences: list[torch.Tensor]) -> list[dict[str, float]]:
    """Per attention layer of the model in ``run``, over all queries of the ``sequences`` (token
    ids [L] each, run one at a time): the median and maximum of L · max_j S_ij and the median of
    L · S_i0."""
    model = load_sequence_model(run)
    captured: list[tuple[torch.nn.Module, torch.Tensor]] = []
    for module in model.modules():
        if isinstance(module, (DIFFormerSimple, torch.nn.MultiheadAttention)):
            module.register_forward_pre_hook(lambda mod, args: captured.append((mod, args[0].detach())))
    peaks: dict[int, list[torch.Tensor]] = {}
    firsts: dict[int, list[torch.Tensor]] = {}
    kinds: dict[int, str] = {}
    for tokens in sequences:
        captured.clear()
        with torch.enable_grad():  # keeps nn.TransformerEncoderLayer off its fused path, which skips self_attn
            model(tokens[None], torch.tensor([len(tokens)]))
        with torch.no_grad():
            for layer, (module, x) in enumerate(captured):
                if isinstance(module, DIFFormerSimple):
                    weights = module.dense(x).unsqueeze(1)          # [1, 1, L, L], the mean over its heads
                else:
                    weights = _softmax_weights(module, x)           # [1, H, L, L]
                length = weights.shape[-1]
                peaks.setdefault(layer, []).append((length * weights.amax(dim=-1)).amax(dim=1).flatten())
                firsts.setdefault(layer, []).append((length * weights[..., 0]).amax(dim=1).flatten())
                kinds[layer] = type(module).__name__
    rows = []
    for layer in sorted(peaks):
        peak, first = torch.cat(peaks[layer]), torch.cat(firsts[layer])
        rows.append({"kind": kinds[layer], "peak_median": float(peak.median()), "peak_max": float(peak.max()),
                     "first_median": float(first.median())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--dataset", default="listops")
    parser.add_argument("--sequences", type=int, default=16, help="how many test sequences (the first ones)")
    args = parser.parse_args()
    data = load_sequences(args.dataset)
    chosen = data.test[:args.sequences]
    sequences = [data.inputs[i, :int(data.lengths[i])] for i in chosen.tolist()]
    lengths = [len(t) for t in sequences]
    print(f"{args.dataset}: the first {len(sequences)} test sequences, L = {min(lengths)}–{max(lengths)}")
    for run in args.runs:
        for i, row in enumerate(concentration(run, sequences)):
            print(f"{run}  layer {i + 1} ({row['kind']}): L·max_j S_ij median {row['peak_median']:.2f}, "
                  f"max {row['peak_max']:.2f}; L·S_i0 median {row['first_median']:.2f}")
    print("(uniform attention gives 1 everywhere; all weight on one key gives L)")

if __name__ == "__main__":
    main()
