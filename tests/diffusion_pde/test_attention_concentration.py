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
    rows = tool.concentration(str(run), _sequences(data))
    assert len(rows) == 2
    for row in rows:
        assert row["peak_median"] == pytest.approx(1.0) and row["peak_max"] == pytest.approx(1.0)
        assert row["first_median"] == pytest.approx(1.0)


def test_ldn_rows_come_from_the_dense_diffusivity(tmp_path, data):
    run = _trained_run(tmp_path, "ldn", data)
    sequences = _sequences(data)
    rows = tool.concentration(str(run), sequences)
    assert len(rows) == 2 and all(row["kind"] == "DIFFormerSimple" for row in rows)
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
    # 1 + q̂·k̂ ∈ [0, 2]: no key gets more than 2 / (the mean of 1 + q̂·k̂ₗ) times the uniform weight
    assert all(1.0 <= row["peak_median"] <= row["peak_max"] for row in rows)
