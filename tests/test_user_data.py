"""A user's own graph: folders of CSV/NPY files and saved Data, validated with clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from diffusion_pde.data import Split
from diffusion_pde.data.user import load_graph, validate_graph_data, validate_split

EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [1, 3]])
X = np.arange(12, dtype=np.float64).reshape(4, 3) / 10
Y = np.array([0, 1, 1, 0])
TRAIN = np.array([1, 1, 0, 0], dtype=bool)
VAL = np.array([0, 0, 1, 0], dtype=bool)
TEST = np.array([0, 0, 0, 1], dtype=bool)


def _write_csv(folder: Path, masks: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "edge_index.csv").write_text("source,target\n" + "".join(f"{a},{b}\n" for a, b in EDGES))
    (folder / "x.csv").write_text("".join(",".join(str(v) for v in row) + "\n" for row in X))
    (folder / "y.csv").write_text("label\n" + "".join(f"{v}\n" for v in Y))
    if masks:
        for name, mask in (("train_mask", TRAIN), ("val_mask", VAL), ("test_mask", TEST)):
            (folder / f"{name}.csv").write_text("".join(f"{int(v)}\n" for v in mask))
    return folder


def _write_npy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "edge_index.npy", EDGES.T)
    np.save(folder / "x.npy", X)
    np.save(folder / "y.npy", Y)
    for name, mask in (("train_mask", TRAIN), ("val_mask", VAL), ("test_mask", TEST)):
        np.save(folder / f"{name}.npy", mask)
    return folder


def _check(data: Data) -> None:
    assert torch.equal(data.edge_index, torch.from_numpy(EDGES.T).long())
    assert torch.allclose(data.x, torch.from_numpy(X).float()) and data.x.dtype == torch.float32
    assert torch.equal(data.y, torch.from_numpy(Y).long())
    assert data.num_nodes == 4 and data.num_classes == 2
    for name, mask in (("train_mask", TRAIN), ("val_mask", VAL), ("test_mask", TEST)):
        assert torch.equal(data[name], torch.from_numpy(mask))


def test_csv_npy_and_saved_data_give_the_same_graph(tmp_path: Path) -> None:
    _check(load_graph(_write_csv(tmp_path / "csv")))
    _check(load_graph(_write_npy(tmp_path / "npy")))
    masks = {name: torch.from_numpy(m) for name, m in (("train_mask", TRAIN), ("val_mask", VAL), ("test_mask", TEST))}
    fields = dict(x=torch.from_numpy(X), edge_index=torch.from_numpy(EDGES.T), y=torch.from_numpy(Y), **masks)
    torch.save(Data(**fields), tmp_path / "graph.pt")
    torch.save(fields, tmp_path / "dict.pt")
    for name in ("graph.pt", "dict.pt"):
        data = load_graph(tmp_path / name)
        _check(data)
        assert data.name == Path(name).stem


def test_loading_never_writes_into_the_folder(tmp_path: Path) -> None:
    folder = _write_csv(tmp_path / "g")
    before = {p: p.read_bytes() for p in folder.iterdir()}
    load_graph(folder)
    assert {p: p.read_bytes() for p in folder.iterdir()} == before


def _corrupt(tmp_path: Path, what: str) -> Path:
    folder = _write_csv(tmp_path / "g")
    if what == "missing y":
        (folder / "y.csv").unlink()
    elif what == "label -1":
        (folder / "y.csv").write_text("0\n1\n-1\n0\n")
    elif what == "float labels":
        (folder / "y.csv").write_text("0\n1.5\n1\n0\n")
    elif what == "edge out of range":
        (folder / "edge_index.csv").write_text("0,1\n1,4\n")
    elif what == "nan feature":
        (folder / "x.csv").write_text("0,0,0\n1,nan,1\n0,0,0\n1,1,1\n")
    elif what == "three columns":
        (folder / "edge_index.csv").write_text("0,1,2\n1,2,3\n")
    elif what == "ragged csv":
        (folder / "x.csv").write_text("0,0,0\n1,1\n0,0,0\n1,1,1\n")
    elif what == "pandas header":                                     # what to_csv(index=False) writes
        (folder / "x.csv").write_text("0,1,2\n" + "".join(",".join(str(v) for v in row) + "\n" for row in X))
    elif what == "negative edge weight":
        (folder / "edge_weight.csv").write_text("weight\n1\n-1\n1\n1\n1\n")
    elif what == "edge weight count":
        np.save(folder / "edge_weight.npy", np.ones(3))
    elif what == "mixed mask shapes":
        (folder / "train_mask.csv").write_text("1,1,0\n1,0,1\n0,0,0\n0,0,0\n")
    elif what == "text in csv":
        (folder / "x.csv").write_text("0,0,0\n1,a,1\n0,0,0\n1,1,1\n")
    elif what == "partial masks":
        (folder / "test_mask.csv").unlink()
    elif what == "both formats":
        np.save(folder / "y.npy", Y)
    elif what == "wrong label count":
        (folder / "y.csv").write_text("0\n1\n1\n")
    elif what == "mask not 0/1":
        (folder / "val_mask.csv").write_text("0\n2\n1\n0\n")
    elif what == "truncated pt":
        torch.save(Data(x=torch.ones(4, 1), edge_index=torch.zeros(2, 0, dtype=torch.long), y=torch.zeros(4)),
                   tmp_path / "g.pt")
        raw = (tmp_path / "g.pt").read_bytes()
        (tmp_path / "g.pt").write_bytes(raw[: len(raw) // 2])
        return tmp_path / "g.pt"
    elif what == "pt holds a list":
        torch.save([1, 2], tmp_path / "g.pt")
        return tmp_path / "g.pt"
    elif what == "no such path":
        return tmp_path / "nowhere"
    elif what == "text file":
        (tmp_path / "g.txt").write_text("hello")
        return tmp_path / "g.txt"
    return folder


BAD = [
    ("missing y", FileNotFoundError, r"no y\.csv or y\.npy"),
    ("label -1", ValueError, r"y holds the label -1 at node 2.*0\.\.C-1"),
    ("float labels", ValueError, r"y\.csv must hold integers"),
    ("edge out of range", ValueError, r"edge_index holds node indices outside \[0, N\) = \[0, 4\)"),
    ("nan feature", ValueError, r"x holds NaN or Inf \(first at node 1\)"),
    ("three columns", ValueError, r"edge_index\.csv has 3 column\(s\) per line, but must have two \(source,target\); put "
                                  r"edge weights in edge_weight\.csv"),
    ("ragged csv", ValueError, r"x\.csv could not be parsed: lines have different numbers of columns"),
    ("text in csv", ValueError, r"x\.csv could not be parsed"),
    ("pandas header", ValueError, r"x\.csv: its first line '0,1,2' looks like the column header pandas writes .*"
                                  r"to_csv\(path, index=False, header=False\), or name the columns"),
    ("negative edge weight", ValueError, r"edge_weight must be finite and >= 0, but edge 1 has weight -1\.0"),
    ("edge weight count", ValueError, r"edge_weight must hold one weight per edge, shape \[E\] = \[5\] .*got \(3,\)"),
    ("mixed mask shapes", ValueError, r"the masks have different shapes \(train_mask \[4, 3\], val_mask \[4\], "
                                      r"test_mask \[4\]\); give all of them as \[N\] .* or all as \[N, K\]"),
    ("partial masks", ValueError, r"but not test_mask: give all three masks or none"),
    ("both formats", ValueError, r"holds both y\.npy and y\.csv"),
    ("wrong label count", ValueError, r"y must hold one label per node, shape \[N\] = \[4\]"),
    ("mask not 0/1", ValueError, r"val_mask must hold booleans or 0/1"),
    ("truncated pt", ValueError, r"g\.pt could not be read by torch\.load"),
    ("pt holds a list", TypeError, r"g\.pt holds a list"),
    ("no such path", FileNotFoundError, r"nowhere does not exist"),
    ("text file", ValueError, r"neither a folder nor a \.pt"),
]


@pytest.mark.parametrize(("what", "error", "match"), BAD, ids=[case[0] for case in BAD])
def test_bad_user_graphs_are_refused_naming_the_file_and_the_fix(tmp_path: Path, what: str, error: type,
                                                                  match: str) -> None:
    with pytest.raises(error, match=match):
        load_graph(_corrupt(tmp_path, what))


def test_validate_converts_dtypes_and_refuses_non_data() -> None:
    data = Data(x=torch.ones(3, 2, dtype=torch.float64), edge_index=torch.tensor([[0], [1]], dtype=torch.int32),
                y=torch.tensor([0.0, 1.0, 0.0]))
    out = validate_graph_data(data, dtype=torch.float32)
    assert out.x.dtype == torch.float32 and out.edge_index.dtype == torch.long and out.y.dtype == torch.long
    assert validate_graph_data(data).x.dtype == torch.float64  # a floating x keeps its dtype by default
    with pytest.raises(TypeError, match="must be a torch_geometric.data.Data"):
        validate_graph_data({"x": 1})
    with pytest.raises(ValueError, match=r"has no y"):
        validate_graph_data(Data(x=torch.ones(3, 2), edge_index=torch.zeros(2, 0, dtype=torch.long)))


def _split(train: list[int], val: list[int], test: list[int]) -> Split:
    return Split("user", 0, *(torch.tensor(part, dtype=torch.long) for part in (train, val, test)))


@pytest.mark.parametrize(("split", "match"), [
    (([0, 1], [], [3]), r"split: val is empty"),
    (([0, 1], [2], [1]), r"split: train and test share 1 node\(s\) \(e\.g\. node 1\)"),
    (([0, 9], [2], [3]), r"split: train holds node indices outside \[0, 4\)"),
    (([0, 0], [2], [3]), r"split: train lists a node more than once"),
])
def test_bad_splits_are_refused(split: tuple, match: str) -> None:
    data = validate_graph_data(Data(x=torch.ones(4, 2), edge_index=torch.zeros(2, 0, dtype=torch.long),
                                    y=torch.tensor([0, 1, 1, 0])))
    with pytest.raises(ValueError, match=match):
        validate_split(_split(*split), data)


def test_a_class_without_training_nodes_warns() -> None:
    data = validate_graph_data(Data(x=torch.ones(5, 2), edge_index=torch.zeros(2, 0, dtype=torch.long),
                                    y=torch.tensor([0, 1, 2, 0, 2])))
    with pytest.warns(UserWarning, match=r"class\(es\) \[2\] have no training node"):
        validate_split(_split([0, 1], [2], [3]), data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class has a training node: no warning
        validate_split(_split([0, 1, 2], [3], [4]), data)


def test_a_graph_to_predict_on_needs_no_labels_and_keeps_one_feature_column(tmp_path: Path) -> None:
    folder = _write_csv(tmp_path / "g", masks=False)
    (folder / "y.csv").unlink()
    (folder / "x.csv").write_text("0.5\n1\n2\n3\n")                   # one feature per node: still [N, 1]
    with pytest.raises(FileNotFoundError, match=r"no y\.csv or y\.npy"):
        load_graph(folder)
    data = load_graph(folder, require_labels=False)
    assert data.x.shape == (4, 1) and data.y is None and "num_classes" not in data
    assert data.source == {"kind": "file", "path": str(folder.resolve())}


def test_a_header_alone_in_edge_index_csv_is_a_graph_without_edges(tmp_path: Path) -> None:
    folder = _write_csv(tmp_path / "g")
    (folder / "edge_index.csv").write_text("source,target\n")
    data = load_graph(folder)
    assert data.edge_index.shape == (2, 0) and data.edge_index.dtype == torch.long


def test_a_numeric_first_line_other_than_a_pandas_header_is_data(tmp_path: Path) -> None:
    folder = _write_csv(tmp_path / "g")
    (folder / "x.csv").write_text("0,1,3\n" + "".join(",".join(str(v) for v in row) + "\n" for row in X[1:]))
    assert load_graph(folder).x[0].tolist() == [0.0, 1.0, 3.0]


def test_edge_weights_are_kept_from_folders_and_saved_data_and_edge_attr_warns(tmp_path: Path) -> None:
    weights = np.array([0.5, 2.0, 1.0, 0.0, 3.0])
    folder = _write_csv(tmp_path / "g")
    (folder / "edge_weight.csv").write_text("weight\n" + "".join(f"{w}\n" for w in weights))
    assert torch.equal(load_graph(folder).edge_weight, torch.from_numpy(weights).float())
    fields = dict(x=torch.from_numpy(X), edge_index=torch.from_numpy(EDGES.T), y=torch.from_numpy(Y),
                  edge_weight=torch.from_numpy(weights), edge_attr=torch.rand(5, 2))
    torch.save(Data(**fields), tmp_path / "graph.pt")
    with pytest.warns(UserWarning, match=r"edge_attr is not used .*give edge_weight \[E\] instead"):
        data = load_graph(tmp_path / "graph.pt")
    assert torch.equal(data.edge_weight, torch.from_numpy(weights).float()) and "edge_attr" not in data


def test_a_split_stored_in_part_says_how_to_fix_it(tmp_path: Path) -> None:
    from diffusion_pde.training.experiment import make_split

    data = validate_graph_data(Data(x=torch.from_numpy(X), edge_index=torch.from_numpy(EDGES.T), y=torch.from_numpy(Y),
                                    train_mask=torch.from_numpy(TRAIN)))
    with pytest.raises(ValueError, match=r"it has train_mask but not val_mask, test_mask\): give all three masks .* or "
                                         r"use a random split \(split='random', --split random\)"):
        make_split(data, "fixed", 0)
    assert make_split(data, "random", 0, per_class=1, num_val=1, num_test=1).train.numel() == 2


@pytest.mark.parametrize(("labels", "match"), [
    ([0, 0, 0, 1, 1, 1, 2], r"class 2 has only 1 node, too few for a random split .*drop that class's node or merge the "
                            r"class into another .*or give train/val/test masks"),
    ([0, 0, 0, 2, 2, 2], r"no node has the label 1, but the labels run up to 2: relabel the classes to 0\.\.C-1 without "
                         r"gaps, or give train/val/test masks"),
])
def test_random_splits_of_classes_too_small_to_split_say_a_fix_that_works(labels: list[int], match: str) -> None:
    from diffusion_pde.data import random_sizes, random_split

    y = torch.tensor(labels)
    with pytest.raises(ValueError, match=match):
        random_split(y, 0, **random_sizes(y, builtin=False))


def test_a_weighted_graph_trains_and_predicts_with_its_weights(tmp_path: Path) -> None:
    from diffusion_pde.models import ModelConfig
    from diffusion_pde.training import TrainConfig, load_model, predict, run_experiment

    g = torch.Generator().manual_seed(0)
    n = 24
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    edges = torch.cat([ring, ring.flip(0), torch.randint(0, n, (2, 24), generator=g)], dim=1)
    plain = Data(x=torch.rand(n, 3, generator=g), edge_index=edges, y=torch.arange(n) % 2)
    weighted = plain.clone()
    weighted.edge_weight = torch.rand(edges.shape[1], generator=g) * 3
    torch.save(weighted, tmp_path / "weighted.pt")
    config, train = ModelConfig(model="gcn", hidden=8), TrainConfig(epochs=3, lr=0.05)
    losses = {}
    for name, graph in (("plain", plain), ("weighted", tmp_path / "weighted.pt")):
        payload = run_experiment(graph, config, train, out=tmp_path / name, progress=False, log=lambda line: None)
        losses[name] = [row["loss"] for row in load_checkpoint_history(tmp_path / name)]
        assert payload["weighted"] is (name == "weighted")
    assert losses["plain"] != pytest.approx(losses["weighted"])       # same seed, other operator: the weights count
    run = tmp_path / "weighted" / "split0" / "run0"
    own = predict(load_model(run), weighted).probabilities           # the run's own (weighted) graph, from its file
    assert torch.allclose(own, predict(load_model(run, weighted), weighted).probabilities)
    assert not torch.allclose(own, predict(load_model(run, plain), plain).probabilities)


def load_checkpoint_history(out: Path) -> list[dict[str, float]]:
    from diffusion_pde.training import load_checkpoint

    return load_checkpoint(out / "split0" / "run0" / "last.pt")["history"]
