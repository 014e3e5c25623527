"""Sequence datasets (ListOps generator, MNIST-1D, pixel sequences), the sequence models'
masking, and the sequence trainer's exact resume."""

from __future__ import annotations

import random

import pytest
import torch

from diffusion_pde.data.sequences import (LISTOPS_VOCAB, listops_expression, listops_tokens, listops_value,
                                          load_listops, load_mnist1d, load_pixel_sequences, load_sequences)
from diffusion_pde.models.sequence import SequenceModelConfig, build_sequence_model, masked_mean, valid_mask
from diffusion_pde.training.sequences import SequenceTrainConfig, train_sequences


def _evaluate_text(tokens: list[str]) -> int:
    """An independent evaluator of a ListOps token string: a stack machine over the tokens."""
    stack: list[list] = [[]]
    for token in tokens:
        if token.startswith("["):
            stack.append([token])
        elif token == "]":
            operator, *values = stack.pop()
            if operator == "[MIN":
                value = min(values)
            elif operator == "[MAX":
                value = max(values)
            elif operator == "[MED":
                ordered = sorted(values)
                middle = len(ordered) // 2
                value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
            else:
                value = sum(values) % 10
            stack[-1].append(value)
        else:
            stack[-1].append(int(token))
    (value,) = stack[0]
    return value


@pytest.mark.parametrize("seed", range(6))
def test_listops_labels_match_an_independent_evaluator(seed):
    rng = random.Random(seed)
    for _ in range(20):
        tokens, value = listops_expression(rng, min_length=1, max_length=400, max_depth=6, max_args=6)
        assert value == _evaluate_text(tokens)
        assert len(tokens) <= 400


def test_listops_known_expressions():
    tree = ("[MAX", [2, ("[SM", [3, 4]), 9])
    assert listops_tokens(tree) == ["[MAX", "2", "[SM", "3", "4", "]", "9", "]"]
    assert listops_value(tree) == 9
    assert listops_value(("[MED", [1, 2, 3, 8])) == 2  # median 2.5, rounded down
    assert listops_value(("[SM", [9, 9, 5])) == 3


def test_listops_dataset_shapes_lengths_and_determinism():
    data = load_listops(num_train=30, num_val=10, num_test=10, min_length=40, max_length=120, max_depth=6)
    again = load_listops(num_train=30, num_val=10, num_test=10, min_length=40, max_length=120, max_depth=6)
    assert torch.equal(data.inputs, again.inputs) and torch.equal(data.y, again.y)
    assert data.inputs.shape == (50, int(data.lengths.max()))
    assert ((data.lengths >= 40) & (data.lengths <= 120)).all()
    assert data.vocab_size == len(LISTOPS_VOCAB) and data.num_classes == 10
    for i in range(50):  # padding after the valid prefix only, labels from the tokens
        row = data.inputs[i]
        assert (row[:data.lengths[i]] > 0).all() and (row[data.lengths[i]:] == 0).all()
        assert data.y[i] == _evaluate_text([LISTOPS_VOCAB[t] for t in row[:data.lengths[i]].tolist()])
    parts = torch.cat([data.train, data.val, data.test])
    assert sorted(parts.tolist()) == list(range(50))
    other = load_listops(num_train=30, num_val=10, num_test=10, min_length=40, max_length=120, max_depth=6, seed=1)
    assert not torch.equal(other.y, data.y)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_train": 0}, "num_train"), ({"min_length": 50, "max_length": 10}, "min_length"),
    ({"max_args": 1}, "max_args"), ({"num_val": 2.5}, "num_val"),
])
def test_listops_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_listops(**{"num_train": 2, "num_val": 1, "num_test": 1, **kwargs})


def test_listops_impossible_length_is_named():
    with pytest.raises(ValueError, match="widen the length range"):
        listops_expression(random.Random(0), min_length=500, max_length=600, max_depth=2, max_args=3, max_tries=50)


