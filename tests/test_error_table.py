"""Bad inputs, one row each, across the Python API and every CLI subcommand.

Each case gives an input, the exception type (API) or exit code 2 (CLI) it must raise, and a
regex its message must match, naming the argument. Every case also checks that the error comes
before any work (the functions that train, integrate, predict, run checks or delete are replaced
by ones that fail the case), that no file in the working folder changed (none deleted, truncated
or added), and for the CLI that the error is one line on stderr (no traceback) with nothing on
stdout. Datasets are cached in a temporary folder, never in the user's cache.

``docs/errors.md`` is generated from :data:`CASES` and their actual messages by
``tools/write_error_table.py``; the tests below fail when it is out of date.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

import diffusion_pde as dp
import solvers
from diffusion_pde.cli import main
from diffusion_pde.data import Split, load_cora, load_dataset, load_graph, random_split
from diffusion_pde.data.temporal import load_temporal, temporal_split
from diffusion_pde.ldn import ldn_field
from diffusion_pde.models import ModelConfig, build_model, predict_chunked
from diffusion_pde.reaction import ReactionDiffusionField
from diffusion_pde.stable_step import StableEulerLayer
from diffusion_pde.training.distributed import Distribution
from diffusion_pde.training import (
    MARKER,
    TrainConfig,
    load_checkpoint,
    load_model,
    make_split,
    parse_solver,
    resolve,
    run_experiment,
    train_run,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"

# What counts as work: each is replaced, while a case runs, by a mock that fails the case.
WORK = (
    "diffusion_pde.training.experiment.Experiment.run",
    "diffusion_pde.training.experiment.train_run",
    "diffusion_pde.cli.solve.exact_solution",
    "diffusion_pde.cli.solve.run_method",
    "diffusion_pde.cli.predict.predict",
    "diffusion_pde.cli.predict.write_predictions",
    "diffusion_pde.training.experiment.remove_results",
    "diffusion_pde.cli.sweep.remove_results",
    "theory_checks.run_checks",
    "diffusion_pde.training.forecasting.ForecastExperiment.run",
    "diffusion_pde.training.forecasting.forecast_run",
    "shutil.rmtree",
)


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    call: str | tuple[str, ...]  # a Python expression (API) or the arguments of ``diffusion-pde`` (CLI)
    error: type[BaseException] | None  # the exact exception type (API); None: exit code 2 (CLI)
    match: str  # searched in the message; names the argument
    setup: Callable[[Path], None] | None = None  # prepares the working folder

    @property
    def is_cli(self) -> bool:
        return isinstance(self.call, tuple)


def api(id: str, what: str, code: str, error: type[BaseException], match: str,
        setup: Callable[[Path], None] | None = None) -> Case:
    return Case(id, what, code, error, match, setup)


def cli(id: str, what: str, args: str, match: str, setup: Callable[[Path], None] | None = None) -> Case:
    return Case(id, what, tuple(shlex.split(args)), None, match, setup)


# ---- working folders -------------------------------------------------------------------------

def earlier_results(folder: Path) -> None:
    """``out``: a results folder of ours (it has the marker) holding results."""
    (folder / "out").mkdir()
    (folder / "out" / MARKER).write_text("")
    (folder / "out" / "results.json").write_text("{}\n")


def users_folder(folder: Path) -> None:
    """``out``: a folder of the user's (no marker) holding their data."""
    (folder / "out").mkdir()
    (folder / "out" / "data.csv").write_text("a,b\n1,2\n")


def results_here(folder: Path) -> None:
    """The working folder itself holds results of ours (as after ``--out .``)."""
    (folder / MARKER).write_text("")
    (folder / "results.json").write_text("{}\n")


def out_is_a_file(folder: Path) -> None:
    (folder / "out").write_text("not a folder\n")


def a_file(name: str, text: str = "a user's file\n") -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).write_text(text)
    return setup


GRAPH = {  # a 6-node ring, 2 classes, 3 features, one stored split, as the CSV files of a folder `graph`
    "edge_index.csv": "source,target\n" + "".join(f"{i},{(i + 1) % 6}\n{(i + 1) % 6},{i}\n" for i in range(6)),
    "x.csv": "".join(f"{i},{i % 2},{1 - i % 2}\n" for i in range(6)),
    "y.csv": "label\n" + "".join(f"{i % 2}\n" for i in range(6)),
    "train_mask.csv": "1\n1\n0\n0\n0\n0\n",
    "val_mask.csv": "0\n0\n1\n1\n0\n0\n",
    "test_mask.csv": "0\n0\n0\n0\n1\n1\n",
}
NO_MASKS = {"train_mask_csv": None, "val_mask_csv": None, "test_mask_csv": None}


def user_graph(**files: str | None) -> Callable[[Path], None]:
    """The folder ``graph`` holding :data:`GRAPH`, with ``files`` (``name_csv`` = new text, or None
    to leave the file out) changed."""
    def setup(folder: Path) -> None:
        (folder / "graph").mkdir()
        changed = {name.replace("_csv", ".csv"): text for name, text in files.items()}
        for name, text in {**GRAPH, **changed}.items():
            if text is not None:
                (folder / "graph" / name).write_text(text)
    return setup


def saved_graph(folder: Path) -> None:
    """``graph.pt``: :data:`GRAPH` saved with torch.save."""
    user_graph()(folder)
    torch.save(load_graph(folder / "graph"), folder / "graph.pt")
    shutil.rmtree(folder / "graph")


def large_graph(folder: Path) -> None:
    """``big``: 8,000 nodes in a path, one feature each (as .npy files)."""
    (folder / "big").mkdir()
    n = 8000
    np.save(folder / "big" / "edge_index.npy", np.stack([np.arange(n - 1), np.arange(1, n)]))
    np.save(folder / "big" / "x.npy", np.ones((n, 1)))


def temporal_root(folder: Path) -> None:
    """``root/SpatioTemporal``: a 3-node chickenpox.json of 12 weeks and an england_covid.json cut off mid-file."""
    (folder / "root" / "SpatioTemporal").mkdir(parents=True)
    (folder / "root" / "SpatioTemporal" / "chickenpox.json").write_text(
        json.dumps({"edges": [[0, 1], [1, 2]], "FX": [[float(t), 0.0, -1.0] for t in range(12)]}))
    (folder / "root" / "SpatioTemporal" / "england_covid.json").write_text('{"time_periods": 61, "y": [[4, 1')


def empty_raw(folder: Path) -> None:
    """``emptyroot``: the PyG layout for CiteSeer with no raw files in it."""
    (folder / "emptyroot" / "Planetoid" / "CiteSeer" / "raw").mkdir(parents=True)


RUN = "--model gcn --epochs 2 --checkpoint-every 1 --out run --quiet"  # the finished run's settings
LAST, BEST, RESULT = (f"run/split0/run0/{name}" for name in ("last.pt", "best.pt", "result.json"))


