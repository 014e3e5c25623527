"""Sparse (CSR) input features: the encoders' first layer and input dropout on the stored entries
give the same function as on the dense features (values and gradients, float64), dropout on
the stored values has dense dropout's distribution, and training keeps bag-of-words sparse."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Data

from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.models.dropout import MaskedDropout, csr_dropout
from diffusion_pde.models.features import FeatureLinear, sparse_features
from diffusion_pde.training import make_split, resolve, train_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def bag_of_words(n: int, f: int, density: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Row-normalised 0/1 features with about ``density`` non-zeros; rows 0 and 3 are empty."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, f, generator=g) < density).to(dtype)
    x[[0, 3 % n]] = 0
    return x / x.sum(1, keepdim=True).clamp(min=1)


def graph(n: int = 30, f: int = 50, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n, (2, 3 * n), generator=g)
    keep = src != dst
    edge_index = torch.unique(torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])]), dim=1)
    return Data(x=bag_of_words(n, f, 0.05, seed), edge_index=edge_index, y=torch.arange(n) % 3, num_nodes=n)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,density", [((7, 5), 0.3), ((40, 90), 0.02), ((6, 4), 0.0), ((1, 3), 1.0)])
def test_feature_linear_on_csr_equals_dense_values_and_gradients(bias, shape, density):
    x = bag_of_words(*shape, density, seed=shape[0])
    lin = FeatureLinear(shape[1], 8, bias=bias, dtype=torch.float64)
    dense_out = lin(x)
    upstream = torch.randn_like(dense_out)
    dense_grads = torch.autograd.grad((dense_out * upstream).sum(), list(lin.parameters()))
    sparse_out = lin(x.to_sparse_csr())
    sparse_grads = torch.autograd.grad((sparse_out * upstream).sum(), list(lin.parameters()))
    assert sparse_out.shape == dense_out.shape
    assert torch.allclose(sparse_out, dense_out, atol=1e-13, rtol=0)
    for a, b in zip(sparse_grads, dense_grads):
        assert torch.allclose(a, b, atol=1e-13, rtol=0)


def test_feature_linear_refuses_wrong_width_and_grad_requiring_csr():
    lin = FeatureLinear(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"CSR features must be \[N, 5\]"):
        lin(bag_of_words(4, 6, 0.5, 0).to_sparse_csr())
    x = bag_of_words(4, 5, 0.5, 0).to_sparse_csr().requires_grad_()
    with pytest.raises(ValueError, match="to_dense"):
        lin(x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_csr_dropout_keeps_pattern_zeroes_or_scales_each_value_at_rate_p(p):
    x = bag_of_words(400, 500, 0.05, seed=1, dtype=torch.float32).to_sparse_csr()
    torch.manual_seed(0)
    out = csr_dropout(x, p)
    assert torch.equal(out.crow_indices(), x.crow_indices()) and torch.equal(out.col_indices(), x.col_indices())
    values, kept = x.values(), out.values() != 0
    scale = float(torch.ones((), dtype=torch.float32) / (1 - p))
    assert torch.equal(out.values()[kept], values[kept] * scale)
    # the keep rate is 1 - p within 5 binomial standard deviations
    m = values.numel()
    assert abs(int(kept.sum()) - m * (1 - p)) < 5 * math.sqrt(m * p * (1 - p))
    assert not torch.equal(csr_dropout(x, p).values(), out.values())  # fresh draws every call


def test_csr_dropout_distribution_matches_dense_dropout_per_entry():
    """Per stored entry the probability of being dropped is p, as with dense dropout: over
    2,000 draws each entry's drop count lies in a 5-sigma band."""
    x = bag_of_words(20, 30, 0.2, seed=2).to_sparse_csr()
    torch.manual_seed(1)
    drops = sum((csr_dropout(x, 0.3).values() == 0).to(torch.int64) for _ in range(2000))
    sigma = math.sqrt(2000 * 0.3 * 0.7)
    assert ((drops - 600).abs() < 5 * sigma).all()


def test_csr_dropout_p_one_zeroes_all_and_masked_dropout_routes_csr():
    x = bag_of_words(10, 12, 0.3, seed=3).to_sparse_csr()
    assert torch.count_nonzero(csr_dropout(x, 1.0).values()) == 0
    drop = MaskedDropout(0.5)
    out = drop(x)
    assert out.layout == torch.sparse_csr
    assert drop.eval()(x) is x
    with pytest.raises(ValueError, match="to_dense"):
        csr_dropout(bag_of_words(4, 5, 0.5, 0).to_sparse_csr().requires_grad_(), 0.5)