def test_mnist1d_shapes_and_split():
    data = load_mnist1d(num_val=400)
    assert data.inputs.shape == (5000, 40, 1) and data.vocab_size is None and data.channels == 1
    assert (len(data.train), len(data.val), len(data.test)) == (3600, 400, 1000)
    assert set(torch.bincount(data.y).tolist()) and data.num_classes == 10
    assert torch.equal(load_mnist1d(num_val=400).inputs, data.inputs)


def test_digits_pixel_sequences():
    data = load_pixel_sequences("digits-seq", num_val=300, num_test=300, seed=3)
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert data.inputs.shape == (1797, 64, 1)
    assert torch.allclose(data.inputs[:, :, 0], torch.tensor(digits.data / 16.0, dtype=torch.float32))
    assert (len(data.train), len(data.val), len(data.test)) == (1197, 300, 300)
    assert not set(data.val.tolist()) & set(data.test.tolist())


def test_unknown_dataset_and_root_are_named():
    with pytest.raises(ValueError, match="valid: listops, mnist1d"):
        load_sequences("nope")
    with pytest.raises(ValueError, match="drop --root"):
        load_sequences("mnist1d", root="/tmp")


def test_masked_mean_ignores_padding():
    h = torch.randn(3, 7, 4)
    lengths = torch.tensor([7, 2, 5])
    mean = masked_mean(h, valid_mask(lengths, 7))
    for b in range(3):
        assert torch.allclose(mean[b], h[b, :lengths[b]].mean(dim=0))


@pytest.mark.parametrize("model", ["transformer", "lstm", "cnn"])
def test_padding_does_not_change_the_logits(model):
    """A sequence alone and the same sequence padded in a batch beside a longer one give the
    same logits (eval mode): padding never reaches the valid positions."""
    torch.manual_seed(0)
    config = SequenceModelConfig(model=model, hidden=16, num_layers=2, heads=2, dropout=0.0)
    net = build_sequence_model(config, num_classes=5, max_length=30, vocab_size=16).eval()
    short = torch.randint(1, 16, (1, 12))
    long = torch.randint(1, 16, (1, 30))
    batch = torch.zeros(2, 30, dtype=torch.long)
    batch[0, :12], batch[1] = short[0], long[0]
    alone = net(short, torch.tensor([12]))
    together = net(batch, torch.tensor([12, 30]))
    assert torch.allclose(alone[0], together[0], atol=1e-5)


def test_transformer_attention_dropout():
    """attention_dropout sets the dropout on the attention weights alone (the rest keeps
    ``dropout``): with 0 a training forward of one full-length batch is deterministic apart from
    the other dropouts, so with those at 0 too two training forwards agree, while attention
    dropout 0.5 makes them differ; None keeps torch's default (the weights dropped at ``dropout``)."""
    torch.manual_seed(0)
    tokens, lengths = torch.randint(1, 16, (2, 20)), torch.tensor([20, 20])
    for attention_dropout, same in ((0.0, True), (0.5, False)):
        config = SequenceModelConfig(model="transformer", hidden=16, num_layers=2, heads=2, dropout=0.0,
                                     attention_dropout=attention_dropout)
        net = build_sequence_model(config, num_classes=5, max_length=30, vocab_size=16).train()
        assert [layer.self_attn.dropout for layer in net.body.encoder.layers] == [attention_dropout] * 2
        assert torch.allclose(net(tokens, lengths), net(tokens, lengths)) is same
    default = build_sequence_model(SequenceModelConfig(model="transformer", hidden=16, heads=2, dropout=0.2),
                                   num_classes=5, max_length=30, vocab_size=16)
    assert {layer.self_attn.dropout for layer in default.body.encoder.layers} == {0.2}
    with pytest.raises(ValueError, match="attention_dropout is the transformer's"):
        SequenceModelConfig(model="ldn", attention_dropout=0.0)
    with pytest.raises(ValueError, match=r"attention_dropout must lie in \[0, 1\)"):
        SequenceModelConfig(model="transformer", attention_dropout=1.0)