@contextlib.contextmanager
def working_folder(folder: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@functools.cache
def _finished_run() -> Path:
    """A finished ``train`` run (once per process), copied into the cases that damage it."""
    folder = Path(tempfile.mkdtemp(prefix="error-table-"))
    with working_folder(folder), contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", *shlex.split(RUN), "--json"]) == 0
    return folder / "run"


@pytest.fixture(scope="module", autouse=True)
def _remove_finished_run():
    yield
    if _finished_run.cache_info().currsize:
        shutil.rmtree(_finished_run().parent)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def finished_run(*damage: tuple[str, Callable[[Path], None]]) -> Callable[[Path], None]:
    """A copy of the finished run, then each (file, harm) of ``damage`` done."""
    def setup(folder: Path) -> None:
        shutil.copytree(_finished_run(), folder / "run")
        for name, harm in damage:
            harm(folder / name)
    return setup


def two_runs(folder: Path) -> None:
    """A copy of the finished run with a second split (split1), as a two-split experiment has."""
    finished_run()(folder)
    shutil.copytree(folder / "run" / "split0", folder / "run" / "split1")


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        for one in setups:
            one(folder)
    return setup


def as_text(path: Path) -> None:
    path.write_text("not a checkpoint\n")


def foreign(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)


def delete(path: Path) -> None:
    path.unlink()


# ---- the cases -------------------------------------------------------------------------------

API_CASES = [
    api("solvers-solve-z0-type", "the state is a list", "solvers.solve(field, [[1.0]], 1.0, n_steps=2)", TypeError, r"^z0 must be a torch\.Tensor"),
    api("solvers-solve-z0-int", "an integer state", "solvers.solve(field, torch.ones(4, 3, dtype=torch.long), 1.0, n_steps=2)",
        TypeError, r"^z0 .*floating.*z0\.float\(\)"),
    api("solvers-solve-z0-nan", "a state with NaN", "solvers.solve(field, z * float('nan'), 1.0, n_steps=2)", ValueError, r"^z0 contains 12 non-finite"),
    api("solvers-solve-z0-half-adaptive", "float16 state for an adaptive method", "solvers.solve(field, z.half(), 1.0, method='dopri5')",
        TypeError, r"z0 .*float16.*"),
    api("solvers-solve-method", "unknown method", "solvers.solve(field, z, 1.0, method='rk5')", ValueError, r"unknown method 'rk5'; valid methods: .*rk4"),
    api("solvers-solve-t1", "end time before the start", "solvers.solve(field, z, -1.0, n_steps=2)", ValueError, r"^t1 must be greater than t0"),
    api("solvers-solve-n-steps-zero", "zero steps", "solvers.solve(field, z, 1.0, n_steps=0)", ValueError, r"^n_steps must be a positive integer"),
    api("solvers-solve-n-steps-float", "a fractional step count", "solvers.solve(field, z, 1.0, n_steps=2.5)", TypeError, r"^n_steps must be a positive integer"),
    api("solvers-solve-dt-and-n-steps", "both dt and n_steps", "solvers.solve(field, z, 1.0, dt=0.1, n_steps=2)", ValueError, r"either dt or n_steps"),
    api("solvers-solve-dt-requires-grad", "a dt that requires grad", "solvers.solve(field, z, 1.0, dt=torch.tensor(0.1, requires_grad=True))",
        TypeError, r"^dt must not require grad"),
    api("solvers-solve-adaptive-n-steps", "n_steps for an adaptive method", "solvers.solve(field, z, 1.0, method='dopri5', n_steps=2)",
        ValueError, r"^dt and n_steps apply to fixed-step methods only"),
    api("solvers-solve-t-eval-order", "output times not increasing", "solvers.solve(field, z, 1.0, n_steps=2, t_eval=[0.5, 0.2])",
        ValueError, r"^t_eval must be strictly increasing"),
    api("solvers-solve-t-eval-range", "an output time past t1", "solvers.solve(field, z, 1.0, n_steps=2, t_eval=[0.5, 2.0])",
        ValueError, r"^t_eval must lie inside \[t0, t1\]"),
    api("solvers-solve-adjoint-fixed", "the adjoint with a fixed-step method", "solvers.solve(field, z, 1.0, method='euler', n_steps=2, adjoint=True)",
        ValueError, r"^adjoint=True needs an adaptive method"),
    api("solvers-solve-rtol", "a zero tolerance", "solvers.solve(field, z, 1.0, method='dopri5', rtol=0)", ValueError, r"^rtol must be > 0"),
    api("solvers-solve-nodes", "a state with 5 rows on a 4-node graph", "solvers.solve(field, torch.rand(5, 3), 1.0, n_steps=2)",
        ValueError, r"^z must have shape .*num_nodes = 4"),
    api("solvers-solve-dtype-mismatch", "a float64 state for a float32 operator", "solvers.solve(field, z.double(), 1.0, n_steps=2)",
        TypeError, r"z is torch\.float64 .* diffusivity\.to\(z\)"),
    api("diffusivity-name", "unknown diffusivity", "dp.diffusivity('heat')", ValueError, r"unknown diffusivity 'heat'; valid names: .*gcn"),
    api("diffusivity-no-graph", "a graph operator without a graph", "dp.diffusivity('gcn')", ValueError, r"needs a graph: pass edge_index="),
    api("edge-index-dtype", "float edge indices", "dp.diffusivity('gcn', edge_index=ei.float(), num_nodes=4)", TypeError,
        r"^edge_index must hold integer node indices.*edge_index\.long\(\)"),
    api("edge-index-range", "a node index past num_nodes", "dp.diffusivity('gcn', edge_index=ei, num_nodes=3)", ValueError,
        r"^edge_index holds node indices outside \[0, num_nodes\)"),
    api("edge-index-shape", "an [E, 2] edge list", "dp.diffusivity('gcn', edge_index=ei.t(), num_nodes=4)", ValueError,
        r"^edge_index must have shape \[2, E\].*\.t\(\)"),
    api("edge-weight-negative", "negative edge weights", "dp.diffusivity('gcn', edge_index=ei, num_nodes=4, edge_weight=-torch.ones(6))",
        ValueError, r"^edge_weight must be finite and non-negative"),
    api("diffusivity-dtype", "an integer dtype", "dp.diffusivity('gcn', edge_index=ei, num_nodes=4, dtype=torch.int64)", TypeError,
        r"^dtype must be a floating"),
    api("diffusivity-channels", "zero input channels", "dp.diffusivity('difformer_s', in_channels=0)", ValueError, r"^in_channels must be a positive int"),
    api("difformer-qk-norm-none", "DIFFormer-s without unit queries and keys", "dp.diffusivity('difformer_s', in_channels=4, qk_norm='none')",
        ValueError, r"qk_norm='none'.*use qk_norm='row'"),
    api("field-source-weight", "a source weight above 1", "dp.DiffusionField(S, source_weight=1.5)", ValueError, r"^source_weight must lie in \[0, 1\]"),
    api("field-diffusivity", "a function instead of a diffusivity", "dp.DiffusionField(lambda t, z: z)", TypeError,
        r"^diffusivity must be a Diffusivity plug-in"),
    api("field-no-initial-state", "a source term without Z⁰", "dp.DiffusionField(S, source_weight=0.5)(torch.tensor(0.0), z)", RuntimeError,
        r"^source_weight > 0 needs Z⁰: call field\.set_initial_state"),
    api("block-method", "unknown method", "dp.DiffusionBlock(field, 'rk5')", ValueError, r"unknown method 'rk5'; valid methods"),
    api("block-field", "a diffusivity instead of a field", "dp.DiffusionBlock(S)", TypeError, r"^field must be a DiffusionField"),
    api("model-config-tau", "an attention step past Euler's stability region", "ModelConfig(tau=2.0)", ValueError, r"^tau=2\.0 > 1 .*tau in \(0, 1\]"),
    api("model-config-continuous", "a continuous GCN", "ModelConfig(model='gcn', depth='continuous')", ValueError,
        r"no continuous-depth form; use depth='discrete'"),
    api("model-config-dropout", "dropout 1", "ModelConfig(dropout=1.0)", ValueError, r"^dropout must lie in \[0, 1\)"),
    api("model-config-gcn-source", "a source term for a GCN (its width changes between layers)",
        "ModelConfig(model='gcn', source_weight=0.3)", ValueError, r"^source_weight=0\.3: model 'gcn' changes the width .*model='appnp'"),
    api("model-config-n-steps", "a continuous model with 0 steps", "ModelConfig(depth='continuous', n_steps=0)", ValueError, r"needs n_steps >= 1"),
    api("train-config-epochs", "zero epochs", "TrainConfig(epochs=0)", ValueError, r"^epochs must be a positive int"),
    api("train-config-lr", "a zero learning rate", "TrainConfig(lr=0)", ValueError, r"^lr must be a finite number > 0"),
    api("train-config-metric", "unknown metric", "TrainConfig(metric='f1')", ValueError, r"^metric must be one of accuracy, roc_auc"),
    api("model-graph-adjoint", "a subgraph passed to forward with the adjoint",
        "build_model(ModelConfig(model='sgc', depth='continuous', method='dopri5', adjoint=True), graph)(graph.x, graph)",
        ValueError, r"^model\(x, graph\) with the adjoint .*with diffusion_pde\.diffusivities\.on_graph\(model, graph\)"),
    api("train-config-batch-size", "an empty mini-batch", "TrainConfig(batch_size=0)", ValueError,
        r"^batch_size must be a positive int \(nodes per mini-batch\) or None"),
    api("experiment-processes-full-batch", "several processes without mini-batches",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), distribution=Distribution(rank=0, world_size=2))",
        ValueError, r"^training in 2 processes needs mini-batches: pass batch_size \(--batch-size B\)"),
    api("resolve-setting", "a misspelt setting", "resolve('cora', 'gcn', learning_rate=0.1)", ValueError, r"unknown settings \['learning_rate'\]"),
    api("build-model-config", "a dict instead of a ModelConfig", "build_model({'model': 'gcn'}, graph)", TypeError, r"^config must be a ModelConfig"),
    api("build-model-features", "1-D features", "build_model(ModelConfig(), Data(x=torch.rand(4), edge_index=ei, y=graph.y))", ValueError,
        r"^data\.x must be a \[num_nodes, num_features\]"),
    api("parse-solver-steps", "an evaluation solver with 0 steps", "parse_solver('euler:0')", ValueError, r"'euler:0'.*n_steps must be an int >= 1"),
    api("parse-solver-unnamed", "a third solver field without a name", "parse_solver('dopri5:1e-5:1e-7')", ValueError,
        r"the third field '1e-7' must be named, e\.g\. dopri5:rtol=\.\.\.:atol=\.\.\."),
    api("parse-solver-key", "a solver field with an unknown name", "parse_solver('dopri5:tol=1e-5')", ValueError,
        r"dopri5 takes rtol and atol, not 'tol'"),
    api("experiment-splits", "zero splits", "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), splits=0)", ValueError,
        r"^splits must be an int >= 1"),
    api("experiment-out", "an out folder holding results", "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), out='out')", ValueError,
        r"^out \(--out\) out already holds results: pass resume=True \(--resume\) .* overwrite=True \(--overwrite\)",
        setup=earlier_results),
    api("experiment-foreign-out", "overwrite a folder diffusion-pde did not create (it holds the user's data.csv)",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), out='out', overwrite=True)", ValueError,
        r"^(?!.*overwrite).*out holds files that diffusion-pde did not write .*choose a new or empty folder", setup=users_folder),
    api("experiment-overwrite-cwd", "overwrite the current folder", "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), "
        "out='.', overwrite=True)", ValueError, r"out \(--out\) \. is the current folder, which overwrite .* never empties",
        setup=results_here),
    api("experiment-label", "a label -1 (an unlabelled node)",
        "run_experiment(Data(x=graph.x, edge_index=ei, y=torch.tensor([0, 1, -1, 1])), ModelConfig(model='gcn'), TrainConfig())",
        ValueError, r"^dataset: y holds the label -1 at node 2: labels must be 0\.\.C-1"),
    api("experiment-features-nan", "a feature that is NaN",
        "run_experiment(Data(x=graph.x / 0 - graph.x / 0, edge_index=ei, y=graph.y), ModelConfig(model='gcn'), TrainConfig())",
        ValueError, r"^dataset: x holds NaN or Inf \(first at node 0\)"),
    api("experiment-empty-val", "a split with no validation node",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), split=Split('mine', 0, torch.tensor([0, 1]), "
        "torch.tensor([], dtype=torch.long), torch.tensor([2, 3])))", ValueError, r"^the mine split 0: val is empty"),
    api("experiment-overlap", "a split whose training and test nodes overlap",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), split=Split('mine', 0, torch.tensor([0, 1]), "
        "torch.tensor([2]), torch.tensor([1, 3])))", ValueError, r"^the mine split 0: train and test share 1 node"),
    api("experiment-user-split-kind", "the public split of a graph that has none",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), split='public')", ValueError,
        r"split 'public' is not available: dataset 'data' offers the splits random"),
    api("experiment-per-class", "more training nodes per class than the classes hold",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), per_class=5)", ValueError,
        r"class 0 has only 2 nodes, too few for 5 training nodes per class"),
    api("experiment-sizes-fixed", "split sizes for a stored split",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), split='public', num_val=100)", ValueError,
        r"^num_val only applies to random splits; the public split is stored with the data"),
    api("experiment-sizes-grand", "a validation size for GRAND's split",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), split='grand', num_val=100)", ValueError,
        r"^num_val only applies to random splits; the grand split does not take it: drop it or use split='random'"),
    api("experiment-grand-small", "GRAND's 1500 development nodes on a graph of 4 nodes",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), split='grand')", ValueError,
        r"^num_development = 1500 development nodes leave no test node: the graph .* has 4 nodes; use num_development"),
    api("make-split-grand-disconnected", "GRAND's split of a graph that is not connected",
        "make_split(load_dataset('cora'), 'grand', 0)", ValueError,
        r"grand split is drawn on a connected graph.*restrict it first with diffusion_pde\.data\.largest_component\(data\)"),
    api("experiment-splits-objects", "a split count with Split objects",
        "run_experiment(graph, ModelConfig(model='gcn'), TrainConfig(), split=Split('mine', 0, torch.tensor([0, 1]), "
        "torch.tensor([2]), torch.tensor([3])), splits=2)", ValueError, r"with Split objects pass every split"),
    api("experiment-eval-solvers", "other solvers for a discrete model",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), eval_solvers=['euler:4'])", ValueError,
        r"^eval_solvers \(--eval-solvers\) needs a continuous-depth model"),
    api("experiment-split-index", "a second split of the single public split",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), split='public', splits=2)", ValueError, r"single split; use split index 0"),
    api("load-dataset-name", "unknown dataset", "load_dataset('coraa')", ValueError, r"unknown dataset 'coraa'; valid datasets: cora"),
    api("load-dataset-root", "a root without the dataset's folder", "load_dataset('pubmed', root='emptyroot')", FileNotFoundError,
        r"no folder emptyroot/Planetoid/PubMed: root must hold", setup=empty_raw),
    api("load-dataset-knn-graph", "a kNN graph for a dataset that has a graph", "load_dataset('cora', knn=5)", ValueError,
        r"^knn applies to the datasets without a graph \(digits, fashion-mnist, 20newsgroups\); dataset 'cora'"),
    api("load-dataset-knn-size", "more neighbours than instances", "load_dataset('digits', num_instances=10, knn=10)",
        ValueError, r"^knn=10 neighbours per node needs more than 10 nodes, but there are 10: use knn 9 or less"),
    api("load-dataset-knn-metric", "a kNN metric without a kNN graph", "load_dataset('digits', knn_metric='cosine')",
        ValueError, r"no graph is built without knn: add knn=K"),
    api("load-dataset-fashion-files", "Fashion-MNIST's IDX files missing under root",
        "load_dataset('fashion-mnist', root='emptyroot')", FileNotFoundError,
        r"--root emptyroot lacks emptyroot/FashionMNIST/raw/train-images-idx3-ubyte\.gz .*nothing is downloaded",
        setup=empty_raw),
    api("load-dataset-newsgroups-files", "20 Newsgroups missing under root", "load_dataset('20newsgroups', root='emptyroot')",
        FileNotFoundError, r"--root emptyroot lacks emptyroot/20newsgroups/20news-bydate_py3\.pkz .*or omit --root to download",
        setup=empty_raw),
    api("knn-graph-nan", "a kNN graph of features with NaN",
        "dp.data.knn_graph(torch.tensor([[0.0, float('nan')], [1.0, 1.0]]), 1)", ValueError, r"x holds NaN or Inf"),
    api("experiment-no-edges", "GCN on instances without a graph",
        "run_experiment('digits', ModelConfig(model='gcn'), TrainConfig())", ValueError,
        r"model gcn propagates over the input graph, but dataset 'digits' has no edges: build a k-nearest-neighbour graph"),
    api("random-split-classes", "too few nodes in a class", "random_split(torch.tensor([0] * 30 + [1] * 5), 0)", ValueError,
        r"class 1 has only 5 nodes, too few for 20 .*per_class"),
    api("random-split-fraction", "a training share per class of 1.5", "random_split(torch.tensor([0, 0, 1, 1]), 0, per_class=1.5)",
        ValueError, r"per_class \(training nodes per class\) must be an int >= 1 or a fraction in \(0, 1\)"),
    api("load-dataset-option", "a generator setting for a dataset read from files", "load_dataset('cora', num_nodes=100)",
        ValueError, r"num_nodes sets the generator of the synthetic dataset; dataset 'cora' is read as it is: drop it"),
    api("load-dataset-synthetic-homophily", "a homophily above 1", "load_dataset('synthetic', homophily=1.5)", ValueError,
        r"homophily must be a number in \[0, 1\], got 1\.5"),
    api("load-dataset-ogb-root", "a root without OGB's folder for ogbn-arxiv", "load_dataset('ogbn-arxiv', root='emptyroot')",
        FileNotFoundError, r"no folder emptyroot/ogbn_arxiv: root must hold OGB's layout", setup=empty_raw),
    api("load-temporal-root", "a root without the temporal dataset's JSON file", "load_temporal('chickenpox', root='emptyroot')",
        FileNotFoundError, r"--root emptyroot lacks emptyroot/SpatioTemporal/chickenpox\.json.*omit --root to download",
        setup=empty_raw),
    api("load-temporal-damaged", "a temporal dataset's JSON file cut off mid-file", "load_temporal('england-covid', root='root')",
        ValueError, r"root/SpatioTemporal/england_covid\.json is not valid JSON .*copy it again", setup=temporal_root),
    api("temporal-split-few", "too few windows for a 20/20/60 split in time", "temporal_split(4)", ValueError,
        r"4 windows are too few to split 0\.2 / 0\.2 / 0\.6 in time"),
    api("load-dataset-pokec-root", "a root without pokec.mat", "load_dataset('pokec', root='emptyroot')", FileNotFoundError,
        r"--root emptyroot holds neither pokec\.mat nor pokec/pokec\.mat", setup=empty_raw),
    api("load-dataset-cora-geom-gcn", "the geom-gcn splits of the embedded Cora (no download)", "load_dataset('cora', geom_gcn=True)",
        FileNotFoundError, r"the embedded Cora holds the public split only.*pass --root"),
    api("load-dataset-empty-raw", "a root whose raw folder is empty (no download)", "load_dataset('citeseer', root='emptyroot')",
        FileNotFoundError, r"--root emptyroot lacks emptyroot/Planetoid/CiteSeer/raw/ind\.citeseer\.x.*nothing is downloaded",
        setup=empty_raw),
    api("load-graph-label", "a user graph with a label -1", "load_graph('graph')", ValueError,
        r"^graph: y holds the label -1 at node 1", setup=user_graph(y_csv="0\n-1\n0\n1\n0\n1\n")),
    api("experiment-partial-masks", "a graph with a train_mask only",
        "run_experiment(Data(x=graph.x, edge_index=ei, y=graph.y, train_mask=torch.tensor([True, True, False, False])), "
        "ModelConfig(model='gcn'), TrainConfig())", ValueError,
        r"it has train_mask but not val_mask, test_mask\): give all three masks .*or use a random split"),
    api("experiment-mixed-masks", "masks of different shapes (train [N, 2], val and test [N])",
        "run_experiment(Data(x=graph.x, edge_index=ei, y=graph.y, train_mask=torch.ones(4, 2, dtype=torch.bool), "
        "val_mask=torch.ones(4, dtype=torch.bool), test_mask=torch.ones(4, dtype=torch.bool)), ModelConfig(model='gcn'), "
        "TrainConfig())", ValueError, r"the masks have different shapes .*give all of them as \[N\] .* or all as \[N, K\]"),
    api("experiment-edge-weight", "a negative edge weight",
        "run_experiment(Data(x=graph.x, edge_index=ei, y=graph.y, edge_weight=-torch.ones(6)), ModelConfig(model='gcn'), "
        "TrainConfig())", ValueError, r"^dataset: edge_weight must be finite and >= 0, but edge 0 has weight -1\.0"),
    api("load-graph-missing-x", "a user graph without features", "load_graph('graph')", FileNotFoundError,
        r"dataset folder graph has no x\.csv or x\.npy", setup=user_graph(x_csv=None)),
    api("load-cora-dtype", "an integer dtype", "load_cora(dtype=torch.int64)", TypeError, r"^dtype must be a floating-point torch dtype"),
    api("load-checkpoint-text", "a text file", "load_checkpoint('last.pt')", ValueError, r"^last\.pt is not a complete checkpoint",
        setup=lambda folder: as_text(folder / "last.pt")),
    api("load-model-missing", "a run that does not exist", "load_model('nowhere')", FileNotFoundError, r"^run nowhere does not exist"),
    api("load-model-truncated", "a run whose best.pt is truncated", "load_model('run')", ValueError,
        rf"^{BEST} is not a complete checkpoint .*train the run again", setup=finished_run((BEST, truncate))),
    api("load-model-two-runs", "a results folder with two runs", "load_model('run')", ValueError,
        r"^run run holds 2 runs \(run/split0/run0, run/split1/run0\); give one of their folders", setup=two_runs),
    api("load-model-features", "a graph with other features than the training graph", "load_model('run', graph)", ValueError,
        r"^data has 3 features per node but the model was trained on 1433", setup=finished_run()),
    api("predict-chunked-model", "chunked inference of a model whose attention scores every pair of nodes",
        "predict_chunked(build_model(ModelConfig(model='difformer_a', hidden=4), graph), graph, 2)", ValueError,
        r"^predict_chunked cannot stream model 'difformer_a': .*predict it in one shot instead"),
    api("predict-chunked-size", "a chunk size of 0", "predict_chunked(build_model(ModelConfig(model='gcn', hidden=4), graph), graph, 0)",
        ValueError, r"^chunk_size must be a positive int \(nodes per chunk\), got 0"),
    api("train-run-nan-features", "training on features with a NaN (Python API)",
        "(lambda g: train_run(build_model(ModelConfig(model='gcn', hidden=4), g), g, Split('random', 0, torch.tensor([0, 1]), "
        "torch.tensor([2]), torch.tensor([3])), TrainConfig(epochs=1), seed=0))(Data(x=torch.tensor([[float('nan')], [1.], "
        "[0.], [1.]]), edge_index=ei, y=torch.tensor([0, 1, 0, 1])))", ValueError,
        r"^data\.x contains 1 non-finite \(NaN or Inf\) features: clean them"),
    api("difformer-s-second-derivatives", "second derivatives through global-norm DIFFormer-s",
        "torch.autograd.grad(dp.diffusivity('difformer_s', in_channels=3, qk_norm='global')(z.requires_grad_()).sum(), z, "
        "create_graph=True)", RuntimeError, r"^difformer_s with qk_norm='global' has first derivatives only"),
    api("grand-split-labels", "GRAND's split of multi-label targets", "dp.data.grand_split(torch.zeros(40, 2, dtype=torch.long), 0)",
        ValueError, r"^the grand split needs one class label per node, y of shape \[N\]"),
    api("position-heads", "a sequence whose channels do not split into the kernel's heads",
        "dp.diffusivity('sequence_window', heads=2)(torch.zeros(5, 3))", ValueError,
        r"^sequence_window: the 3 channels of values must split into heads=2 equal blocks; pass heads dividing"),
    api("position-causal-symmetric", "a causal kernel declared symmetric", "dp.diffusivity('sequence_global', causal=True, symmetric=True)",
        ValueError, r"^a causal kernel .* cannot be symmetric: pass causal=True or symmetric=True, not both"),
    api("position-dirichlet-causal", "the positional Dirichlet energy of a causal kernel",
        "dp.diffusivity('sequence_laplacian', causal=True).dirichlet_energy(z)", ValueError,
        r"^the positional Dirichlet energy .* defined for symmetric kernels.*symmetric=True, causal=False"),
    api("stable-step-no-bound", "a learned stable step for a graph operator (no Gershgorin bound)", "StableEulerLayer(field)",
        TypeError, r"^no Gershgorin bound for the generator of 'gcn': it must be a position kernel"),
    api("ldn-kernel", "an LDN field whose kernel is not a position kernel", "ldn_field(4, kernel='gcn')", ValueError,
        r"^kernel must name a position kernel \(sequence_laplacian, sequence_window, sequence_global\), got 'gcn'"),
    api("reaction-callable", "a reaction that is a function, not a module", "ReactionDiffusionField(S, lambda z: z)", TypeError,
        r"^reaction must be an nn\.Module .* so that its parameters are the field's"),
]

