"""``diffusion-pde solve`` end to end on the embedded Cora."""

from __future__ import annotations

import json

import pytest

import diffusion_pde as dp
from diffusion_pde.cli import main


def run_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["solve", "--quiet", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_solve_compares_methods_with_the_exact_solution(capsys, tmp_path) -> None:
    plot = tmp_path / "energy.png"
    out = run_json(capsys, "--method", "euler", "rk4", "dopri5", "--n-steps", "8", "--t1", "1.0", "--rtol", "1e-5",
                   "--plot", str(plot))
    rows = {r["method"]: r for r in out["methods"]}
    assert out["num_nodes"] == 2708 and out["exact"]["method"] == "scipy.linalg.expm"
    assert rows["euler"]["nfe"] == 8 and rows["rk4"]["nfe"] == 32 and rows["rk4"]["steps"] == 8
    assert rows["rk4"]["max_abs_error"] < 1e-4 < rows["euler"]["max_abs_error"]
    assert rows["dopri5"]["max_abs_error"] < 1e-4
    for r in rows.values():
        energy = r["dirichlet_energy"]
        assert len(energy) == len(r["times"]) == 9
        assert all(b <= a for a, b in zip(energy, energy[1:]))  # the heat flow only lowers it
    assert abs(rows["rk4"]["dirichlet_energy"][-1] - out["exact"]["dirichlet_energy_t1"]) < 1e-5 * out["exact"]["dirichlet_energy_t1"]
    assert plot.stat().st_size > 10_000


def test_table_output(capsys) -> None:
    assert main(["solve", "--quiet", "--method", "heun", "--n-steps", "2", "--t1", "0.2", "--no-reference"]) == 0
    text = capsys.readouterr().out
    assert "heun" in text and "Dirichlet energy at the saved times" in text and "skipped" in text


@pytest.mark.parametrize("name", dp.available_diffusivities())
def test_every_diffusivity_runs(capsys, name: str) -> None:
    out = run_json(capsys, "--diffusivity", name, "--method", "euler", "--n-steps", "1", "--t1", "0.1",
                   "--no-reference", "--dtype", "float32", "--key-channels", "8")
    assert out["methods"][0]["steps"] == 1 and out["diffusivity"] == name


@pytest.mark.parametrize(
    "args, message",
    [
        (["--diffusivity", "heat"], "unknown diffusivity 'heat'; valid names: .*gcn"),
        (["--method", "rk5"], "unknown --method rk5; valid: .*rk4"),
        (["--source-weight", "1.5"], "source_weight must lie in"),
        (["--t1", "-1"], "--t1 must be a positive"),
        (["--n-steps", "0"], "n_steps must be a positive integer"),
        (["--dt", "-0.1"], "dt must be > 0"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["solve", "--quiet", "--no-reference", *args])
    assert exit_info.value.code == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