def test_model_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown sequence model"):
        SequenceModelConfig(model="rnn")
    with pytest.raises(ValueError, match="hidden must be even"):
        SequenceModelConfig(model="lstm", hidden=15)
    with pytest.raises(ValueError, match="exceed the model's max_length"):
        net = build_sequence_model(SequenceModelConfig(model="cnn", hidden=8), num_classes=2, max_length=4, channels=1)
        net(torch.zeros(1, 9, 1), torch.tensor([9]))


def _tiny_listops():
    return load_listops(num_train=48, num_val=16, num_test=16, min_length=5, max_length=40, max_depth=4, max_args=4)


def test_training_learns_and_reports(tmp_path):
    data = load_pixel_sequences("digits-seq", num_val=200, num_test=200)
    torch.manual_seed(0)
    net = build_sequence_model(SequenceModelConfig(model="lstm", hidden=32, num_layers=2), num_classes=10,
                               max_length=64, channels=1)
    result = train_sequences(net, data, SequenceTrainConfig(epochs=4, batch_size=32, lr=3e-3), seed=0,
                             run_dir=tmp_path, progress=False)
    assert result.test_acc > 0.5 > 0.2 > result.chance  # 10 balanced classes: chance about 0.1
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]
    assert result.best_epoch == max(range(1, 5), key=lambda e: (result.history[e - 1]["val_acc"], -e))
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists() and (tmp_path / "result.json").exists()


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = _tiny_listops()
    config = SequenceTrainConfig(epochs=4, batch_size=16, lr=3e-3, checkpoint_every=1)
    model_config = SequenceModelConfig(model="transformer", hidden=16, num_layers=1, heads=2, dropout=0.2)

    def build():
        torch.manual_seed(5)
        return build_sequence_model(model_config, num_classes=10, max_length=data.max_length, vocab_size=16)

    whole = train_sequences(build(), data, config, seed=5, run_dir=tmp_path / "whole", progress=False)

    class Stop(Exception):
        pass

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_sequences(build(), data, config, seed=5, run_dir=tmp_path / "cut", progress=False, on_epoch=stop_after_two)
    # the interrupted run checkpointed epoch 1 (epoch 2 raised before its checkpoint)
    resumed = train_sequences(build(), data, config, seed=5, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    assert resumed.test_acc == whole.test_acc and resumed.best_epoch == whole.best_epoch


def test_resume_with_other_settings_is_refused(tmp_path):
    data = _tiny_listops()
    model_config = SequenceModelConfig(model="cnn", hidden=8, num_layers=1)
    net = build_sequence_model(model_config, num_classes=10, max_length=data.max_length, vocab_size=16)
    train_sequences(net, data, SequenceTrainConfig(epochs=1, batch_size=16), seed=0, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr 0.001 then, 0.01 now"):
        train_sequences(net, data, SequenceTrainConfig(epochs=2, batch_size=16, lr=0.01), seed=0, run_dir=tmp_path,
                        resume=True, progress=False)


def test_length_batches_partition_by_length():
    from diffusion_pde.training.sequences import length_batches

    lengths = torch.tensor([5, 3, 5, 5, 3, 7, 5, 3, 3, 3])
    index = torch.tensor([0, 1, 2, 3, 4, 6, 7, 8, 9])  # 5 left out
    for generator in (None, torch.Generator().manual_seed(1)):
        batches = length_batches(index, lengths, 2, generator)
        assert sorted(torch.cat(batches).tolist()) == index.tolist()
        assert all(len(b) <= 2 and len(set(lengths[b].tolist())) == 1 for b in batches)
    again = length_batches(index, lengths, 2, torch.Generator().manual_seed(1))
    assert [b.tolist() for b in again] == [b.tolist() for b in length_batches(index, lengths, 2, torch.Generator().manual_seed(1))]


def _cli(*argv):
    from diffusion_pde.cli import main

    return main(list(argv))


def test_cli_trains_writes_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["train", "--task", "sequence", "--dataset", "digits-seq", "--model", "ldn", "--hidden", "8", "--layers",
             "1", "--epochs", "2", "--out", str(out), "--quiet"]
    assert _cli(*flags, "--plot") == 0
    first = (out / "results.json").read_text()
    assert (out / "curves.png").exists() and (out / "split0" / "run0" / "history.csv").exists()
    assert _cli(*flags, "--resume") == 0  # finished: the stored result again
    import json

    assert json.loads((out / "results.json").read_text())["results"] == json.loads(first)["results"]
    with pytest.raises(SystemExit) as stop:  # results there: refused without --resume/--overwrite
        _cli(*flags)
    assert stop.value.code == 2


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "cora", "--model", "lstm"], "--model lstm classifies sequences"),
    (["--task", "sequence", "--dataset", "cora"], "--task sequence classifies sequences"),
    (["--dataset", "mnist1d", "--model", "gcn"], "is a node model"),
    (["--dataset", "mnist1d", "--model", "lstm", "--knn", "3"], "--knn: sequence classification does not use it"),
    (["--dataset", "mnist1d", "--model", "cnn", "--kernel", "sequence_global"], "--kernel set(s) the LDN layers"),
    (["--dataset", "mnist1d", "--model", "ldn", "--causal"], "turn the attention off"),
    (["--dataset", "mnist1d", "--model", "ldn", "--num-train", "5"], "--num-train sets the generated ListOps"),
    (["--dataset", "mnist1d", "--model", "ldn", "--test-size", "5"], "MNIST-1D keeps its own"),
])
def test_cli_refuses_what_sequences_cannot_use(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        _cli("train", *argv, "--out", str(tmp_path / "x"))
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_listops_cache_returns_the_same_data(tmp_path):
    options = dict(num_train=6, num_val=2, num_test=2, min_length=10, max_length=60, max_depth=5)
    made = load_listops(cache=tmp_path, **options)
    (stored,) = tmp_path.glob("listops-*.pt")
    again = load_listops(cache=tmp_path, **options)
    assert torch.equal(made.inputs, again.inputs) and torch.equal(made.y, again.y) and again.source == made.source
    assert not list(tmp_path.glob(".*.tmp"))
    other = load_listops(cache=tmp_path, **{**options, "seed": 1})
    assert len(list(tmp_path.glob("listops-*.pt"))) == 2 and not torch.equal(other.y, made.y)


def test_load_sequence_model_gives_the_trained_logits(tmp_path):
    from diffusion_pde.training.sequences import evaluate_sequences, load_sequence_model

    data = _tiny_listops()
    torch.manual_seed(0)
    net = build_sequence_model(SequenceModelConfig(model="ldn", hidden=8, num_layers=1, heads=2), num_classes=10,
                               max_length=data.max_length, vocab_size=16)
    result = train_sequences(net, data, SequenceTrainConfig(epochs=2, batch_size=16), seed=0, run_dir=tmp_path,
                             progress=False)
    loaded = load_sequence_model(tmp_path)
    assert evaluate_sequences(loaded, data, data.test)[0] == result.test_acc
    inputs, lengths = data.inputs[:1, :data.lengths[0]], data.lengths[:1]
    assert torch.equal(loaded(inputs, lengths), net.eval()(inputs, lengths))
    with pytest.raises(ValueError, match="is a sequence classification run; predict and load_model read"):
        from diffusion_pde.training import load_model

        load_model(tmp_path)


def test_predict_cli_names_the_task_of_a_sequence_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli("train", "--dataset", "digits-seq", "--model", "cnn", "--hidden", "8", "--layers", "1", "--epochs",
                "1", "--out", str(out), "--quiet") == 0
    with pytest.raises(SystemExit) as stop:
        _cli("predict", str(out), "--out", str(tmp_path / "p.csv"))
    assert stop.value.code == 2 and "load_sequence_model" in capsys.readouterr().err