CLI_CASES = [
    cli("cli-no-command", "no subcommand", "", r"COMMAND"),
    cli("cli-unknown-command", "unknown subcommand", "integrate", r"argument COMMAND: invalid choice: 'integrate'"),
    cli("solve-dt-zero", "a zero step", "solve --dt 0", r"^diffusion-pde solve: error: --dt: dt must be > 0"),
    cli("solve-n-steps-zero", "zero steps", "solve --n-steps 0", r"--n-steps: n_steps must be a positive integer"),
    cli("solve-n-steps-text", "a step count that is no number", "solve --n-steps two", r"argument --n-steps: invalid int value: 'two'"),
    cli("solve-method", "unknown method", "solve --method rk5", r"unknown --method rk5; valid: .*rk4"),
    cli("solve-diffusivity", "unknown diffusivity", "solve --diffusivity heat", r"unknown diffusivity 'heat'; valid names: .*gcn"),
    cli("solve-source-weight", "a source weight above 1", "solve --source-weight 1.5", r"source_weight must lie in .*\(set by --source-weight\)"),
    cli("solve-t1", "a negative end time", "solve --t1 -1", r"--t1 must be a positive finite time"),
    cli("solve-n-save-one", "one saved time", "solve --n-save 1", r"--n-save must be at least 2"),
    cli("solve-n-save-few-steps", "more saved times than steps", "solve --n-save 100 --method euler --n-steps 2 --no-reference",
        r"--n-save 100 asks for more saved times than the 2 fixed steps"),
    cli("solve-n-save-steps", "far more saved times than steps (once killed by the OOM killer at 24 GB)",
        "solve --n-save 100000 --method euler --n-steps 2 --no-reference",
        r"--n-save 100000 is more saved times than the 10,000 the report can hold"),
    cli("solve-n-save-memory", "saved states that would not fit in memory", "solve --n-save 1000 --method dopri5 --raw-features --no-reference",
        r"--n-save 1000 would keep 1000 states of 2708 x 1433 float64 .*lower --n-save to at most"),
    cli("solve-rtol", "a zero tolerance", "solve --method dopri5 --rtol 0", r"--rtol must be a finite tolerance > 0"),
    cli("solve-key-channels", "zero query/key channels", "solve --diffusivity difformer_s --key-channels 0",
        r"key_channels must be a positive int.*\(set by --key-channels\)"),
    cli("solve-plot-folder", "a plot in a missing folder", "solve --plot nodir/energy.png", r"--plot nodir/energy\.png: there is no folder nodir"),
    cli("solve-plot-format", "a plot with no image suffix", "solve --plot energy.txt", r"--plot energy\.txt: the suffix must name an image format"),
    cli("solve-device", "an unknown device", "solve --device gpu", r"--device 'gpu' is not a device here; use cpu, cuda"),
    cli("solve-dtype", "an unsupported dtype", "solve --dtype float16", r"argument --dtype: invalid choice: 'float16'"),
    cli("train-epochs", "zero epochs", "train --epochs 0", r"epochs must be a positive int, got 0 \(set by --epochs\)"),
    cli("train-batch-size", "an empty mini-batch", "train --batch-size 0",
        r"batch_size must be a positive int \(nodes per mini-batch\) or None \(full batch\), got 0 \(set by --batch-size\)"),
    cli("train-layers", "zero layers", "train --layers 0", r"num_layers must be >= 1 .*--layers"),
    cli("train-tau", "an attention step past Euler's stability region", "train --tau 2", r"tau=2\.0 > 1 .*\(set by --tau\)"),
    cli("train-continuous-gcn", "a continuous GCN", "train --model gcn --depth continuous", r"no continuous-depth form.*--depth"),
    cli("train-dataset", "unknown dataset", "train --dataset coraa",
        r"dataset \(--dataset\) 'coraa' is neither a built-in dataset \(cora, .*\) nor an existing file or folder"),
    cli("train-user-label", "a user graph with a label -1", "train --dataset graph", r"^diffusion-pde train: error: graph: y holds the label -1",
        setup=user_graph(y_csv="0\n1\n-1\n1\n0\n1\n")),
    cli("train-user-empty-val", "a user graph whose validation mask is empty", "train --dataset graph", r"the fixed split 0: val is empty",
        setup=user_graph(val_mask_csv="0\n0\n0\n0\n0\n0\n")),
    cli("train-user-split-kind", "the public split of a user graph", "train --dataset graph --split public",
        r"split 'public' is not available: dataset 'graph' offers the splits fixed, random, grand \(set by --split\)", setup=user_graph()),
    cli("train-user-per-class", "more training nodes per class than a user graph's classes hold", "train --dataset graph --train-per-class 5",
        r"class 0 has only 3 nodes, too few for 5 training nodes per class.*--train-per-class", setup=user_graph(**NO_MASKS)),
    cli("train-user-root", "--root with a user graph", "train --dataset graph.pt --root emptyroot",
        r"root \(--root\) is for the built-in datasets.*drop --root", setup=both(saved_graph, empty_raw)),
    cli("train-user-truncated", "a truncated saved graph", "train --dataset graph.pt", r"dataset file graph\.pt could not be read by torch\.load",
        setup=both(saved_graph, lambda folder: truncate(folder / "graph.pt"))),
    cli("train-sizes-fixed", "a split size with a stored split", "train --split public --val-size 100",
        r"num_val only applies to random splits; the public split is stored .*\(set by --split, --val-size\)"),
    cli("train-development-size-random", "a development size with a random split", "train --development-size 1000",
        r"num_development only applies to grand splits; the random split does not take it: drop it or use split='grand' "
        r"\(set by --split, --development-size\)"),
    cli("train-grand-development-size", "more development nodes than Cora's largest connected component has",
        "train --split grand --development-size 3000",
        r"num_development = 3000 development nodes leave no test node: the graph \(its largest connected component\) has "
        r"2485 nodes; use num_development \(--development-size\) 2484 or less"),
    cli("train-grand-per-class-fraction", "a training share per class with GRAND's split",
        "train --split grand --train-per-class 0.5",
        r"per_class \(training nodes per class\) of the grand split must be a count.*\(set by --train-per-class\)"),
    cli("train-val-size", "a validation share above 1", "train --val-size 1.5",
        r"num_val must be a count \(int >= 1\) or a fraction in \(0, 1\), got 1\.5 \(set by --val-size\)"),
    cli("train-val-size-text", "a validation size that is no number", "train --val-size half",
        r"argument --val-size: invalid count_or_fraction value: 'half'"),
    cli("train-geom-gcn-embedded", "the geom-gcn splits of the embedded Cora (no download)", "train --split geom-gcn",
        r"the embedded Cora holds the public split only.*--root DIR"),
    cli("train-root-empty-raw", "a root whose raw folder is empty (no download)", "train --dataset citeseer --root emptyroot",
        r"--root emptyroot lacks .*ind\.citeseer.*nothing is downloaded when --root is given", setup=empty_raw),
    cli("train-gcn-source-weight", "a source term for a GCN", "train --model gcn --source-weight 0.3",
        r"source_weight=0\.3: model 'gcn' changes the width between its layers.*model='appnp'"),
    cli("train-unused-flag", "a flag the model does not use", "train --model gcn --heads 3",
        r"--heads: model gcn does not use --heads, so it would be ignored; drop --heads"),
    cli("train-unused-switch", "a switch the model does not use", "train --model sgc --no-layer-norm",
        r"--no-layer-norm: model sgc does not use --layer-norm"),
    cli("train-layers-continuous", "--layers with a continuous model", "train --depth continuous --layers 4",
        r"--layers: --layers sets the discrete layers, but this difformer_s model has --depth continuous"),
    cli("train-user-pandas-header", "a user graph whose x.csv starts with pandas' header 0,1,2", "train --dataset graph",
        r"x\.csv: its first line '0,1,2' looks like the column header pandas writes .*header=False",
        setup=user_graph(x_csv="0,1,2\n" + GRAPH["x.csv"])),
    cli("train-user-three-columns", "a user graph with source,target,weight lines in edge_index.csv", "train --dataset graph",
        r"edge_index\.csv has 3 column\(s\) per line, but must have two .*edge_weight\.csv",
        setup=user_graph(edge_index_csv="".join(f"{i},{(i + 1) % 6},0.5\n" for i in range(6)))),
    cli("train-user-edge-weight", "a user graph with a negative edge weight", "train --dataset graph",
        r"edge_weight must be finite and >= 0, but edge 2 has weight -1\.0",
        setup=user_graph(edge_weight_csv="1\n1\n-1\n" + "1\n" * 9)),
    cli("train-user-one-node-class", "a user graph with a class of one node", "train --dataset graph",
        r"class 2 has only 1 node, too few for a random split.*give train/val/test masks",
        setup=user_graph(y_csv="0\n1\n0\n1\n0\n2\n", **NO_MASKS)),
    cli("train-user-label-gap", "a user graph labelled 0 and 2 (no 1)", "train --dataset graph",
        r"no node has the label 1, but the labels run up to 2: relabel the classes to 0\.\.C-1 without gaps",
        setup=user_graph(y_csv="0\n2\n0\n2\n0\n2\n", **NO_MASKS)),
    cli("train-solver-flag-discrete", "a solver flag for a discrete model", "train --method dopri5",
        r"--method sets the integrator of a continuous-depth model, but this difformer_s model is discrete"),
    cli("train-n-steps-adaptive", "--n-steps with an adaptive method", "train --depth continuous --method dopri5 --n-steps 4",
        r"--n-steps counts the steps of a fixed-step method, but --method dopri5 is adaptive"),
    cli("train-rtol-fixed", "--rtol with a fixed-step method", "train --depth continuous --rtol 1e-3",
        r"--rtol applies to adaptive methods, but --method rk4 takes fixed steps"),
    cli("train-split-kind", "a split the dataset does not offer", "train --split fixed", r"split 'fixed' is not available.*\(set by --split\)"),
    cli("train-split-index", "a second split of the single public split, with --overwrite",
        "train --model gcn --split public --splits 2 --out out --overwrite", r"single split.*--splits 1", setup=earlier_results),
    cli("train-splits", "zero splits", "train --splits 0", r"^diffusion-pde train: error: splits must be an int >= 1, got 0 \(set by --splits\)"),
    cli("train-metric", "ROC-AUC on a seven-class graph, with --overwrite", "train --model gcn --metric roc_auc --out out --overwrite",
        r"metric='roc_auc' needs a two-class task.*--metric accuracy", setup=earlier_results),
    cli("train-eval-solvers-discrete", "other solvers for a discrete model", "train --eval-solvers euler:4",
        r"--eval-solvers\) needs a continuous-depth model"),
    cli("train-eval-solvers-spec", "an evaluation solver with 0 steps", "train --depth continuous --eval-solvers euler:0",
        r"--eval-solvers\): bad solver spec 'euler:0'"),
    cli("train-eval-solvers-steps", "an evaluation solver whose step count is not a number",
        "train --depth continuous --eval-solvers euler:x", r"--eval-solvers\): bad solver spec 'euler:x'"),
    cli("train-eval-solvers-unnamed", "an evaluation solver whose third field has no name",
        "train --depth continuous --eval-solvers dopri5:1e-5:1e-7", r"--eval-solvers\): bad solver spec 'dopri5:1e-5:1e-7': the third field"),
    cli("train-num-nodes", "--num-nodes for a dataset that is not generated", "train --num-nodes 1000",
        r"--num-nodes sets the size of the generated graph of --dataset synthetic, but dataset 'cora' has its own size"),
    cli("train-num-nodes-small", "a synthetic graph too small for its classes", "train --dataset synthetic --num-nodes 5",
        r"num_nodes must be an int >= 20, got 5 \(set by --num-nodes\)"),
    cli("train-no-graph", "GCN on a dataset without a graph", "train --dataset digits --model gcn",
        r"dataset 'digits' has no edges: build a k-nearest-neighbour graph with --knn K"),
    cli("train-no-graph-term", "DIFFormer's graph term on a dataset without a graph", "train --dataset digits --graph",
        r"adds the input graph's term \(use_graph\), but dataset 'digits' has no edges: .*or drop the graph term with --no-graph"),
    cli("train-knn-with-graph", "--knn for a dataset that has a graph", "train --knn 5",
        r"knn applies to the datasets without a graph .*dataset 'cora' is read as it is: drop it \(set by --knn\)"),
    cli("train-fashion-no-root", "Fashion-MNIST without --root", "train --dataset fashion-mnist",
        r"dataset 'fashion-mnist' is read from --root DIR holding FashionMNIST/raw/.*never downloaded"),
    cli("train-digits-root", "--root for the digits that ship with scikit-learn", "train --dataset digits --root emptyroot",
        r"dataset 'digits' ships with scikit-learn: drop --root", setup=empty_raw),
    cli("train-num-instances", "more instances than the dataset has", "train --dataset digits --num-instances 5000",
        r"num_instances must be an int in \[1, 1797\] .*\(set by --num-instances\)"),
    cli("train-synthetic-root", "--root with the generated dataset", "train --dataset synthetic --root emptyroot",
        r"dataset 'synthetic' is generated: drop --root", setup=empty_raw),
    cli("train-multilabel", "training on the multi-label ogbn-proteins", "train --dataset ogbn-proteins",
        r"dataset 'ogbn-proteins' is multi-label .* training here is single-label classification"),
    cli("train-temporal-root", "a root without the temporal dataset's JSON file", "train --dataset pedalme --root emptyroot",
        r"--root emptyroot lacks emptyroot/SpatioTemporal/pedalme_london\.json; nothing is downloaded", setup=empty_raw),
    cli("train-temporal-lags", "more lags than the series has steps", "train --dataset chickenpox --root root --lags 12",
        r"lags=12 leaves no window to forecast: .*12 time steps; choose lags <= 11 \(set by --lags\)", setup=temporal_root),
    cli("train-temporal-split", "a node-classification split for forecasting", "train --dataset chickenpox --split random",
        r"--split: forecasting on chickenpox splits the windows in time .*drop it"),
    cli("train-lags-classification", "--lags on a node-classification dataset", "train --dataset cora --lags 4",
        r"--lags sets the inputs of forecasting on the temporal datasets .*drop --lags"),
    cli("train-sequence-model-on-graph", "a sequence model on a graph dataset", "train --dataset cora --model lstm",
        r"--model lstm classifies sequences, of the sequence datasets .*choose one of them, or a node model for it"),
    cli("train-sequence-node-model", "a node model on a sequence dataset", "train --dataset mnist1d --model gcn",
        r"--model gcn is a node model; sequence classification has ldn, transformer, lstm, cnn"),
    cli("train-sequence-node-flag", "a node-classification flag for sequences", "train --dataset mnist1d --model ldn --knn 5",
        r"--knn: sequence classification does not use it .*drop it"),
    cli("train-sequence-causal-attention", "a causal LDN with attention", "train --dataset mnist1d --model ldn --causal",
        r"causal=True with attention: DIFFormer-s attends to every token.*--no-attention"),
    cli("train-sequence-ldn-flag", "an LDN flag with another sequence model", "train --dataset mnist1d --model cnn --window 3",
        r"--window set\(s\) the LDN layers; --model cnn has none: drop them"),
    cli("train-sequence-flag-on-nodes", "a sequence-classification flag on a node dataset",
        "train --dataset cora --model gcn --kernel sequence_laplacian --window 3",
        r"--kernel, --window: only sequence classification .* reads them; dataset 'cora' with --model gcn does not: drop them"),
    cli("train-attention-dropout-ldn", "--attention-dropout with a model other than the transformer",
        "train --dataset mnist1d --model ldn --attention-dropout 0",
        r"--attention-dropout is the transformer's dropout on its attention weights; --model ldn has none: drop it"),
    cli("sweep-temporal", "a forecasting dataset for the sweep", "sweep --dataset chickenpox",
        r"dataset 'chickenpox' is for forecasting, which the sweep .* does not run: train it with diffusion-pde train --dataset chickenpox"),
    cli("sweep-sequences", "a sequence dataset for the sweep", "sweep --dataset mnist1d",
        r"dataset 'mnist1d' is for sequence classification, which the sweep .* does not run"),
    cli("train-listops-lengths", "a ListOps length range that is empty", "train --dataset listops --model ldn --min-length 50 --max-length 10",
        r"min_length \(50\) must be <= max_length \(10\)"),
    cli("train-ogb-root", "a root without OGB's folder for ogbn-products", "train --dataset ogbn-products --root emptyroot",
        r"no folder emptyroot/ogbn_products: root must hold OGB's layout .*omit --root to download", setup=empty_raw),
    cli("train-pokec", "pokec without --root (never downloaded)", "train --dataset pokec",
        r"dataset 'pokec' is not downloaded automatically .*pass --root DIR holding it"),
    cli("train-root", "a root that does not exist", "train --dataset citeseer --root nowhere",
        r"root \(--root\) nowhere is not a folder; give the folder holding the PyG raw files"),
    cli("train-device", "a device that is neither CPU nor CUDA", "train --device mps", r"--device 'mps' is not a device here"),
    cli("train-out-exists", "an --out that holds results", "train --out out", r"--out\) out already holds results: pass resume=True \(--resume\)",
        setup=earlier_results),
    cli("train-out-file", "an --out that is a file", "train --out out", r"out \(--out\) out is a file", setup=out_is_a_file),
    cli("train-out-foreign", "an --out of the user's (holding their data.csv)", "train --out out",
        r"^(?!.*overwrite).*out \(--out\) out holds files that diffusion-pde did not write", setup=users_folder),
    cli("train-overwrite-foreign", "--overwrite on a folder diffusion-pde did not create", "train --model mlp --epochs 2 --out out --overwrite",
        r"^(?!.*overwrite\)).*out holds files that diffusion-pde did not write .*nothing there is touched", setup=users_folder),
    cli("train-resume-foreign", "--resume on a folder diffusion-pde did not create", "train --out out --resume",
        r"out holds files that diffusion-pde did not write", setup=users_folder),
    cli("train-overwrite-cwd", "--overwrite on the current folder", "train --model mlp --epochs 2 --out . --overwrite",
        r"out \(--out\) \. is the current folder, which overwrite \(--overwrite\) never empties", setup=results_here),
    cli("train-overwrite-parent", "--overwrite on the folder above the current one", "train --out .. --overwrite",
        r"out \(--out\) \.\. holds the current folder, which overwrite \(--overwrite\) never empties"),
    cli("train-out-below-file", "an --out below a file", "train --out notes.txt/run",
        r"out \(--out\) notes\.txt/run: .*notes\.txt is a file, so no folder can be made below it", setup=a_file("notes.txt")),
    cli("train-resume-and-overwrite", "both --resume and --overwrite", "train --out out --resume --overwrite",
        r"--resume.*--overwrite.*not both", setup=earlier_results),
    cli("train-resume-last-truncated", "--resume, a finished run whose last.pt is truncated", f"train {RUN} --resume",
        rf"{LAST} is not a complete checkpoint .*delete it .*--overwrite", setup=finished_run((LAST, truncate))),
    cli("train-resume-last-text", "--resume, a finished run whose last.pt holds text", f"train {RUN} --resume",
        rf"{LAST} is not a complete checkpoint .*delete it", setup=finished_run((LAST, as_text))),
    cli("train-resume-last-foreign", "--resume, a last.pt that is some other torch file", f"train {RUN} --resume",
        rf"{LAST} is not a complete checkpoint \(it lacks epoch, model", setup=finished_run((LAST, foreign))),
    cli("train-resume-unfinished", "--resume, an unfinished run (no result.json) whose last.pt is truncated", f"train {RUN} --resume",
        rf"{LAST} is not a complete checkpoint", setup=finished_run((RESULT, delete), (LAST, truncate))),
    cli("train-resume-best-truncated", "--resume, a finished run whose best.pt is truncated", f"train {RUN} --resume",
        rf"{BEST} is not a complete checkpoint .*delete it and --resume rebuilds it", setup=finished_run((BEST, truncate))),
    cli("train-resume-other-lr", "--resume with another learning rate", f"train {RUN} --resume --lr 0.5",
        rf"{LAST} was written with other settings or data \(lr 0\.01 then, 0\.5 now\)", setup=finished_run()),
    cli("train-resume-fewer-epochs", "--resume with an epoch budget below the epochs already run",
        f"train {RUN} --resume --epochs 1",
        rf"{LAST} has already run 2 epochs, more than epochs=1 \(--epochs\): resume with epochs >= 2, or start over", setup=finished_run()),
    cli("train-resume-result-json", "--resume, a finished run whose result.json is truncated", f"train {RUN} --resume",
        rf"{RESULT} is not valid JSON \(it is truncated or damaged\); delete it and --resume rebuilds it", setup=finished_run((RESULT, truncate))),
    cli("train-resume-other-settings", "--resume with another learning rate", f"train {RUN} --resume --lr 0.5",
        rf"{LAST} was written with other settings", setup=finished_run()),
    cli("predict-no-out", "no --out", "predict run", r"the following arguments are required: --out"),
    cli("predict-missing-run", "a run that does not exist", "predict nowhere --out p.csv", r"run nowhere does not exist"),
    cli("predict-truncated", "a run whose best.pt is truncated", "predict run --out p.csv",
        rf"{BEST} is not a complete checkpoint .*train the run again", setup=finished_run((BEST, truncate))),
    cli("predict-last-foreign", "a checkpoint file of some other program", "predict run/split0/run0/last.pt --out p.csv",
        rf"{LAST} is not a complete checkpoint \(it lacks", setup=finished_run((LAST, foreign))),
    cli("predict-two-runs", "a results folder with two runs", "predict run --out p.csv", r"run run holds 2 runs", setup=two_runs),
    cli("predict-features", "a graph with other features than the training graph", "predict run --dataset graph --out p.csv",
        r"data has 3 features per node but the model was trained on 1433", setup=both(finished_run(), user_graph())),
    cli("predict-out-exists", "an --out that exists", "predict run --out p.csv", r"--out p\.csv exists; pass --overwrite",
        setup=both(finished_run(), a_file("p.csv"))),
    cli("predict-overwrite-foreign", "--overwrite on a file diffusion-pde did not write", "predict run --out data.csv --overwrite",
        r"--out data\.csv exists and was not written by diffusion-pde .* not replaced even with --overwrite",
        setup=both(finished_run(), a_file("data.csv", "a,b\n1,2\n"))),
    cli("predict-overwrite-lookalike", "--overwrite on a file whose header only starts like a predictions file",
        "predict run --out p.csv --overwrite", r"--out p\.csv exists and was not written by diffusion-pde \(its first line is not "
        r"that of a diffusion-pde predictions file", setup=both(finished_run(), a_file("p.csv", "node,predicted_by_expert\n0,1\n"))),
    cli("predict-out-folder", "an --out in a missing folder", "predict run --out nodir/p.csv", r"--out nodir/p\.csv: there is no folder nodir",
        setup=finished_run()),
    cli("predict-root-alone", "--root without --dataset", "predict run --root emptyroot --out p.csv", r"--root goes with --dataset NAME",
        setup=both(finished_run(), empty_raw)),
    cli("predict-dataset", "unknown dataset", "predict run --dataset coraa --out p.csv",
        r"'coraa' is neither a built-in dataset .* nor an existing file or folder", setup=finished_run()),
    cli("predict-device", "a device that is neither CPU nor CUDA", "predict run --out p.csv --device mps",
        r"--device 'mps' is not a device here", setup=finished_run()),
    cli("predict-chunk-size", "a chunk size of 0", "predict run --out p.csv --chunk-size 0",
        r"--chunk-size 0: give a positive number of nodes per chunk", setup=finished_run()),
    cli("solve-dataset", "a graph that does not exist", "solve --dataset nowhere", r"--dataset 'nowhere' is neither cora \(embedded\) nor an existing"),
    cli("solve-user-raw-features", "--raw-features with a user graph", "solve --dataset graph --raw-features",
        r"--raw-features keeps the embedded cora's 0/1 features.*drop --raw-features", setup=user_graph()),
    cli("solve-fixed-steps", "a fixed-step grid of a million steps", "solve --n-steps 1000000",
        r"--n-steps 1000000 asks for 1,000,000 fixed steps; the most is 100,000"),
    cli("solve-dt-steps", "a step size giving ten million steps", "solve --dt 1e-7 --method rk4",
        r"--dt 1e-07 asks for 20,000,000 fixed steps"),
    cli("solve-n-save-count", "more saved times than the report holds", "solve --method dopri5 --n-save 20000 --no-reference",
        r"--n-save 20000 is more saved times than the 10,000"),
    cli("solve-reference-memory", "the dense expm reference on an 8,000-node graph", "solve --dataset big --method euler",
        r"exact reference \(scipy expm of the dense 8000 x 8000 matrix\) would take about 2\.4 GiB.*--no-reference", setup=large_graph),
    cli("solve-plot-exists", "a --plot file that exists", "solve --plot energy.png", r"--plot energy\.png exists; pass --overwrite",
        setup=a_file("energy.png")),
    cli("sweep-taus", "an attention step past Euler's stability region", "sweep --taus 2", r"tau=2\.0 > 1 .*\(set by --taus\)"),
    cli("sweep-depths", "zero layers", "sweep --depths 0", r"num_layers must be >= 1 .*--depths"),
    cli("sweep-continuous", "a continuous-depth sweep (depth and tau do not apply)", "sweep --depth continuous",
        r"^diffusion-pde sweep: error: --depth continuous: the sweep varies the number of layers"),
    cli("sweep-source-weights", "a source weight of 1", "sweep --source-weights 1", r"source_weight must lie in \[0, 1\).*--source-weights"),
    cli("sweep-gcn-source-weights", "source terms for a GCN", "sweep --model gcn --source-weights 0 0.1",
        r"source_weight=0\.1: model 'gcn' changes the width .*\(set by --model, --source-weights\)"),
    cli("sweep-layers", "--layers, which the sweep sets from --depths", "sweep --layers 4",
        r"--layers: the sweep sets num_layers from --depths; drop --layers"),
    cli("sweep-splits", "zero splits", "sweep --splits 0", r"splits must be an int >= 1, got 0 \(set by --splits\)"),
    cli("sweep-out-exists", "an --out that holds results", "sweep --out out", r"--out\) out already holds results", setup=earlier_results),
    cli("sweep-overwrite-bad-tau", "--overwrite with a zero step", "sweep --out out --overwrite --taus 0", r"tau must be a finite step size > 0.*--taus",
        setup=earlier_results),
    cli("sweep-overwrite-foreign", "--overwrite on a folder diffusion-pde did not create", "sweep --out out --overwrite",
        r"^(?!.*overwrite\)).*out holds files that diffusion-pde did not write", setup=users_folder),
    cli("sweep-dataset", "unknown dataset", "sweep --dataset nowhere", r"'nowhere' is neither a built-in dataset"),
    cli("sweep-solver-flag-discrete", "a solver flag for a discrete model", "sweep --t1 2", r"--t1 sets the integrator of a continuous-depth model"),
    cli("check-select", "a selection that matches no check", "check --select no-such-check", r"--select 'no-such-check' matches no check"),
    cli("check-unknown-flag", "an unknown flag", "check --fast", r"unrecognized arguments: --fast"),
]

