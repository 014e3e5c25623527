"""Models: the MPNN stacks against PyG's layers (same weights, float64), the DIFFormer layer
against its dense formula, continuous depth, and configuration errors."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import APPNP, GCNConv, SGConv

from diffusion_pde.models import ModelConfig, build_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def random_graph(n: int = 40, features: int = 12, classes: int = 3, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (3 * n,), generator=g)
    dst = torch.randint(0, n, (3 * n,), generator=g)
    keep = src != dst
    edge_index = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    edge_index = torch.unique(edge_index, dim=1)
    x = torch.rand(n, features, generator=g, dtype=torch.float64)
    y = torch.arange(n) % classes
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=n)


def test_gcn_model_is_two_pyg_gcnconv_layers():
    data = random_graph()
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="gcn", num_layers=2, hidden=16, tau=1.0, dropout=0.5), data,
                        dtype=torch.float64).eval()
    conv1 = GCNConv(12, 16).double()
    conv2 = GCNConv(16, 3).double()
    with torch.no_grad():
        conv1.lin.weight.copy_(model.encoder[1].weight)
        conv1.bias.copy_(torch.randn(16, dtype=torch.float64))
        model.diffusion.posts[0][0].bias.copy_(conv1.bias)
        conv2.lin.weight.copy_(model.diffusion.posts[0][3].weight)
        conv2.bias.copy_(torch.randn(3, dtype=torch.float64))
        model.diffusion.posts[1].bias.copy_(conv2.bias)
        expected = conv2(conv1(data.x, data.edge_index).relu(), data.edge_index)
        assert (model(data.x) - expected).abs().max() < 1e-10


def test_appnp_model_propagation_is_pyg_appnp():
    data = random_graph(seed=1)
    model = build_model(ModelConfig(model="appnp", num_layers=10, hidden=8, tau=1.0, source_weight=0.1), data,
                        dtype=torch.float64).eval()
    with torch.no_grad():
        h = model.encoder(data.x)
        expected = APPNP(K=10, alpha=0.1)(h, data.edge_index)
        assert (model(data.x) - expected).abs().max() < 1e-10


@pytest.mark.parametrize("depth_steps", [1, 2, 3])
def test_sgc_model_is_pyg_sgconv(depth_steps):
    """Our SGC maps first and diffuses the class channels; PyG propagates X, then maps."""
    data = random_graph(seed=5)
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="sgc", num_layers=depth_steps, tau=1.0), data, dtype=torch.float64).eval()
    conv = SGConv(12, 3, K=depth_steps).double()
    with torch.no_grad():
        conv.lin.weight.copy_(model.encoder.weight)
        conv.lin.bias.copy_(torch.randn(3, dtype=torch.float64))
        model.decoder.bias.copy_(conv.lin.bias)
        assert (model(data.x) - conv(data.x, data.edge_index)).abs().max() < 1e-10
    assert model.diffusion.states(model.encoder(data.x))[-1].shape == (40, 3)   # 3 channels diffused, not 12


@pytest.mark.parametrize("graph_weight", [None, 0.3])
@pytest.mark.parametrize("qk_norm", ["row", "global"])
def test_difformer_layer_is_euler_step_of_dense_formula(graph_weight, qk_norm):
    data = random_graph(seed=2)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_layers=2, hidden=8, tau=0.4, graph_weight=graph_weight, qk_norm=qk_norm,
                                    dropout=0.0), data, dtype=torch.float64).eval()
    with torch.no_grad():
        z = model.encoder(data.x)
        prop = model.diffusion.blocks[0].field.diffusivity
        s_attn = prop.attention.dense(z)
        a_hat = prop.graph.dense()
        c_attn, c_graph = (1.0, 1.0) if graph_weight is None else (1 - graph_weight, graph_weight)
        expected = model.diffusion.posts[0]((1 - 0.4) * z + 0.4 * (c_attn * s_attn @ z + c_graph * a_hat @ z))
        assert (model.diffusion.states(z)[1] - expected).abs().max() < 1e-10


def test_every_model_builds_and_gives_logits():
    data = random_graph(seed=3)
    for name, extra in [("difformer_s", {}), ("difformer_a", {}), ("transformer", {}), ("gat", {"heads": 2, "tau": 1.0}),
                        ("gcn", {"tau": 1.0}), ("sgc", {"tau": 1.0}), ("appnp", {"tau": 1.0}), ("mlp", {"num_layers": 0})]:
        torch.manual_seed(0)
        model = build_model(ModelConfig(model=name, num_layers=extra.pop("num_layers", 2), hidden=8, **extra),
                            data.clone().apply(lambda t: t.float() if t.is_floating_point() else t))
        logits = model(data.x.float())
        assert logits.shape == (40, 3) and torch.isfinite(logits).all(), name
        logits.sum().backward()


def test_continuous_model_can_be_evaluated_with_another_solver():
    data = random_graph(seed=4)
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth="continuous", method="rk4", n_steps=4, t1=2.0, hidden=8, dropout=0.0),
                        data, dtype=torch.float64).eval()
    with torch.no_grad():
        rk4 = model(data.x)
        with model.diffusion.with_solver("euler", n_steps=2):
            euler = model(data.x)
        with model.diffusion.with_solver("dopri5", rtol=1e-9, atol=1e-11):
            dopri = model(data.x)
        assert model.diffusion.block.method == "rk4"
        assert (model(data.x) - rk4).abs().max() == 0
    assert (euler - rk4).abs().max() > 1e-4          # a coarse Euler solve is visibly different
    assert (dopri - rk4).abs().max() < 1e-3          # rk4 with 4 steps is close to the exact flow


@pytest.mark.parametrize("changes, match", [
    ({"model": "resnet"}, "unknown model"),
    ({"depth": "deep"}, "depth must be"),
    ({"model": "gcn", "depth": "continuous"}, "no continuous-depth form"),
    ({"tau": 1.5}, "stability region"),
    ({"tau": -0.1}, "tau must be"),
    ({"dropout": 1.0}, "dropout must lie"),
    ({"input_dropout": -0.1}, "input_dropout must lie"),
    ({"model": "gcn", "input_dropout": 0.5}, "already drops its input"),
    ({"model": "sgc", "input_dropout": 0.5}, "no encoder"),
    ({"graph_weight": 1.0}, "graph_weight must lie"),
    ({"source_weight": 1.0}, "source_weight must lie"),
    ({"qk_norm": "l2"}, "qk_norm must be"),
    ({"depth": "continuous", "method": "rk5"}, "unknown method"),
    ({"depth": "continuous", "method": "rk4", "adjoint": True}, "adjoint=True needs an adaptive"),
    ({"num_layers": 0}, "num_layers must be >= 1"),
])
def test_bad_configurations_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**changes)


@pytest.mark.parametrize("model", ["difformer_s", "mlp"])
def test_input_dropout_drops_features_before_the_encoder(model):
    """The encoder's Linear sees X with each entry zeroed with probability p and the rest scaled by
    1/(1-p) in training mode, and X itself in evaluation mode."""
    data = random_graph(n=400, features=50)
    torch.manual_seed(0)
    net = build_model(ModelConfig(model=model, num_layers=1, hidden=8, input_dropout=0.4, dropout=0.0), data,
                      dtype=torch.float64)
    linear = next(m for m in net.encoder if isinstance(m, torch.nn.Linear))
    seen = []
    linear.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].detach()))
    net.eval()
    net(data.x)
    assert torch.equal(seen[-1], data.x)
    net.train()
    net(data.x)
    kept = seen[-1] != 0
    assert abs(1 - kept.double().mean().item() - 0.4) < 0.02
    assert torch.allclose(seen[-1][kept], data.x[kept] / 0.6)


def test_describe_names_only_the_settings_a_model_uses():
    assert ModelConfig(model="sgc", num_layers=2, tau=1.0).describe() == "2 steps, tau 1.0"
    assert ModelConfig(model="mlp", num_layers=0, hidden=32).describe() == "no propagation, hidden 32"
    assert ModelConfig(source_weight=0.1).describe() == "8 layers, tau 0.5, source weight 0.1, hidden 64"
    continuous = ModelConfig(depth="continuous", method="rk4", t1=2.0, n_steps=4)
    assert continuous.describe() == "continuous, rk4 over [0, 2.0], 4 steps, hidden 64"
    assert "rtol" in continuous.replace(method="dopri5").describe()


def test_build_model_without_labels_takes_num_classes() -> None:
    """A graph to predict on may carry no labels: num_classes sizes the decoder instead."""
    data = Data(x=torch.randn(5, 3), edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=5)
    model = build_model(ModelConfig(model="gcn", num_layers=2, hidden=4), data, num_classes=3)
    assert model(data.x).shape == (5, 3)
    with pytest.raises(ValueError, match="no labels y to count the classes from: pass num_classes=C"):
        build_model(ModelConfig(model="gcn"), data)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        build_model(ModelConfig(model="gcn"), data, num_classes=0)


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_a_source_term_is_refused_for_models_that_change_width(model: str) -> None:
    with pytest.raises(ValueError, match=rf"^source_weight=0\.3: model '{model}' changes the width between its layers.*"
                                         r"use model='appnp' .* or a difformer_\* model"):
        ModelConfig(model=model, source_weight=0.3)
    assert ModelConfig(model="appnp", source_weight=0.3).source_weight == 0.3


OTHER_VALUES = {"num_layers": 3, "hidden": 16, "heads": 2, "tau": 0.3, "input_dropout": 0.1, "use_graph": False,
                "graph_weight": 0.5, "source_weight": 0.2, "value_proj": True, "layer_norm": False, "method": "euler",
                "t1": 2.0, "n_steps": 3, "rtol": 1e-3, "atol": 1e-3, "qk_bias": True, "encoder_bias": "uniform"}


@pytest.mark.parametrize("depth", ["discrete", "continuous"])
@pytest.mark.parametrize("model", ["difformer_s", "difformer_a", "transformer", "gat", "gcn", "sgc", "appnp", "mlp"])
def test_settings_a_model_does_not_use_do_not_change_it(model: str, depth: str) -> None:
    """ModelConfig.used_settings is the truth: changing any other setting leaves the model's output
    as it was (same seed), so refusing such flags and leaving them out of results.json loses nothing."""
    try:
        base = ModelConfig(model=model, depth=depth, num_layers=2, hidden=8, qk_norm="row")
    except ValueError:
        pytest.skip(f"{model} has no {depth} form")
    data = random_graph()
    torch.manual_seed(0)
    reference = build_model(base, data, dtype=data.x.dtype).eval()(data.x)
    unused = [name for name in OTHER_VALUES if name not in base.used_settings()]
    assert unused
    for name in unused:
        try:
            changed = base.replace(**{name: OTHER_VALUES[name]})
        except ValueError:  # a value the model refuses outright (e.g. a source term for gcn)
            continue
        torch.manual_seed(0)
        assert torch.equal(build_model(changed, data, dtype=data.x.dtype).eval()(data.x), reference), f"{model} uses {name}"


def test_results_record_only_the_settings_a_model_uses() -> None:
    assert ModelConfig(model="gcn").settings() == {"model": "gcn", "depth": "discrete", "num_layers": 8, "hidden": 64,
                                                    "tau": 0.5, "dropout": 0.2}
    assert "graph_weight" not in ModelConfig(use_graph=False).used_settings()
    assert {"method", "t1", "rtol", "atol", "adjoint"} <= set(ModelConfig(depth="continuous", method="dopri5").used_settings())


@pytest.mark.parametrize("config", [ModelConfig(model="difformer_s", num_layers=3, hidden=8, source_weight=0.1),
                                    ModelConfig(model="gcn", num_layers=2, hidden=8, tau=1.0)],
                         ids=["difformer_s", "gcn"])
def test_discrete_layers_skip_the_solver_checks_with_the_same_result(config):
    """A stack runs each layer as its block's Euler step without solve()'s per-call checks: the
    states equal those of solving every block (float64, bit for bit)."""
    import solvers

    data = random_graph(seed=7)
    torch.manual_seed(0)
    model = build_model(config, data, dtype=torch.float64).eval()
    z = model.encoder(data.x)
    fast = model.diffusion.states(z)
    slow = [z]
    for block, post in zip(model.diffusion.blocks, model.diffusion.posts):
        slow.append(post(block.solve(slow[-1], source_state=z).final))
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))
    with pytest.raises(ValueError, match="input state of the diffusion .* 3 non-finite"):
        bad = z.clone()
        bad[0, :3] = float("nan")
        model.diffusion.states(bad)
    model.diffusion.posts[1].register_forward_hook(lambda module, inputs, out: out * float("inf"))
    with pytest.raises(solvers.IntegrationError, match=r"layer 2 of \d+ .*non-finite"):
        model.diffusion(z)
