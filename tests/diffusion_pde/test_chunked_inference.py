"""Chunked full-graph inference: DIFFormer-s as additive node sums + rows from the sums, and
``predict_chunked`` equal to the one-shot forward pass for every model it streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

import diffusion_pde as dp
from diffusion_pde.cli import main
from diffusion_pde.diffusivities import LinearGraphDiffusivity
from diffusion_pde.diffusivities.difformer_s import AttentionSums, DIFFormerSimple, GramSums
from diffusion_pde.models import ModelConfig, build_model, check_chunkable, predict_chunked
from diffusion_pde.training import load_model, predict
from saved_graphs import tiny_graph

N = 23


def random_graph(dtype: torch.dtype = torch.float32, n: int = N, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    edge_index = to_undirected(torch.randint(0, n, (2, 2 * n), generator=g), num_nodes=n)
    return Data(x=torch.randn(n, 6, generator=g, dtype=dtype), edge_index=edge_index, y=torch.arange(n) % 3)


CONFIGS = {
    "difformer_s": dict(model="difformer_s", num_layers=2),
    "difformer_s-no-graph-heads": dict(model="difformer_s", use_graph=False, heads=2),
    "difformer_s-mixed": dict(model="difformer_s", graph_weight=0.3, layer_norm=False, tau=1.0),
    "difformer_s-global-bias-value-source": dict(model="difformer_s", qk_norm="global", qk_bias=True, value_proj=True,
                                                 source_weight=0.2, num_layers=3),
    "difformer_s-global-no-graph": dict(model="difformer_s", qk_norm="global", use_graph=False, heads=3),
    "difformer_s-row-bias-value": dict(model="difformer_s", qk_bias=True, value_proj=True, graph_weight=0.5),
    "difformer_s-encoder-uniform": dict(model="difformer_s", encoder_bias="uniform", source_weight=0.5, tau=0.25),
    "gcn": dict(model="gcn", num_layers=3),
    "sgc": dict(model="sgc", num_layers=2),
    "appnp": dict(model="appnp", num_layers=4, source_weight=0.1),
    "mlp": dict(model="mlp", num_layers=0),
    "difformer_s-continuous-rk4": dict(model="difformer_s", depth="continuous", method="rk4", n_steps=3, t1=1.0,
                                       source_weight=0.1),
    "difformer_s-continuous-euler-global": dict(model="difformer_s", depth="continuous", method="euler", n_steps=4,
                                                t1=2.0, qk_norm="global", value_proj=True),
    "appnp-continuous-midpoint": dict(model="appnp", depth="continuous", method="midpoint", n_steps=2, t1=1.0,
                                      source_weight=0.3),
}
CHUNKS = (1, 7, N, N + 5)


def make_model(spec: dict, data: Data, dtype: torch.dtype, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(hidden=8, **spec), data, dtype=dtype)
    with torch.no_grad():  # LayerNorm starts at (1, 0) and biases at 0: make them count
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if isinstance(module, nn.LayerNorm) or name == "bias":
                    param.add_(0.3 * torch.randn_like(param))
    return model.eval()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_chunked_equals_one_shot(name: str, dtype: torch.dtype, tol: float) -> None:
    data = random_graph(dtype)
    model = make_model(CONFIGS[name], data, dtype)
    with torch.no_grad():
        hidden = model.states(data.x)[-1]
        expected = model.decoder(hidden)
    for chunk in CHUNKS:
        logits = predict_chunked(model, data, chunk)
        assert logits.shape == expected.shape and logits.dtype == dtype
        assert (logits - expected).abs().max() <= tol * max(1.0, expected.abs().max()), (name, chunk)
        logits2, hidden2 = predict_chunked(model, data.x, chunk, return_hidden=True)
        assert torch.equal(logits2, logits)
        assert (hidden2 - hidden).abs().max() <= tol * max(1.0, hidden.abs().max()), (name, chunk)


def test_predict_with_chunk_size_matches_one_shot_and_restores_the_mode() -> None:
    data = random_graph()
    model = make_model(CONFIGS["difformer_s-global-bias-value-source"], data, torch.float32).train()
    chunked = predict_chunked(model, data, 5)
    assert model.training  # restored
    full = predict(model, data)
    streamed = predict(model, data, chunk_size=4)
    assert torch.allclose(streamed.probabilities, full.probabilities, atol=1e-6)
    assert torch.allclose(streamed.embeddings, full.embeddings, atol=1e-5)
    assert torch.allclose(torch.softmax(chunked, 1), full.probabilities, atol=1e-6)


# ---- DIFFormer-s as sums + apply ---------------------------------------------------------------

def difformer(qk_norm: str, bias: bool, heads: int = 2, dtype: torch.dtype = torch.float64, frozen: bool = False):
    torch.manual_seed(3)
    return dp.diffusivity("difformer_s", in_channels=5, heads=heads, key_channels=3, qk_norm=qk_norm, bias=bias,
                          frozen=frozen, dtype=dtype)


@pytest.mark.parametrize("qk_norm", ["row", "global"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_sums_are_additive_and_apply_by_rows_is_forward(qk_norm: str, bias: bool, batched: bool) -> None:
    s = difformer(qk_norm, bias)
    shape = (2, 11) if batched else (11,)
    z, v = torch.randn(*shape, 5, dtype=torch.float64), torch.randn(*shape, 4, dtype=torch.float64)
    whole = s.sums(z, v)
    parts = s.sums(z[..., :4, :], v[..., :4, :]) + s.sums(z[..., 4:5, :], v[..., 4:5, :]) + \
        s.sums(z[..., 5:, :], v[..., 5:, :])
    assert isinstance(whole, AttentionSums if qk_norm == "row" else GramSums)
    assert parts.num_nodes == whole.num_nodes == 11
    fields = ("kv", "key_sum", "value_sum", "query_sq") if qk_norm == "row" else ("gram", "gram_values")
    for field in fields:
        a, b = getattr(whole, field), getattr(parts, field)
        assert (a is None) == (b is None) == (field == "query_sq")
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-13), field
    if qk_norm == "global":  # the augmented Gram matrices themselves, against their definition
        z1, v1 = (torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype)], dim=-1) for x in (z, v))
        assert torch.allclose(whole.gram, z1.transpose(-1, -2) @ z1, rtol=1e-13, atol=1e-13)
        assert torch.allclose(whole.gram_values, z1.transpose(-1, -2) @ v1, rtol=1e-13, atol=1e-13)
    expected = s(z, v)
    rows = torch.cat([s.apply(z[..., i:i + 3, :], parts) for i in range(0, 11, 3)], dim=-2)
    assert torch.allclose(rows, expected, rtol=1e-13, atol=1e-13)
    assert torch.allclose(expected, s.dense(z) @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("qk_norm", ["row", "global"])
def test_gradients_flow_through_both_steps(qk_norm: str) -> None:
    s = difformer(qk_norm, bias=True)
    z = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)

    def streamed(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sums = s.sums(z[:3], v[:3]) + s.sums(z[3:], v[3:])
        return torch.cat([s.apply(z[:5], sums), s.apply(z[5:], sums)])

    assert torch.autograd.gradcheck(streamed, (z, v))
    weights = torch.randn(7, 5, dtype=torch.float64)
    grads = torch.autograd.grad((streamed(z, v) * weights).sum(), (z, v, s.query.weight, s.key.bias))
    expected = torch.autograd.grad((s(z, v) * weights).sum(), (z, v, s.query.weight, s.key.bias))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_rows_without_attention_mass_stay_uniform_by_chunks() -> None:
    # d_k = 1, every key opposite every query: all kernel sums vanish, every row is 1/N
    s = dp.diffusivity("difformer_s", in_channels=1, key_channels=1, dtype=torch.float64)
    with torch.no_grad():
        s.query.weight.fill_(1.0)
        s.key.weight.fill_(-1.0)
    z = torch.rand(9, 1, dtype=torch.float64) + 0.5
    v = torch.randn(9, 3, dtype=torch.float64)
    sums = s.sums(z[:2], v[:2]) + s.sums(z[2:], v[2:])
    rows = torch.cat([s.apply(z[i:i + 4], sums) for i in range(0, 9, 4)])
    assert torch.allclose(rows, v.mean(dim=0).expand(9, 3), atol=1e-14)
    assert torch.allclose(rows, s(z, v), atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sixteen_bit_states_sum_in_float32(dtype: torch.dtype) -> None:
    s = difformer("row", bias=False, dtype=dtype)
    z = (torch.randn(40, 5) * 30).to(dtype)  # Σ_j v_j overflows float16
    sums = s.sums(z[:25]) + s.sums(z[25:])
    assert sums.kv.dtype == torch.float32 and sums.dtype == dtype
    rows = torch.cat([s.apply(z[:10], sums), s.apply(z[10:], sums)])
    assert rows.dtype == dtype and torch.isfinite(rows).all()
    assert torch.allclose(rows.float(), s(z).float(), rtol=2e-2, atol=2e-2)


def test_frozen_sums_cover_all_nodes() -> None:
    s = difformer("global", bias=True, frozen=True)
    z0, z = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    s.set_initial_state(z0)
    assert torch.allclose(s.apply(z, s.sums(z)), s(z), rtol=1e-13, atol=1e-13)


def test_sums_of_another_normalisation_are_refused() -> None:
    row, glob = difformer("row", bias=False), difformer("global", bias=False)
    z = torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="another qk_norm"):
        glob.apply(z, row.sums(z))
    with pytest.raises(ValueError, match="another qk_norm"):
        row.apply(z, glob.sums(z))
    with pytest.raises(ValueError, match="cannot add the sums"):
        row.sums(z) + glob.sums(z)
    with pytest.raises(ValueError, match="cannot add the sums"):
        glob.sums(z) + row.sums(z)
    with pytest.raises(ValueError, match="cannot add the sums"):
        glob.sums(z) + glob.sums(z, torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="AttentionSums"):
        row.apply(z, z)


# ---- streaming, not one-shot ----------------------------------------------------------------------

def test_no_full_attention_or_graph_product_and_blocks_bounded_by_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    data = random_graph(n=50)
    model = make_model(CONFIGS["difformer_s-global-bias-value-source"], data, torch.float32)
    with torch.no_grad():
        expected = model(data.x)

    def forbidden(*args, **kwargs):
        raise AssertionError("a one-shot product over all N nodes ran")

    rows_seen: list[int] = []
    sums, apply = DIFFormerSimple.sums, DIFFormerSimple.apply

    def counting_sums(self, z, values=None):
        rows_seen.append(z.shape[0])
        return sums(self, z, values)

    def counting_apply(self, z, s):
        rows_seen.append(z.shape[0])
        return apply(self, z, s)

    monkeypatch.setattr(DIFFormerSimple, "forward", forbidden)
    monkeypatch.setattr(LinearGraphDiffusivity, "forward", forbidden)
    monkeypatch.setattr(DIFFormerSimple, "sums", counting_sums)
    monkeypatch.setattr(DIFFormerSimple, "apply", counting_apply)
    for module in (model.encoder, model.decoder):
        module.register_forward_pre_hook(lambda _, args: rows_seen.append(args[0].shape[0]))
    logits = predict_chunked(model, data, 8)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert rows_seen and max(rows_seen) <= 8
    # 3 layers, each one pass for the sums and one for the rows, over ceil(50/8) = 7 chunks
    assert len(rows_seen) == 7 * (2 + 3 * 2)


# ---- what cannot be streamed ------------------------------------------------------------------------

@pytest.mark.parametrize("spec, match", [
    (dict(model="gat"), r"cannot stream model 'gat': its diffusivity 'gat' cannot be evaluated by blocks of rows"),
    (dict(model="difformer_a"), r"cannot stream model 'difformer_a': its diffusivity 'difformer_a' scores every pair"),
    (dict(model="transformer"), r"cannot stream model 'transformer': .*scores every pair"),
    (dict(model="difformer_s", depth="continuous", method="dopri5"), r"adaptive method 'dopri5'.*with_solver"),
    (dict(model="sgc", depth="continuous", method="bosh3"), r"cannot stream model 'sgc': it integrates with the adaptive"),
])
def test_models_it_cannot_stream_are_refused_with_the_fix(spec: dict, match: str) -> None:
    data = random_graph()
    model = build_model(ModelConfig(hidden=4, **spec), data)
    for call in (lambda: predict_chunked(model, data, 4), lambda: check_chunkable(model),
                 lambda: predict(model, data, chunk_size=4)):
        with pytest.raises(ValueError, match=match) as info:
            call()
        assert "predict it in one shot" in str(info.value) and "without --chunk-size" in str(info.value)


def test_frozen_attention_and_unknown_modules_are_refused() -> None:
    data = random_graph()
    model = build_model(ModelConfig(hidden=4), data)
    model.diffusion.blocks[0].field.diffusivity.attention.frozen = True
    with pytest.raises(ValueError, match=r"'difformer_s' is frozen at Z⁰"):
        predict_chunked(model, data, 4)
    model = build_model(ModelConfig(hidden=4), data)
    model.diffusion.posts[0].append(nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match=r"post-step module holds BatchNorm1d, which is not known to act on each node"):
        predict_chunked(model, data, 4)


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True, "8"])
def test_chunk_size_must_be_a_positive_int(chunk: object) -> None:
    data = random_graph()
    model = build_model(ModelConfig(model="gcn", hidden=4), data)
    with pytest.raises(ValueError, match=r"^chunk_size must be a positive int \(nodes per chunk\)"):
        predict_chunked(model, data, chunk)


def test_a_graph_of_another_size_is_refused() -> None:
    model = build_model(ModelConfig(model="gcn", hidden=4), random_graph())
    with pytest.raises(ValueError, match=r"data has 30 nodes but the model's graph operator was built for 23"):
        predict_chunked(model, random_graph(n=30), 4)


# ---- command line ---------------------------------------------------------------------------------

def test_predict_command_with_chunk_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = tiny_graph(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(graph), "--model", "difformer_s", "--hidden", "4", "--layers", "2",
                 "--epochs", "2", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "--out", str(tmp_path / "one.csv"), "--embeddings"]) == 0
    assert main(["predict", str(run), "--out", str(tmp_path / "chunked.csv"), "--embeddings", "--chunk-size", "5",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["chunk_size"] == 5
    one = (tmp_path / "one.csv").read_text().splitlines()
    chunked = (tmp_path / "chunked.csv").read_text().splitlines()
    assert one[0] == chunked[0] and len(one) == len(chunked) == 13
    for a, b in zip(one[1:], chunked[1:]):
        assert torch.allclose(torch.tensor([float(c) for c in a.split(",")]),
                              torch.tensor([float(c) for c in b.split(",")]), atol=1e-6)
    model = load_model(run)
    assert torch.allclose(predict(model, model_graph := torch.load(graph, weights_only=False), chunk_size=3).probabilities,
                          predict(model, model_graph).probabilities, atol=1e-6)


def test_predict_command_refuses_what_it_cannot_stream(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = tiny_graph(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(graph), "--model", "gat", "--hidden", "8", "--epochs", "1", "--out", str(run),
                 "--quiet"]) == 0
    capsys.readouterr()
    for flag, match in (("3", "cannot stream model 'gat'"), ("0", "--chunk-size 0: give a positive number")):
        with pytest.raises(SystemExit) as info:
            main(["predict", str(run), "--out", str(tmp_path / "p.csv"), "--chunk-size", flag])
        err = capsys.readouterr().err
        assert info.value.code == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()