CASES = API_CASES + CLI_CASES


# ---- running a case --------------------------------------------------------------------------

def namespace() -> dict[str, Any]:
    """What the API cases' expressions see (described at the top of docs/errors.md)."""
    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    S = dp.diffusivity("gcn", edge_index=ei, num_nodes=4)
    return {
        "torch": torch, "solvers": solvers, "dp": dp, "Data": Data, "ei": ei, "S": S, "field": dp.DiffusionField(S),
        "z": torch.rand(4, 3), "graph": Data(x=torch.rand(4, 3), edge_index=ei, y=torch.tensor([0, 1, 0, 1])),
        "ModelConfig": ModelConfig, "TrainConfig": TrainConfig, "build_model": build_model, "resolve": resolve,
        "parse_solver": parse_solver, "run_experiment": run_experiment, "load_dataset": load_dataset,
        "random_split": random_split, "load_cora": load_cora, "load_checkpoint": load_checkpoint, "Split": Split,
        "load_graph": load_graph, "load_model": load_model, "predict_chunked": predict_chunked,
        "load_temporal": load_temporal, "temporal_split": temporal_split,
        "Distribution": Distribution, "make_split": make_split, "train_run": train_run,
        "StableEulerLayer": StableEulerLayer, "ldn_field": ldn_field, "ReactionDiffusionField": ReactionDiffusionField,
    }


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _api_outcome(case: Case) -> tuple[str, str]:
    try:
        eval(case.call, namespace())
    except Exception as err:
        assert type(err) is case.error, f"{case.id}: raised {type(err).__name__}: {err} (expected {case.error.__name__})"
        return type(err).__name__, str(err)
    raise AssertionError(f"{case.id}: no error")


