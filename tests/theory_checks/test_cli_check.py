"""``diffusion-pde check``: report format, JSON, selection, and a non-zero exit on failure."""

from __future__ import annotations

import json

import pytest

import theory_checks
from diffusion_pde.cli import main
from theory_checks import Outcome, Profile


def test_list_names_every_section(capsys) -> None:
    assert main(["check", "--list"]) == 0
    text = capsys.readouterr().out
    for section in ("energy descent", "correspondences", "structure", "solver theory"):
        assert f"[{section}]" in text


def test_json_report_of_a_section(capsys) -> None:
    assert main(["check", "--select", "solver theory", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == 0 and report["passed"] == len(report["checks"]) >= 1
    assert all(c["section"] == "solver theory" and c["measure"] for c in report["checks"])


def test_a_failing_check_is_reported_and_exits_non_zero(capsys, monkeypatch) -> None:
    broken = theory_checks.Check("demo.broken", "demo", "a statement that does not hold",
                                 lambda profile: Outcome(False, "max difference 1.0", 1.0, {"counterexample": "Z = 0"}))
    monkeypatch.setattr(theory_checks, "load_checks", lambda: (broken,))
    assert main(["check", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "FAIL  demo.broken" in text and "counterexample: Z = 0" in text and "0 passed, 1 failed" in text


def test_a_crashing_check_is_a_failure_not_a_crash() -> None:
    def explode(profile: Profile) -> Outcome:
        raise ZeroDivisionError("boom")

    result = theory_checks.run_check(theory_checks.Check("demo.crash", "demo", "s", explode), Profile.fast())
    assert not result.passed and "ZeroDivisionError" in result.measure


def test_unknown_selection_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--select", "no-such-check", "--quiet"])
    assert info.value.code == 2 and "matches no check" in capsys.readouterr().err