def test_sparse_features_threshold_and_pass_through():
    x = bag_of_words(50, 40, 0.05, seed=4, dtype=torch.float32)
    csr = sparse_features(x)
    assert csr.layout == torch.sparse_csr and torch.equal(csr.to_dense(), x)
    assert sparse_features(x, max_density=0.001) is x           # too dense for that threshold
    dense = torch.rand(5, 4)
    assert sparse_features(dense) is dense                       # no zeros: stays dense
    ints = torch.zeros(5, 4, dtype=torch.int64)
    assert sparse_features(ints) is ints
    assert sparse_features(csr) is csr
    grad = x.clone().requires_grad_()
    assert sparse_features(grad) is grad
    with pytest.raises(ValueError, match="max_density"):
        sparse_features(x, max_density=1.5)


MODELS = [
    ModelConfig(model="difformer_s", num_layers=2, hidden=8, input_dropout=0.5),
    ModelConfig(model="difformer_s", num_layers=2, hidden=8, qk_bias=True, encoder_bias="uniform"),
    ModelConfig(model="difformer_a", num_layers=2, hidden=8),
    ModelConfig(model="transformer", num_layers=1, hidden=8),
    ModelConfig(model="mlp", hidden=8, input_dropout=0.2),
    ModelConfig(model="gcn", num_layers=2, hidden=8, tau=1.0),
    ModelConfig(model="gat", num_layers=2, hidden=8, heads=2, tau=1.0),
    ModelConfig(model="sgc", num_layers=2, tau=1.0),
    ModelConfig(model="appnp", num_layers=3, hidden=8, tau=1.0, source_weight=0.1),
    ModelConfig(model="difformer_s", depth="continuous", method="rk4", hidden=8),
]


@pytest.mark.parametrize("config", MODELS, ids=lambda c: f"{c.model}-{c.depth}")
def test_every_model_takes_csr_features_with_the_same_logits_and_gradients(config):
    data = graph()
    torch.manual_seed(0)
    model = build_model(config, data, dtype=torch.float64).eval()  # eval: no dropout draws
    dense_logits = model(data.x)
    upstream = torch.randn_like(dense_logits)
    params = [p for p in model.parameters() if p.requires_grad]
    dense_grads = torch.autograd.grad((dense_logits * upstream).sum(), params, allow_unused=True)
    sparse_logits = model(sparse_features(data.x))
    sparse_grads = torch.autograd.grad((sparse_logits * upstream).sum(), params, allow_unused=True)
    assert torch.allclose(sparse_logits, dense_logits, atol=1e-12, rtol=0)
    for a, b in zip(sparse_grads, dense_grads):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-11, rtol=0)


def test_training_runs_on_csr_features_and_learns():
    """train_run keeps bag-of-words sparse: the model sees CSR features in its steps and its
    evaluation, and a short run fits the training nodes."""
    data = graph(n=60, f=80, seed=5)
    data.x = data.x.float()
    data.y = (data.x[:, :40].sum(1) > data.x[:, 40:].sum(1)).long()
    split = make_split(data, "random", 0)
    model_config, config = resolve("synthetic", "difformer_s", epochs=30, num_layers=2, hidden=16, lr=0.01,
                                   input_dropout=0.3)
    torch.manual_seed(0)
    model = build_model(model_config, data)
    seen = []
    model.encoder[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].layout))
    result = train_run(model, data, split, config, seed=0, progress=False)
    assert set(seen) == {torch.sparse_csr}
    assert result.history[-1]["train_acc"] > result.history[0]["train_acc"]


def test_feature_linear_gradient_follows_a_changed_pattern():
    """The transposed pattern kept for the backward pass is rebuilt when the pattern changes (and
    reused for new values on the same pattern, as dropout makes them)."""
    lin = FeatureLinear(30, 4, dtype=torch.float64)
    for seed, density in ((0, 0.1), (1, 0.3), (0, 0.1)):
        x = bag_of_words(12, 30, density, seed)
        for values_scale in (1.0, 2.0):
            dense = x * values_scale
            expected = torch.autograd.grad(lin(dense).square().sum(), lin.weight)[0]
            got = torch.autograd.grad(lin(dense.to_sparse_csr()).square().sum(), lin.weight)[0]
            assert torch.allclose(got, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("config", [MODELS[0], MODELS[5], MODELS[8]], ids=lambda c: c.model)
def test_chunked_prediction_takes_csr_features(config):
    """predict_chunked slices CSR features by rows of the CSR matrix: the same logits as the
    dense features (float64), chunks of 7 nodes (regression: it failed on CSR strides)."""
    from diffusion_pde.models.chunked import predict_chunked

    data = graph(n=30)
    torch.manual_seed(0)
    model = build_model(config, data, dtype=torch.float64)
    dense = predict_chunked(model, data.x, 7)
    assert torch.allclose(predict_chunked(model, sparse_features(data.x), 7), dense, atol=1e-12, rtol=0)
