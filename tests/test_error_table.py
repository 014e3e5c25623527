"""Bad inputs, one row each, across the Python API and every CLI subcommand.

Each case gives an input, the exception type (API) or exit code 2 (CLI) it must raise, and a
regex its message must match, naming the argument. Every case also checks that the error comes
before any work (the functions that train, integrate, run checks or delete are replaced by ones
that fail the case), that no file in the working folder changed, and for the CLI that the error
is one line on stderr (no traceback) with nothing on stdout.

``docs/errors.md`` is generated from :data:`CASES` and their actual messages by
``tools/write_error_table.py``; the tests below fail when it is out of date.
"""

from __future__ import annotations

import contextlib
import functools
import io
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

import pytest
import torch
from torch_geometric.data import Data

import diffusion_pde as dp
import solvers
from diffusion_pde.cli import main
from diffusion_pde.data import load_cora, load_dataset, random_split
from diffusion_pde.models import ModelConfig, build_model
from diffusion_pde.training import TrainConfig, load_checkpoint, parse_solver, resolve, run_experiment

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"

# What counts as work: each is replaced, while a case runs, by a mock that fails the case.
WORK = (
    "diffusion_pde.training.experiment.Experiment.run",
    "diffusion_pde.training.experiment.train_run",
    "diffusion_pde.cli.solve.exact_solution",
    "diffusion_pde.cli.solve.run_method",
    "theory_checks.run_checks",
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
    (folder / "out").mkdir()
    (folder / "out" / "keep.txt").write_text("earlier results\n")


def out_is_a_file(folder: Path) -> None:
    (folder / "out").write_text("not a folder\n")


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
    api("model-config-n-steps", "a continuous model with 0 steps", "ModelConfig(depth='continuous', n_steps=0)", ValueError, r"needs n_steps >= 1"),
    api("train-config-epochs", "zero epochs", "TrainConfig(epochs=0)", ValueError, r"^epochs must be a positive int"),
    api("train-config-lr", "a zero learning rate", "TrainConfig(lr=0)", ValueError, r"^lr must be a finite number > 0"),
    api("train-config-metric", "unknown metric", "TrainConfig(metric='f1')", ValueError, r"^metric must be one of accuracy, roc_auc"),
    api("resolve-setting", "a misspelt setting", "resolve('cora', 'gcn', learning_rate=0.1)", ValueError, r"unknown settings \['learning_rate'\]"),
    api("build-model-config", "a dict instead of a ModelConfig", "build_model({'model': 'gcn'}, graph)", TypeError, r"^config must be a ModelConfig"),
    api("build-model-features", "1-D features", "build_model(ModelConfig(), Data(x=torch.rand(4), edge_index=ei, y=graph.y))", ValueError,
        r"^data\.x must be a \[num_nodes, num_features\]"),
    api("parse-solver-steps", "an evaluation solver with 0 steps", "parse_solver('euler:0')", ValueError, r"'euler:0'.*N_STEPS >= 1"),
    api("experiment-splits", "zero splits", "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), splits=0)", ValueError,
        r"^splits must be an int >= 1"),
    api("experiment-out", "an out folder holding results", "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), out='out')", ValueError,
        r"^out \(--out\) out already holds results: pass resume=True \(--resume\) .* overwrite=True \(--overwrite\)",
        setup=earlier_results),
    api("experiment-eval-solvers", "other solvers for a discrete model",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), eval_solvers=['euler:4'])", ValueError,
        r"^eval_solvers \(--eval-solvers\) needs a continuous-depth model"),
    api("experiment-split-index", "a second split of the single public split",
        "run_experiment('cora', ModelConfig(model='gcn'), TrainConfig(), split='public', splits=2)", ValueError, r"single split; use split index 0"),
    api("load-dataset-name", "unknown dataset", "load_dataset('coraa')", ValueError, r"unknown dataset 'coraa'; valid datasets: cora"),
    api("load-dataset-root", "a root without the dataset's files", "load_dataset('citeseer', root='nowhere')", FileNotFoundError,
        r"no folder nowhere/Planetoid/CiteSeer: root must hold"),
    api("random-split-classes", "too few nodes in a class", "random_split(torch.tensor([0] * 30 + [1] * 5), 0)", ValueError,
        r"class 1 has only 5 nodes, too few for 20 .*per_class"),
    api("load-cora-dtype", "an integer dtype", "load_cora(dtype=torch.int64)", TypeError, r"^dtype must be a floating-point torch dtype"),
    api("load-checkpoint-text", "a text file", "load_checkpoint('last.pt')", ValueError, r"^last\.pt is not a complete checkpoint",
        setup=lambda folder: as_text(folder / "last.pt")),
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
    cli("solve-n-save-steps", "more saved times than steps", "solve --n-save 100000 --method euler --n-steps 2 --no-reference",
        r"--n-save 100000 asks for more saved times than the 2 fixed steps"),
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
    cli("train-layers", "zero layers", "train --layers 0", r"num_layers must be >= 1 .*--layers"),
    cli("train-tau", "an attention step past Euler's stability region", "train --tau 2", r"tau=2\.0 > 1 .*\(set by --tau\)"),
    cli("train-continuous-gcn", "a continuous GCN", "train --model gcn --depth continuous", r"no continuous-depth form.*--depth"),
    cli("train-dataset", "unknown dataset", "train --dataset coraa", r"argument --dataset: invalid choice: 'coraa'"),
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
    cli("train-root", "a root without the dataset's files", "train --dataset citeseer --root nowhere",
        r"no folder nowhere/Planetoid/CiteSeer: root must hold .*--root"),
    cli("train-device", "a device that is neither CPU nor CUDA", "train --device mps", r"--device 'mps' is not a device here"),
    cli("train-out-exists", "an --out that holds results", "train --out out", r"--out\) out already holds results: pass resume=True \(--resume\)",
        setup=earlier_results),
    cli("train-out-file", "an --out that is a file", "train --out out", r"out \(--out\) out is a file", setup=out_is_a_file),
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
    cli("train-resume-result-json", "--resume, a finished run whose result.json is truncated", f"train {RUN} --resume",
        rf"{RESULT} is not valid JSON \(it is truncated or damaged\); delete it and --resume rebuilds it", setup=finished_run((RESULT, truncate))),
    cli("train-resume-other-settings", "--resume with another learning rate", f"train {RUN} --resume --lr 0.5",
        rf"{LAST} was written with other settings", setup=finished_run()),
    cli("sweep-taus", "an attention step past Euler's stability region", "sweep --taus 2", r"tau=2\.0 > 1 .*\(set by --taus\)"),
    cli("sweep-depths", "zero layers", "sweep --depths 0", r"num_layers must be >= 1 .*--depths"),
    cli("sweep-source-weights", "a source weight of 1", "sweep --source-weights 1", r"source_weight must lie in \[0, 1\).*--source-weights"),
    cli("sweep-splits", "zero splits", "sweep --splits 0", r"splits must be an int >= 1, got 0 \(set by --splits\)"),
    cli("sweep-out-exists", "an --out that holds results", "sweep --out out", r"--out\) out already holds results", setup=earlier_results),
    cli("sweep-overwrite-bad-tau", "--overwrite with a zero step", "sweep --out out --overwrite --taus 0", r"tau must be a finite step size > 0.*--taus",
        setup=earlier_results),
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
        "random_split": random_split, "load_cora": load_cora, "load_checkpoint": load_checkpoint,
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
integrate, run checks or delete files by ones that fail it) and leaves every file as it was (the
test compares the working folder's files before and after). A command-line error is one line on
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
with `import torch, solvers, diffusion_pde as dp`; paths are relative to the working folder.
"""

CLI_INTRO = """
## Command line

The finished run used by the `--resume` rows was made with `diffusion-pde train {run}`; paths are
relative to the working folder.
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
    assert {"solve", "train", "sweep", "check"} <= {case.call[0] for case in CLI_CASES if case.call}
    assert len(CASES) >= 40
