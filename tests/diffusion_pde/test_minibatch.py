"""Mini-batch training: random node partitions, induced subgraphs, a model bound to a subgraph
equal to the model built on it, training for every model, exact resume."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from saved_graphs import two_community_graph
from torch_geometric.data import Data

from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.models.config import MODELS
from diffusion_pde.training import TrainConfig, load_checkpoint, train_run
from diffusion_pde.training.batching import induced_batch, node_partitions, num_partitions
from diffusion_pde.training.distributed import Distribution

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), batch=st.integers(1, 500), world=st.integers(1, 4), seed=st.integers(0, 10**6),
       epoch=st.integers(1, 1000))
def test_partitions_cover_every_node_once_in_at_most_batch_size_nodes(n, batch, world, seed, epoch):
    parts = node_partitions(n, batch, seed=seed, epoch=epoch, world_size=world)
    assert len(parts) == num_partitions(n, batch, world) and len(parts) % world == 0
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(n))
    sizes = [p.numel() for p in parts]
    assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1
    assert all(torch.equal(p, p.sort().values) for p in parts)
    again = node_partitions(n, batch, seed=seed, epoch=epoch, world_size=world)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))  # every rank draws the same


def test_partitions_change_from_epoch_to_epoch():
    first, second = (node_partitions(1000, 100, seed=0, epoch=e) for e in (1, 2))
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_induced_batch_is_the_brute_force_subgraph():
    data, split = two_community_graph(n=50, seed=3)
    data.edge_weight = torch.rand(data.edge_index.shape[1])
    mask = torch.zeros(50, dtype=torch.bool)
    mask[split.train] = True
    nodes = torch.tensor([1, 4, 5, 9, 10, 22, 30, 31, 44, 49])
    batch = induced_batch(data, nodes, mask)
    position = {int(v): i for i, v in enumerate(nodes)}
    expected = sorted((position[int(s)], position[int(t)], float(w)) for (s, t), w in
                      zip(data.edge_index.t(), data.edge_weight) if int(s) in position and int(t) in position)
    got = sorted((int(s), int(t), float(w)) for (s, t), w in zip(batch.graph.edge_index.t(), batch.graph.edge_weight))
    assert got == expected
    assert torch.equal(batch.graph.x, data.x[nodes]) and torch.equal(batch.graph.y, data.y[nodes])
    assert batch.train.tolist() == [i for i, v in enumerate(nodes.tolist()) if bool(mask[v])]


def _configs():
    for model in MODELS:
        yield ModelConfig(model=model, num_layers=2, hidden=8, heads=2 if model == "gat" else 1)
        if model in ("difformer_s", "difformer_a", "transformer", "sgc", "appnp"):
            yield ModelConfig(model=model, depth="continuous", hidden=8, method="rk4", n_steps=3, t1=1.0)


@pytest.mark.parametrize("config", list(_configs()), ids=lambda c: f"{c.model}-{c.depth}")
def test_model_on_a_subgraph_equals_the_model_built_on_it(config):
    """Binding a trained model to a subgraph for one call (mini-batches) is exactly the model
    built for that subgraph with the same weights, and the full-graph model is left as it was."""
    data, _ = two_community_graph(n=60, seed=2)
    nodes = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:23].sort().values
    batch = induced_batch(data, nodes, torch.zeros(60, dtype=torch.bool)).graph
    torch.manual_seed(1)
    model = build_model(config, data).eval()
    reference = build_model(config, batch).eval()
    reference.load_state_dict(model.state_dict())
    before = model(data.x)
    torch.testing.assert_close(model(batch.x, batch), reference(batch.x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model(data.x), before, rtol=0, atol=0)


@pytest.mark.parametrize("config", list(_configs()), ids=lambda c: f"{c.model}-{c.depth}")
def test_mini_batch_training_runs_for_every_model(config):
    data, split = two_community_graph(n=60, seed=1)
    torch.manual_seed(0)
    model = build_model(config, data)
    start = [p.detach().clone() for p in model.parameters()]
    result = train_run(model, data, split, TrainConfig(epochs=3, lr=0.01, batch_size=25), seed=0, progress=False)
    assert result.epochs_run == 3
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))


def test_mini_batch_training_learns_the_communities():
    data, split = two_community_graph(n=200, seed=4)
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="gcn", num_layers=2, hidden=16, dropout=0.0), data)
    result = train_run(model, data, split, TrainConfig(epochs=60, lr=0.05, weight_decay=0.0, batch_size=50),
                       seed=0, progress=False)
    assert result.test_acc > 0.8


def test_one_partition_is_full_batch_training():
    """batch_size ≥ N: one partition holding every node, i.e. exactly the full-batch step."""
    data, split = two_community_graph(n=60, seed=1)
    config = dict(epochs=5, lr=0.02, weight_decay=1e-3)
    runs = []
    for batch_size in (None, 60):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="difformer_s", num_layers=2, hidden=8, dropout=0.0), data)
        runs.append(train_run(model, data, split, TrainConfig(**config, batch_size=batch_size), seed=0, progress=False))
    strip = lambda rows: [{k: round(v, 5) for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(runs[0].history) == strip(runs[1].history)


def test_interrupted_mini_batch_run_resumes_to_the_same_result(tmp_path):
    data, split = two_community_graph(seed=1)
    config = TrainConfig(epochs=12, lr=0.02, weight_decay=1e-3, checkpoint_every=3, batch_size=20)

    def model():
        torch.manual_seed(0)
        return build_model(ModelConfig(model="difformer_s", num_layers=2, hidden=8, dropout=0.3), data)

    reference = train_run(model(), data, split, config, seed=5, progress=False)

    def interrupt(epoch, metrics):
        if epoch == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(model(), data, split, config, seed=5, run_dir=tmp_path, progress=False, on_epoch=interrupt)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 6
    torch.manual_seed(999)
    resumed = train_run(model(), data, split, config, seed=5, run_dir=tmp_path, resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)


def test_batch_size_is_validated_and_several_processes_need_it():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TrainConfig(batch_size=0)
    data, split = two_community_graph()
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="gcn", num_layers=2, hidden=8), data)
    with pytest.raises(ValueError, match="needs mini-batches: pass batch_size"):
        train_run(model, data, split, TrainConfig(epochs=1), seed=0, progress=False,
                  distribution=Distribution(rank=0, world_size=2))


def test_graph_without_training_nodes_in_a_batch_still_steps():
    """A partition with no training node contributes a zero loss (its step changes nothing but
    Adam's weight decay), so every rank of a distributed step has a gradient to average."""
    data = Data(x=torch.randn(40, 4), edge_index=torch.randint(0, 40, (2, 100)), y=torch.arange(40) % 2, num_nodes=40)
    from diffusion_pde.data import Split
    split = Split("random", 0, torch.tensor([0, 1]), torch.arange(2, 20), torch.arange(20, 40))
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="gcn", num_layers=2, hidden=8), data)
    result = train_run(model, data, split, TrainConfig(epochs=2, batch_size=5), seed=0, progress=False)
    assert result.epochs_run == 2


