"""``--preset authors`` is the DIFFormer authors' released model: checked against an independent,
dense re-statement of their forward pass (``node classification/difformer.py`` of
qitianwu/DIFFormer: q/k with biases, one global Frobenius norm for q and for k, the kernel
1 + q̂ᵀk̂ row-normalised, the GCN term D̃^{-1/2}(A + I)D̃^{-1/2} V summed, the residual
α·conv + (1 − α)·previous with α = 0.5, LayerNorm after the encoder and every layer)."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_dense_adj

from diffusion_pde.models import build_model
from diffusion_pde.training.config import resolve


def _graph(n: int = 30, features: int = 10, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n, (2, 3 * n), generator=g)
    keep = src != dst
    edge_index = torch.unique(torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])]), dim=1)
    return Data(x=torch.rand(n, features, generator=g, dtype=torch.float64), edge_index=edge_index,
                y=torch.arange(n) % 3, num_nodes=n)


def _dense_authors_forward(model, data: Data) -> torch.Tensor:
    """Their forward in eval mode, written densely from the formulas, reading our model's weights."""
    n = data.num_nodes
    a = to_dense_adj(data.edge_index, max_num_nodes=n)[0].double() + torch.eye(n, dtype=torch.float64)
    d = a.sum(dim=1).rsqrt()
    a_hat = d[:, None] * a * d[None, :]
    linear, norm = model.encoder[0], model.encoder[1]
    x = torch.relu(norm(data.x @ linear.weight.T + linear.bias))
    for block, post in zip(model.diffusion.blocks, model.diffusion.posts):
        attention = block.field.diffusivity.attention
        q = x @ attention.query.weight.T + attention.query.bias
        k = x @ attention.key.weight.T + attention.key.bias
        q, k = q / q.norm(), k / k.norm()
        kernel = 1 + q @ k.T
        conv = (kernel / kernel.sum(dim=1, keepdim=True)) @ x + a_hat @ x
        x = post[0](0.5 * conv + 0.5 * x)  # post = LayerNorm, dropout (identity in eval mode)
    return x @ model.decoder.weight.T + model.decoder.bias


def test_authors_preset_is_their_released_model() -> None:
    data = _graph()
    config, train = resolve("cora", "difformer_s", "authors", num_layers=3, hidden=8)
    assert (config.qk_bias, config.encoder_bias, config.qk_norm, config.source_weight, config.input_dropout,
            config.value_proj, config.graph_weight, config.tau) == (True, "uniform", "global", 0.0, 0.0, False, None, 0.5)
    assert (train.lr, train.weight_decay, train.epochs) == (1e-3, 0.01, 500)
    torch.manual_seed(0)
    model = build_model(config, data, dtype=torch.float64).eval()
    encoder_bias = model.encoder[0].bias
    assert bool((encoder_bias != 0).all()) and float(encoder_bias.detach().abs().max()) <= 1 / data.x.shape[1] ** 0.5
    with torch.no_grad():
        ours = model(data.x)
        theirs = _dense_authors_forward(model, data)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-10), float((ours - theirs).abs().max())


def test_without_biases_the_dense_restatement_differs() -> None:
    """The check can fail: the same weights with the q/k biases removed give other logits."""
    data = _graph(seed=1)
    config, _ = resolve("cora", "difformer_s", "authors", num_layers=2, hidden=8)
    torch.manual_seed(0)
    model = build_model(config, data, dtype=torch.float64).eval()
    with torch.no_grad():
        theirs = _dense_authors_forward(model, data)
        for block in model.diffusion.blocks:
            block.field.diffusivity.attention.query.bias.zero_()
        assert not torch.allclose(model(data.x), theirs, rtol=0, atol=1e-10)