def _cli_outcome(case: Case) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(list(case.call))
    assert exit_info.value.code == 2, f"{case.id}: exit code {exit_info.value.code}, stderr {err.getvalue()!r}"
    assert out.getvalue() == "", f"{case.id}: printed {out.getvalue()!r} before the error"
    text = err.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, f"{case.id}: stderr is not one line: {text!r}"
    return "exit code 2", text.rstrip("\n")


def run_case(case: Case, folder: Path) -> tuple[str, str]:
    """Run ``case`` with ``folder`` as working folder; return (what it raised, the message) after
    checking the type or exit code, the message, that no work started and no file changed."""
    if case.setup is not None:
        case.setup(folder)
    before = snapshot(folder)
    with contextlib.ExitStack() as stack:
        cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="error-table-cache-"))
        stack.enter_context(mock.patch.dict(os.environ, {"DIFFUSION_PDE_CACHE": cache}))
        stack.enter_context(working_folder(folder))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        for target in WORK:
            stack.enter_context(mock.patch(target, side_effect=AssertionError(f"{target} ran: work started before the error")))
        raised, message = _cli_outcome(case) if case.is_cli else _api_outcome(case)
    assert re.search(case.match, message), f"{case.id}: {message!r} does not match {case.match!r}"
    assert snapshot(folder) == before, f"{case.id}: files in the working folder changed"
    return raised, message


