"""Outputs that never cost a user a file: the results-folder marker, --overwrite deleting only what
diffusion-pde wrote, the folders it never empties, and figure/prediction files replaced only when
asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from diffusion_pde.cli import main
from diffusion_pde.models import ModelConfig
from diffusion_pde.training import MARKER, TrainConfig, run_experiment
from diffusion_pde.training.outputs import RESULT_FILES, SWEEP_LAYOUT, check_out, remove_results
from saved_graphs import tiny_graph

TINY = ["--model", "difformer_s", "--layers", "1", "--hidden", "4", "--epochs", "2", "--quiet", "--json"]


def exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_overwrite_refuses_a_folder_it_did_not_create(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "data.csv").write_text("a,b\n1,2\n")
    assert exit_code(["train", "--model", "mlp", "--epochs", "2", "--out", str(out), "--overwrite", "--quiet"]) == 2
    message = capsys.readouterr().err
    assert "did not write" in message and "--overwrite" not in message    # no advice to force it
    assert files(out) == ["data.csv"] and (out / "data.csv").read_text() == "a,b\n1,2\n"


def test_overwrite_never_empties_the_current_or_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine\n")
    assert exit_code(["train", "--model", "mlp", "--epochs", "2", "--out", ".", "--overwrite", "--quiet"]) == 2
    assert "is the current folder, which overwrite (--overwrite) never empties" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)                                          # even an empty current folder
    assert exit_code(["train", "--model", "mlp", "--epochs", "2", "--out", ".", "--overwrite", "--quiet"]) == 2
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ValueError, match="is the home folder"):
        check_out(Path("~"), resume=False, overwrite=True)
    assert files(tmp_path) == ["empty", "home", "notes.txt"]


def test_overwrite_deletes_only_what_diffusion_pde_wrote(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph, out = tiny_graph(tmp_path), tmp_path / "run"
    args = ["train", "--dataset", str(graph), *TINY, "--splits", "2", "--out", str(out), "--plot"]
    assert main(args) == 0
    capsys.readouterr()
    written = files(out)
    assert {MARKER, "curves.png", "attention.png", "results.json", "split1/run0/best.pt",
            f"split0/run0/{MARKER}", f"split0/{MARKER}"} <= set(written)
    (out / "notes.txt").write_text("the user's\n")
    (out / "split0" / "run0" / "notes.txt").write_text("the user's\n")
    (out / "split1" / "run0" / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")   # a killed write
    assert main(args[:-1] + ["--overwrite"]) == 0                   # again, without --plot
    capsys.readouterr()
    assert files(out) == sorted(set(written) - {"curves.png", "attention.png"} | {"notes.txt", "split0/run0/notes.txt"})
    assert (out / "notes.txt").read_text() == "the user's\n"


def test_overwrite_keeps_a_users_copy_of_a_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cp -r out/split0 out/backup_of_split0` copies the markers too; --overwrite must still keep it."""
    graph, out = tiny_graph(tmp_path), tmp_path / "run"
    args = ["train", "--dataset", str(graph), *TINY, "--out", str(out)]
    assert main(args) == 0
    shutil.copytree(out / "split0", out / "backup_of_split0")
    shutil.copytree(out / "split0" / "run0", out / "split0" / "run0_backup")
    kept = {p: p.read_bytes() for p in (out / "backup_of_split0").rglob("*") if p.is_file()}
    kept.update({p: p.read_bytes() for p in (out / "split0" / "run0_backup").rglob("*") if p.is_file()})
    assert main(args + ["--overwrite"]) == 0
    capsys.readouterr()
    assert {p: p.read_bytes() for p in kept} == kept
    assert {p.name for p in kept} >= {MARKER, "best.pt", "last.pt", "result.json", "history.csv"}


def test_remove_results_knows_every_file_a_run_and_a_sweep_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = tiny_graph(tmp_path)
    assert main(["train", "--dataset", str(graph), *TINY, "--runs", "2", "--out", str(tmp_path / "t"), "--plot"]) == 0
    assert main(["sweep", "--dataset", str(graph), "--model", "difformer_s", "--hidden", "4", "--epochs", "1", "--depths", "1", "--taus", "0.5",
                 "--source-weights", "0", "--out", str(tmp_path / "s"), "--plot", "--quiet", "--json"]) == 0
    capsys.readouterr()
    for folder, layout in ((tmp_path / "t", ()), (tmp_path / "s", (SWEEP_LAYOUT,))):
        assert {Path(p).name for p in files(folder)} - {MARKER, "split0", "run0", "run1", "L1-tau0.5-mu0"} <= RESULT_FILES
        remove_results(folder, *layout)
        assert files(folder) == [MARKER]                             # everything it wrote is known, and goes


def test_a_folder_without_the_marker_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("the user's own file of that name\n")
    remove_results(tmp_path)
    assert files(tmp_path) == ["results.json"]


def test_resume_and_results_need_our_folder(tmp_path: Path) -> None:
    graph = Data(x=torch.rand(8, 2), edge_index=torch.tensor([[0, 1], [1, 0]]), y=torch.arange(8) % 2)
    run_experiment(graph, ModelConfig(model="gcn", hidden=4), TrainConfig(epochs=1), out=tmp_path / "r", progress=False,
                   log=lambda line: None)
    with pytest.raises(ValueError, match="already holds results: pass resume=True"):
        run_experiment(graph, ModelConfig(model="gcn", hidden=4), TrainConfig(epochs=1), out=tmp_path / "r")
    (tmp_path / "r" / MARKER).unlink()                              # no longer recognisable as ours
    with pytest.raises(ValueError, match="did not write"):
        run_experiment(graph, ModelConfig(model="gcn", hidden=4), TrainConfig(epochs=1), out=tmp_path / "r", resume=True)


def test_an_existing_plot_is_replaced_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plot = tmp_path / "energy.png"
    plot.write_bytes(b"an older picture")
    args = ["solve", "--method", "euler", "--n-steps", "2", "--t1", "0.1", "--no-reference", "--quiet", "--json",
            "--plot", str(plot)]
    assert exit_code(args) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert plot.read_bytes() == b"an older picture"
    assert main(args + ["--overwrite"]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("first_line, replaced", [
    ("node,predicted_by_expert,notes", False),          # merely starts like ours
    ("node,predicted", False),
    ("node,predicted,p_0,p_2", False),
    ("node,predicted,p_0,p_1,h_0,h_1", True),           # ours, written with --embeddings
    ("node,predicted,p_0,p_1,p_2", True),               # ours, from a three-class run
])
def test_predict_overwrites_only_a_file_whose_whole_header_is_ours(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   first_line: str, replaced: bool) -> None:
    graph = tiny_graph(tmp_path)
    assert main(["train", "--dataset", str(graph), *TINY, "--out", str(tmp_path / "r")]) == 0
    target = tmp_path / "p.csv"
    target.write_text(first_line + "\n0,1,0.5\n")
    args = ["predict", str(tmp_path / "r"), "--out", str(target), "--overwrite", "--json"]
    if replaced:
        assert main(args) == 0
        assert target.read_text().startswith("node,predicted,p_0,p_1\n")
    else:
        assert exit_code(args) == 2
        assert "was not written by diffusion-pde" in capsys.readouterr().err
        assert target.read_text() == first_line + "\n0,1,0.5\n"
