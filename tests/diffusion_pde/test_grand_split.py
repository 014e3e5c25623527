"""GRAND's node-classification protocol (``--split grand``): the largest connected component, 1,500
development nodes, 20 training nodes per class among them, the rest of them for validation and
every other node of the component for testing; trained, saved, loaded and predicted on the
component alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph
import torch
from torch_geometric.data import Data

from diffusion_pde.cli import main
from diffusion_pde.data import (
    DATASETS,
    default_split,
    grand_split,
    largest_component,
    load_dataset,
    offered_splits,
)
from diffusion_pde.models import ModelConfig
from diffusion_pde.training import TrainConfig, load_model, make_split, predict, run_experiment

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def cora() -> Data:
    return load_dataset("cora")


@pytest.fixture(scope="module")
def component(cora: Data) -> Data:
    return largest_component(cora)


def components_oracle(edge_index: torch.Tensor, num_nodes: int) -> tuple[int, np.ndarray]:
    """(count, labels) of the connected components, by scipy on a matrix built here."""
    src, dst = edge_index.numpy()
    adjacency = scipy.sparse.coo_matrix((np.ones(src.size), (src, dst)), shape=(num_nodes, num_nodes))
    return scipy.sparse.csgraph.connected_components(adjacency, directed=False)


def grand_reference(y: np.ndarray, seed: int, num_development: int = 1500, per_class: int = 20):
    """GRAND's protocol restated with numpy's RandomState (another random stream than ours)."""
    state = np.random.RandomState(seed)
    development = state.choice(y.size, num_development, replace=False)
    train = np.concatenate([state.choice(development[y[development] == c], per_class, replace=False)
                            for c in range(y.max() + 1)])
    return train, np.setdiff1d(development, train), np.setdiff1d(np.arange(y.size), development)


def test_the_largest_component_of_cora(cora: Data, component: Data) -> None:
    count, labels = components_oracle(cora.edge_index, cora.num_nodes)
    largest = np.bincount(labels).argmax()
    kept = np.flatnonzero(labels == largest)
    assert count > 1 and kept.size == component.num_nodes == 2485
    assert components_oracle(component.edge_index, component.num_nodes)[0] == 1   # connected
    assert component.n_id.tolist() == kept.tolist()                                 # in the original order
    assert torch.equal(component.x, cora.x[component.n_id]) and torch.equal(component.y, cora.y[component.n_id])
    inside = torch.from_numpy(labels == largest)
    mapped = {tuple(e) for e in component.n_id[component.edge_index].t().tolist()}
    original = {tuple(e) for e in cora.edge_index[:, inside[cora.edge_index[0]]].t().tolist()}
    assert mapped == original and component.edge_index.shape[1] == len(original)  # every edge among its nodes
    assert component.source == {**cora.source, "largest_component": True}
    assert "n_id" not in cora and "largest_component" not in cora.source          # the dataset is left as it was
    again = largest_component(component)                                           # connected: itself
    assert again.num_nodes == 2485 and torch.equal(again.n_id, component.n_id)


def test_the_grand_split_follows_the_protocol(component: Data) -> None:
    split = make_split(component, "grand", 0)
    parts = [split.train, split.val, split.test]
    assert split.kind == "grand" and split.index == 0
    assert [p.numel() for p in parts] == [140, 1360, 985]
    assert torch.cat(parts).sort().values.tolist() == list(range(2485))            # disjoint, covering the component
    assert torch.bincount(component.y[split.train]).tolist() == [20] * 7
    assert all(bool((p[1:] > p[:-1]).all()) for p in parts)                         # sorted, no repeats

    reference = grand_reference(component.y.numpy(), 0)                             # the same sizes and structure
    assert [r.size for r in reference] == [p.numel() for p in parts]
    assert np.bincount(component.y.numpy()[reference[0]]).tolist() == [20] * 7

    again = make_split(component, "grand", 0)                                        # seeded by the split index
    assert all(torch.equal(a, b) for a, b in zip(parts, [again.train, again.val, again.test]))
    other = make_split(component, "grand", 1)
    assert not torch.equal(other.test, split.test) and not torch.equal(other.train, split.train)
    assert [p.numel() for p in (other.train, other.val, other.test)] == [140, 1360, 985]


def test_sizes_can_be_changed_and_are_checked(component: Data) -> None:
    y = component.y
    split = grand_split(y, 3, num_development=0.6, per_class=10)
    assert split.train.numel() == 70 and split.val.numel() == int(0.6 * 2485) - 70
    assert split.test.numel() == 2485 - int(0.6 * 2485)
    with pytest.raises(ValueError, match=r"num_development = 2485 development nodes leave no test node.*2484 or less"):
        grand_split(y, 0, num_development=2485)
    with pytest.raises(ValueError, match=r"too few for 20 training nodes per class: .* raise num_development"):
        grand_split(y, 0, num_development=100)
    with pytest.raises(ValueError, match=r"class 1 has only 2 nodes in the graph .* use a random split"):
        grand_split(torch.tensor([0] * 30 + [1] * 2), 0, num_development=20, per_class=3)
    with pytest.raises(ValueError, match=r"all 2 development nodes are training nodes .* none is left for validation"):
        grand_split(torch.zeros(10, dtype=torch.long), 0, num_development=2, per_class=2)
    with pytest.raises(ValueError, match=r"per_class \(training nodes per class\) of the grand split must be a count"):
        grand_split(y, 0, per_class=0.5)


def test_where_the_grand_split_is_offered(cora: Data) -> None:
    for name in ("cora", "citeseer", "pubmed"):
        assert "grand" in DATASETS[name].splits and default_split(name) == "random"
    assert "grand" not in DATASETS["chameleon"].splits
    own = Data(x=torch.rand(6, 2), edge_index=torch.tensor([[0, 1], [1, 0]]), y=torch.arange(6) % 2)
    assert offered_splits(own) == ("random", "grand")                               # any labelled graph
    with pytest.raises(ValueError, match="not connected: restrict it first with diffusion_pde.data.largest_component"):
        make_split(cora, "grand", 0)                                                # the whole graph is refused


def test_python_run_trains_on_the_component_and_loads_back(tmp_path: Path) -> None:
    config, train = ModelConfig(model="difformer_s", num_layers=1, hidden=8), TrainConfig(epochs=2)
    trained: list = []
    payload = run_experiment("cora", config, train, split="grand", out=tmp_path / "run", progress=False,
                             log=lambda line: None, on_run=lambda result, model, split: trained.append(model))
    assert payload["split"] == "grand" and payload["num_nodes"] == 2485
    assert payload["split_sizes"] == {"0": [140, 1360, 985]} and payload["source"]["largest_component"] is True

    loaded = load_model(tmp_path / "run")                                           # the component, found again
    component = largest_component(load_dataset("cora"))
    expected = predict(trained[0], component)
    got = predict(loaded, component)
    assert got.probabilities.shape == (2485, 7)
    assert torch.equal(got.probabilities, expected.probabilities) and torch.equal(got.nodes, component.n_id)


def test_a_python_graph_needs_its_component_passed_again(tmp_path: Path) -> None:
    nodes = torch.arange(30)                               # two rings, of 24 and of 6 nodes: the component is the first
    ring = torch.stack([nodes, torch.where(nodes == 23, 0, torch.where(nodes == 29, 24, nodes + 1))])
    data = Data(x=torch.rand(30, 3, generator=torch.Generator().manual_seed(0)),
                edge_index=torch.cat([ring, ring.flip(0)], dim=1), y=nodes % 2)
    payload = run_experiment(data, ModelConfig(model="gcn", hidden=4), TrainConfig(epochs=1), split="grand",
                             num_development=12, per_class=3, out=tmp_path / "run", progress=False,
                             log=lambda line: None)
    assert payload["num_nodes"] == 24 and payload["split_sizes"] == {"0": [6, 6, 12]}
    with pytest.raises(ValueError, match=r"trained on a Data built in Python .* \(its largest connected component"):
        load_model(tmp_path / "run")
    assert load_model(tmp_path / "run", largest_component(data)) is not None


def test_the_command_line_trains_and_predicts_on_the_component(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "cora", "--split", "grand", "--model", "gcn", "--hidden", "8", "--epochs", "2",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "cora, its largest connected component (2485 nodes" in said
    assert "1 grand split(s) from index 0 (140 training, 1360 validation, 985 test nodes)" in said
    payload = json.loads((out / "results.json").read_text())
    assert payload["split"] == "grand" and payload["num_nodes"] == 2485
    assert payload["split_sizes"] == {"0": [140, 1360, 985]}
    assert payload["source"] == {"kind": "builtin", "name": "cora", "root": None, "largest_component": True}

    assert main(["predict", str(out), "--out", str(tmp_path / "p.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_nodes"] == 2485
    rows = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    component = largest_component(load_dataset("cora"))
    assert rows.shape == (2485, 2 + 7)
    assert rows[:, 0].astype(int).tolist() == component.n_id.tolist()               # Cora's own node ids
    expected = predict(load_model(out), component).probabilities.numpy()
    assert np.array_equal(rows[:, 2:].astype(np.float32), expected)


def test_grand_split_edge_inputs():
    """numpy integer counts are counts; a [N, K] target and a component too small for three node
    sets are refused with the fix (regression cases from a review)."""
    import numpy as np

    from diffusion_pde.data import grand_split

    y = torch.arange(40) % 2
    split = grand_split(y, 0, num_development=20, per_class=np.int64(3))
    assert split.train.numel() == 6
    with pytest.raises(ValueError, match=r"y of shape \[N\]"):
        grand_split(torch.zeros(40, 2, dtype=torch.long), 0, num_development=20, per_class=3)
    with pytest.raises(ValueError, match="at least 3 nodes"):
        grand_split(torch.zeros(1, dtype=torch.long), 0, num_development=1, per_class=1)