# ---- the document ----------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_row(case: Case, raised: str, message: str) -> str:
    given = f"diffusion-pde {shlex.join(case.call)}".rstrip() if case.is_cli else case.call
    return (f"| `{_cell(given)}` | {_cell(case.what)} | {raised} | {_cell(message)} | "
            f"`tests/test_error_table.py::test_bad_input[{case.id}]` |")


HEADER = """# Errors for bad input

Every row is a bad input, the error it raises and the test that checks it. Each error names the
argument and the fix, comes before any work starts (the test replaces the functions that train,
integrate, predict, run checks or delete files by ones that fail it) and leaves every file as it
was: none is deleted, truncated or added (the test compares the working folder's files before and
after). A command-line error is one line on
stderr, `diffusion-pde COMMAND: error: ...`, with exit code 2 and no traceback; errors raised once
the work has started are failures of the work and keep their traceback, except a training run
stopped by a NaN or Inf (`diffusion_pde.training.NonFiniteError`, naming the split, run, epoch and
where the value first appeared; also one line and exit code 2).

Generated from the cases in `tests/test_error_table.py` by `python tools/write_error_table.py`
(the tests fail when this page is out of date).
"""

API_INTRO = """
## Python API

In the inputs: `ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])` (the path 0-1-2-3),
`S = dp.diffusivity("gcn", edge_index=ei, num_nodes=4)`, `field = dp.DiffusionField(S)`,
`z = torch.rand(4, 3)` and `graph = Data(x=torch.rand(4, 3), edge_index=ei, y=torch.tensor([0, 1, 0, 1]))`,
with `import torch, solvers, diffusion_pde as dp`; paths are relative to the working folder. `out`
is a results folder of ours (it holds the `.diffusion-pde-run` marker) or, where said, a folder
of the user's; `graph` (as a path) is a folder with a 6-node user graph in CSV files; `run` is a
finished `train` run (see below). `Distribution` is
`diffusion_pde.training.distributed.Distribution` (what torchrun makes of a process: its rank and
the world size).
"""