@pytest.mark.parametrize("model_name", ["difformer_s", "gcn", "gat"])
def test_mini_batch_evaluation_in_chunks_equals_the_one_shot_evaluation(model_name):
    """Mini-batch runs evaluate the full graph in chunks of the batch size where the model
    streams (difformer_s, gcn) and at once where it does not (gat): the same metrics either way."""
    from diffusion_pde.training import evaluate
    data, split = two_community_graph(n=60, seed=2)
    torch.manual_seed(0)
    model = build_model(ModelConfig(model=model_name, num_layers=2, hidden=8), data)
    chunked, whole = evaluate(model, data, split, chunk_size=7), evaluate(model, data, split)
    assert chunked == pytest.approx(whole, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("model_name", ["sgc", "difformer_s"])
def test_mini_batch_steps_with_the_adjoint_equal_backpropagation(model_name):
    """The adjoint re-evaluates the field in the backward pass: the subgraph must still be bound
    then. One mini-batch epoch with the adjoint lands on the parameters of one without it."""
    data, split = two_community_graph(n=60, seed=1)
    params = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        config = ModelConfig(model=model_name, depth="continuous", hidden=8, dropout=0.0, method="dopri5", t1=1.0,
                             rtol=1e-9, atol=1e-11, adjoint=adjoint)
        model = build_model(config, data).double()
        double = data.clone()
        double.x = data.x.double()
        train_run(model, double, split, TrainConfig(epochs=1, lr=0.05, batch_size=25), seed=0, progress=False)
        params.append([p.detach().clone() for p in model.parameters()])
    for with_backprop, with_adjoint in zip(*params):
        torch.testing.assert_close(with_adjoint, with_backprop, rtol=1e-6, atol=1e-7)
