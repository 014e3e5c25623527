"""tools/attention_concentration.py: the weights it reads are the models' own, uniform attention
reads 1, and DIFFormer-s's weights are those of its dense S."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from diffusion_pde.data.sequences import load_listops
from diffusion_pde.models.sequence import SequenceModelConfig, build_sequence_model
from diffusion_pde.training.sequences import SequenceTrainConfig, train_sequences

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_PATH = Path(__file__).resolve().parents[2] / "tools" / "attention_concentration.py"
_SPEC = importlib.util.spec_from_file_location("attention_concentration", _PATH)
tool = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tool)


def _trained_run(tmp_path: Path, model: str, data):
    torch.manual_seed(0)
    net = build_sequence_model(SequenceModelConfig(model=model, hidden=8, num_layers=2, heads=2), num_classes=10,
                               max_length=data.max_length, vocab_size=16)
    train_sequences(net, data, SequenceTrainConfig(epochs=1, batch_size=16), seed=0, run_dir=tmp_path / model,
                    progress=False)
    return tmp_path / model


@pytest.fixture(scope="module")
def data():
    return load_listops(num_train=32, num_val=8, num_test=8, min_length=10, max_length=30, max_depth=3, max_args=3)


def _sequences(data):
    return [data.inputs[i, :int(data.lengths[i])] for i in data.test[:3].tolist()]


def test_softmax_weights_restate_multihead_attention():
    torch.manual_seed(1)
    module = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 7, 8)
    _, expected = module(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(tool._softmax_weights(module, x), expected)


def test_uniform_transformer_attention_reads_one(tmp_path, data):
    run = _trained_run(tmp_path, "transformer", data)
    checkpoint = torch.load(run / "best.pt", weights_only=False)
    for key in checkpoint["model"]:
        if "in_proj" in key:
            checkpoint["model"][key].zero_()  # q = k = 0: every weight 1/L
    torch.save(checkpoint, run / "best.pt")
    rows = tool.concentration(run, _sequences(data))
    assert len(rows) == 2
    for row in rows:
        assert row["peak_median"] == pytest.approx(1.0) and row["peak_max"] == pytest.approx(1.0)
        assert row["first_median"] == pytest.approx(1.0) and row["calls"] == 1


def test_transformer_rows_are_torchs_own_weights_layer_by_layer(tmp_path, data):
    """With sharpened attention (q/k weights ×4, random biases), each layer's numbers are those of
    ``self_attn(norm1(h), ...)``'s own weights (``need_weights=True``), h the layer's input."""
    run = _trained_run(tmp_path, "transformer", data)
    checkpoint = torch.load(run / "best.pt", weights_only=False)
    generator = torch.Generator().manual_seed(3)
    for key, value in checkpoint["model"].items():
        if "in_proj_weight" in key:
            value[:16].mul_(4.0)
        elif "in_proj_bias" in key:
            value.copy_(torch.randn(value.shape, generator=generator))
    torch.save(checkpoint, run / "best.pt")
    sequences = _sequences(data)
    rows = tool.concentration(run, sequences)
    from diffusion_pde.training.sequences import load_sequence_model

    model = load_sequence_model(run)
    peaks, firsts = [[], []], [[], []]
    with torch.no_grad():
        for tokens in sequences:
            h = model.embedding(tokens[None])
            for i, layer in enumerate(model.body.encoder.layers):
                x = layer.norm1(h)
                _, weights = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)
                peaks[i].append(len(tokens) * weights.amax(dim=-1).amax(dim=1).flatten())
                firsts[i].append(len(tokens) * weights[..., 0].amax(dim=1).flatten())
                h = layer(h)
    for i, row in enumerate(rows):
        assert row["peak_max"] == pytest.approx(float(torch.cat(peaks[i]).max()), rel=1e-4)
        assert row["peak_median"] == pytest.approx(float(torch.cat(peaks[i]).median()), rel=1e-4)
        assert row["first_median"] == pytest.approx(float(torch.cat(firsts[i]).median()), rel=1e-4)
    assert max(row["peak_max"] for row in rows) > 1.5  # not uniform: the check above has teeth


def test_ldn_rows_come_from_the_dense_diffusivity(tmp_path, data):
    run = _trained_run(tmp_path, "ldn", data)
    sequences = _sequences(data)
    rows = tool.concentration(run, sequences)
    assert len(rows) == 2 and all(row["kind"] == "DIFFormerSimple" and row["calls"] == 1 for row in rows)
    # the same numbers by hand for the first layer: its input is the embedding of the tokens
    from diffusion_pde.training.sequences import load_sequence_model

    model = load_sequence_model(run)
    attention = model.body.layers[0].field.diffusivity.parts[1]
    peaks, firsts = [], []
    for tokens in sequences:
        with torch.no_grad():
            s = attention.dense(model.embedding(tokens[None]))
        peaks.append(len(tokens) * s.amax(dim=-1).flatten())
        firsts.append(len(tokens) * s[..., 0].flatten())
    assert rows[0]["peak_max"] == pytest.approx(float(torch.cat(peaks).max()), rel=1e-5)
    assert rows[0]["first_median"] == pytest.approx(float(torch.cat(firsts).median()), rel=1e-5)


def test_a_continuous_ldn_pools_the_calls_of_its_one_attention(tmp_path, data):
    torch.manual_seed(0)
    config = SequenceModelConfig(model="ldn", hidden=8, depth="continuous", method="rk4", n_steps=2)
    net = build_sequence_model(config, num_classes=10, max_length=data.max_length, vocab_size=16)
    train_sequences(net, data, SequenceTrainConfig(epochs=1, batch_size=16), seed=0, run_dir=tmp_path / "c",
                    progress=False)
    rows = tool.concentration(tmp_path / "c", _sequences(data))
    assert len(rows) == 1 and rows[0]["calls"] == 8  # rk4: 4 stages × 2 steps


def test_the_runs_own_data_is_used(tmp_path, data):
    run = _trained_run(tmp_path, "cnn", data)
    sequences = tool.first_test_sequences(run, 3)
    assert [t.tolist() for t in sequences] == [t.tolist() for t in _sequences(data)]