CLI_INTRO = """
## Command line

The finished run used by the `--resume` and `predict` rows was made with `diffusion-pde train
{run}`; paths are relative to the working folder, as in the Python rows.
""".format(run=RUN)

TABLE = "| input | what is wrong | raises | message | test |\n|---|---|---|---|---|\n"


def render_doc(rows: dict[str, str]) -> str:
    """The page, from each case's rendered row (by case id)."""
    def table(cases: list[Case]) -> str:
        return TABLE + "".join(rows[case.id] + "\n" for case in cases)
    return f"{HEADER}{API_INTRO}\n{table(API_CASES)}{CLI_INTRO}\n{table(CLI_CASES)}"


def doc_rows(text: str) -> dict[str, str]:
    """The rows of the page, by the case id their test cell names."""
    return {m.group(1): line for line in text.splitlines()
            if (m := re.search(r"test_bad_input\[([^\]]+)\]` \|$", line))}


# ---- tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    row = render_row(case, *run_case(case, tmp_path))
    assert doc_rows(DOC.read_text()).get(case.id) == row, \
        f"docs/errors.md is out of date for {case.id}: run python tools/write_error_table.py"


def test_the_doc_holds_exactly_the_cases() -> None:
    text = DOC.read_text()
    rows = doc_rows(text)
    assert list(rows) == [case.id for case in CASES], "docs/errors.md is out of date: run python tools/write_error_table.py"
    assert render_doc(rows) == text, "docs/errors.md is out of date: run python tools/write_error_table.py"


def test_case_ids_are_unique_and_every_command_is_covered() -> None:
    assert len({case.id for case in CASES}) == len(CASES)
    assert {"solve", "train", "predict", "sweep", "check"} <= {case.call[0] for case in CLI_CASES if case.call}
    assert len(CASES) >= 60
