"""Inputs the commands accept: named solver fields, ``solve`` on a user's graph, datasets staged
from a root without ever downloading."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusion_pde.cli import main
from diffusion_pde.data import load_dataset
from diffusion_pde.training import parse_solver
from saved_graphs import tiny_graph

PLANETOID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "Planetoid"


@pytest.mark.parametrize("spec, expected", [
    ("euler:16", ("euler", {"n_steps": 16})),
    ("rk4:n_steps=8", ("rk4", {"n_steps": 8})),
    ("dopri5", ("dopri5", {"rtol": 1e-5, "atol": 1e-5 / 100})),  # atol = rtol / 100
    ("dopri5:1e-6", ("dopri5", {"rtol": 1e-6, "atol": 1e-6 / 100})),
    ("dopri5:rtol=1e-6:atol=1e-9", ("dopri5", {"rtol": 1e-6, "atol": 1e-9})),
    ("bosh3:1e-4:atol=1e-3", ("bosh3", {"rtol": 1e-4, "atol": 1e-3})),
    ("dopri5:atol=1e-9", ("dopri5", {"rtol": 1e-5, "atol": 1e-9})),
])
def test_solver_specs(spec: str, expected: tuple) -> None:
    assert parse_solver(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("euler", r"needs a step count: write euler:N"),
    ("euler:4:8", r"the third field '8' must be named, e\.g\. euler:n_steps=\.\.\."),
    ("dopri5:rtol=1e-5:rtol=1e-6", r"rtol is given twice"),
    ("rk4:rtol=1e-3", r"rk4 takes n_steps, not 'rtol'"),
    ("dopri5:-1", r"rtol must be a finite number > 0, got '-1'"),
])
def test_bad_solver_specs(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_solver(spec)


def test_solve_diffuses_a_users_graph_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    np.save(folder / "edge_index.npy", np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]))
    np.save(folder / "x.npy", np.eye(4)[:, :2] * 3.0)                 # one feature column may be 0 everywhere
    assert main(["solve", "--dataset", str(folder), "--method", "rk4", "--n-steps", "8", "--t1", "1", "--quiet",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["dataset"], payload["num_nodes"], payload["num_features"]) == ("g", 4, 2)
    assert payload["methods"][0]["max_abs_error"] < 1e-4            # against expm on the user's graph
    energy = payload["methods"][0]["dirichlet_energy"]
    assert all(b <= a for a, b in zip(energy, energy[1:]))


def test_a_root_missing_raw_files_is_refused_then_completed(tmp_path: Path) -> None:
    """Nothing is downloaded with a root: the missing files are named; a complete root later
    fills in what the cache lacks (file by file) and loads."""
    raw = PLANETOID / "CiteSeer" / "raw"
    if not raw.is_dir():
        pytest.skip(f"{raw} is not present (only CI and developers have ../shared)")
    partial = tmp_path / "partial" / "Planetoid" / "CiteSeer" / "raw"
    partial.mkdir(parents=True)
    shutil.copy(raw / "ind.citeseer.x", partial)
    with pytest.raises(FileNotFoundError, match=r"lacks .*ind\.citeseer\.tx.*nothing is downloaded"):
        load_dataset("citeseer", root=tmp_path / "partial", cache=tmp_path / "cache")
    data = load_dataset("citeseer", root=PLANETOID.parent, cache=tmp_path / "cache")
    assert data.num_nodes == 3327 and data.source == {"kind": "builtin", "name": "citeseer", "root": str(PLANETOID.parent.resolve())}


@pytest.mark.parametrize("args, match", [
    ("train --model gcn --no-layer-norm", r"--no-layer-norm: model gcn does not use --layer-norm, so it would be ignored; "
                                          r"drop --no-layer-norm, or choose a model that uses it \(difformer_s"),
    ("train --model gat --qk-norm global", r"--qk-norm: model gat does not use --qk-norm"),
    ("train --model appnp --graph-weight 0.5", r"--graph-weight: model appnp does not use --graph-weight"),
    ("train --model sgc --no-graph", r"--no-graph: model sgc does not use --graph"),
    ("train --model gcn --value-proj", r"--value-proj: model gcn does not use --value-proj"),
    ("train --model appnp --heads 2", r"--heads: model appnp does not use --heads"),
    ("train --model sgc --hidden 8", r"--hidden: model sgc does not use --hidden"),
    ("train --model sgc --dropout 0.1", r"--dropout: model sgc does not use --dropout"),
    ("train --model mlp --tau 0.5", r"--tau: model mlp does not use --tau"),
    ("train --model mlp --source-weight 0", r"--source-weight: model mlp does not use --source-weight"),
    ("train --model mlp --source-weight 0.1", r"source_weight=0\.1: model 'mlp' has no propagation to add a source term"),
    ("train --depth continuous --layers 4", r"--layers: --layers sets the discrete layers, but this difformer_s model has "
                                           r"--depth continuous .*use --depth discrete"),
    ("train --no-graph --graph-weight 0.5", r"--graph-weight: --graph-weight weighs the graph term, which --no-graph turns off"),
    ("train --model gcn --source-weight 0.3", r"source_weight=0\.3: model 'gcn' changes the width .*model='appnp'"),
    ("sweep --model gcn --source-weights 0 0.1", r"source_weight=0\.1: model 'gcn' .*\(set by --model, --source-weights\)"),
    ("sweep --layers 4", r"--layers: the sweep sets num_layers from --depths; drop --layers"),
    ("sweep --tau 0.5", r"--tau: the sweep sets tau from --taus; drop --tau"),
    ("sweep --model mlp", r"--model mlp has no layers, step or source term for the sweep to vary"),
])
def test_flags_the_model_would_ignore_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture, args: str,
                                                  match: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*args.split(), "--dataset", str(tiny_graph(tmp_path)), "--epochs", "1", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_presets_may_set_what_a_model_ignores_and_results_record_only_what_it_uses(tmp_path: Path,
                                                                                   capsys: pytest.CaptureFixture) -> None:
    graph = tiny_graph(tmp_path)
    assert main(["train", "--model", "gcn", "--preset", "paper", "--dataset", str(graph), "--epochs", "1", "--hidden",
                 "4", "--out", str(tmp_path / "t"), "--quiet", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["model"] == {"model": "gcn", "depth": "discrete", "num_layers": 2, "hidden": 4, "tau": 1.0,
                                "dropout": 0.5}
    assert payload["num_nodes"] == 12 and payload["num_edges"] == 12
    # the sweep of a GCN sweeps no source term by default (a GCN has none)
    assert main(["sweep", "--model", "gcn", "--dataset", str(graph), "--epochs", "1", "--hidden", "4", "--depths", "2",
                 "--taus", "1", "--out", str(tmp_path / "s"), "--quiet", "--json"]) == 0
    assert [row["source_weight"] for row in json.loads(capsys.readouterr().out)["rows"]] == [0.0]


def test_out_errors_show_the_path_as_given(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(SystemExit):
        main(["train", "--out", "~/notes.txt", "--epochs", "1"])
    assert "out (--out) ~/notes.txt is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit):                                     # `new/..` is the folder it ends in
        main(["train", "--out", "~/new/..", "--overwrite", "--epochs", "1"])
    assert "out (--out) ~/new/.. is the home folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    graph = tiny_graph(tmp_path)
    command = (f"{shlex.quote(sys.executable)} -m diffusion_pde.cli train --dataset {shlex.quote(str(graph))} "
               f"--model mlp --hidden 4 --epochs 1 --runs 40 --out {shlex.quote(str(tmp_path / 'o'))} | head -1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.startswith("graph (12 nodes, 12 edges, 3 features): mlp") and done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141
