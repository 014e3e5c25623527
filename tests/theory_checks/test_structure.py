"""The structure checks pass in the fast profile, and each can fail: outside its hypotheses
(τ > 1, a negative entry, a non-row-stochastic S, no source, a too-fast rate) the same
per-example functions and the same hypothesis search report a violation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from diffusion_pde import Diffusivity, DiffusivityProperties
from theory_checks import Profile, for_all, load_checks, registered_checks, run_check
from theory_checks import structure
from theory_checks.structure import (
    GraphExample,
    build,
    constants_example,
    constants_residual,
    dirichlet_decrease,
    max_principle_excursion,
    oversmoothing_example,
    source_bound_example,
    spectrum,
)

F64 = torch.float64
FAST = Profile.fast()
STAR = GraphExample(5, tuple(e for leaf in range(1, 5) for e in ((0, leaf), (leaf, 0))), None, seed=3)
EDGE = GraphExample(2, ((0, 1), (1, 0)), None, seed=1)  # I − Â has eigenvalues 0 and 1


class Matrix(Diffusivity):
    """A fixed dense S (for feeding the per-example functions matrices outside the hypotheses)."""

    name = "matrix"

    def __init__(self, rows: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("s", torch.tensor(rows, dtype=F64))
        row_stochastic = bool(torch.allclose(self.s.sum(1), torch.ones(len(rows), dtype=F64)))
        self.properties = DiffusivityProperties(row_stochastic, bool(torch.equal(self.s, self.s.T)),
                                                bool((self.s >= 0).all()), False, "O(N^2 d)")

    def forward(self, z, values=None, t=None):
        return self.s @ (z if values is None else values)

    def dense(self, z=None, t=None):
        return self.s

    def node_measure(self):
        return torch.ones(self.s.shape[0], dtype=F64)


def outcome(name: str):
    (item,) = [c for c in load_checks() if c.name == name]
    return run_check(item, FAST)


# --------------------------------------------------------------------------------------------
# every check passes in the fast profile, with the numbers it should measure


def test_registered_in_the_structure_section() -> None:
    names = {c.name for c in load_checks() if c.section == "structure"}
    assert names == {"structure.constants_fixed_points", "structure.maximum_principle",
                     "structure.dirichlet_nonincreasing", "structure.oversmoothing_rate", "structure.source_bound"}


def test_constants_fixed_points_passes() -> None:
    result = outcome("structure.constants_fixed_points")
    assert result.passed, result.details
    assert 0.0 <= result.value <= 1e-12
    covered = set(result.details["max |F| / max(1, |c|) per diffusivity"])
    assert {"identity", "random_walk", "gat", "transformer", "difformer_s", "difformer_a", "energy"} <= covered
    assert "gcn" not in covered and "gin" not in covered  # not row-stochastic


def test_maximum_principle_passes() -> None:
    result = outcome("structure.maximum_principle")
    assert result.passed, result.details
    assert 0.0 <= result.value <= 1e-12
    assert "gcn" not in result.details["worst excursion per diffusivity"]


def test_dirichlet_nonincreasing_passes() -> None:
    result = outcome("structure.dirichlet_nonincreasing")
    assert result.passed, result.details
    assert 0.0 <= result.value <= 1.0 and result.details["largest increase / E_0"] <= 1e-12


def test_oversmoothing_rate_passes() -> None:
    result = outcome("structure.oversmoothing_rate")
    assert result.passed, result.details
    assert result.value >= 1 - 1e-6  # observed rate ≥ 2γ
    assert result.details["worst excess"] <= 1e-6 and result.details["max limit"] <= 1e-10


def test_source_bound_passes() -> None:
    result = outcome("structure.source_bound")
    assert result.passed, result.details
    assert result.value >= 1 - 1e-6  # min_t E(t)/E(0) ≥ f_min²
    assert result.details["max steady residual"] <= 1e-10


# --------------------------------------------------------------------------------------------
# ... and each can fail


def test_constants_are_not_fixed_points_of_gcn() -> None:
    gcn = build("gcn", STAR, 2)
    assert not gcn.properties.row_stochastic
    assert constants_residual(gcn, torch.tensor([1.0, -2.0], dtype=F64), STAR.num_nodes) > 0.1
    case = {"graph": STAR, "channels": 2, "constant": [1.0, -2.0]}
    assert constants_example(case)["random_walk"] <= 1e-12
    assert constants_example(case, lambda g, d: {"gcn": build("gcn", g, d)})["gcn"] > 0.1


def test_constants_check_fails_when_gcn_is_declared_row_stochastic(monkeypatch: pytest.MonkeyPatch) -> None:
    original = structure.row_stochastic_diffusivities

    def with_gcn(example, channels, **kw):
        return {**original(example, channels, **kw), "gcn": build("gcn", example, channels)}

    monkeypatch.setattr(structure, "row_stochastic_diffusivities", with_gcn)
    result = outcome("structure.constants_fixed_points")
    assert not result.passed and "gcn" in result.details["error"] and result.details["counterexample"]


def test_maximum_principle_fails_for_tau_above_one() -> None:
    swap = Matrix([[0.0, 1.0], [1.0, 0.0]])  # non-negative, row-stochastic
    z0 = torch.tensor([[0.0], [1.0]], dtype=F64)
    assert max_principle_excursion(swap, z0, tau=1.0, steps=3) == 0.0
    assert max_principle_excursion(swap, z0, tau=1.5, steps=1) == pytest.approx(0.5)


def test_maximum_principle_fails_for_a_negative_entry() -> None:
    signed = Matrix([[1.5, -0.5], [0.0, 1.0]])  # rows sum to 1, one entry < 0
    assert signed.properties.row_stochastic and not signed.properties.nonnegative
    z0 = torch.tensor([[1.0], [0.0]], dtype=F64)
    assert max_principle_excursion(signed, z0, tau=1.0, steps=1) == pytest.approx(0.5)


def test_maximum_principle_check_finds_the_violation_for_tau_above_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(structure, "TAUS", st.just(1.9))
    result = outcome("structure.maximum_principle")
    assert not result.passed and "left its initial range" in result.details["error"]


def test_dirichlet_energy_can_increase_for_tau_above_two() -> None:
    gcn = build("gcn", EDGE, 1)
    z0 = torch.tensor([[1.0], [-1.0]], dtype=F64)  # the eigenvector of I − Â with eigenvalue 1
    m = dirichlet_decrease(gcn, z0, tau=1.0, steps=2)
    assert m["increase"] <= 0 and m["energies"][1] == pytest.approx(0.0, abs=1e-15)
    m = dirichlet_decrease(gcn, z0, tau=2.5, steps=2)
    assert m["energies"][1] == pytest.approx(2.25 * m["energies"][0])  # (1 − 2.5 · 1)² = 2.25
    assert m["increase"] > 1.0 and m["decrease ratio"] < 0


def test_dirichlet_check_finds_the_increase_for_tau_above_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(structure, "TAUS", st.just(2.5))
    result = outcome("structure.dirichlet_nonincreasing")
    assert not result.passed and "increased" in result.details["error"]


def test_oversmoothing_bound_fails_for_a_faster_rate_or_with_a_source() -> None:
    gcn = build("gcn", EDGE, 1)
    z0 = torch.tensor([[2.0], [0.0]], dtype=F64)
    exact = oversmoothing_example(gcn, z0)
    assert abs(exact["excess"]) <= 1e-6 and exact["observed rate"] == pytest.approx(2.0, rel=1e-6)  # tight
    assert oversmoothing_example(gcn, z0, rate=2.2)["excess"] > 0.1  # claiming more than 2γ fails
    with_source = oversmoothing_example(gcn, z0, source_weight=0.3)
    assert with_source["limit"] > 0.01 and with_source["excess"] > 1.0  # no decay to 0 with a source


def test_source_bound_is_tight_and_fails_without_source() -> None:
    gcn = build("gcn", STAR, 1)
    lam = spectrum(gcn)
    top = torch.linalg.eigh(torch.eye(5, dtype=F64) - gcn.dense())[1][:, -1:]  # eigenvector of λ_max
    m = source_bound_example(gcn, top, source_weight=0.25)
    f_min = 0.25 / (0.25 + 0.75 * float(lam[-1]))
    assert m["f_min^2"] == pytest.approx(f_min**2)
    assert m["steady ratio"] == pytest.approx(f_min**2, rel=1e-9)  # attained at Z* for the top mode
    assert -1e-9 <= m["margin"] <= 1e-9
    gap = float(lam[lam > 1e-9].min())  # claiming f_max = μ/(μ + (1 − μ)γ) instead of f_min fails
    assert source_bound_example(gcn, top, 0.25, bound=(0.25 / (0.25 + 0.75 * gap)) ** 2)["margin"] < -0.5
    # without a source the energy is not bounded away from 0 (it drops below the μ = 0.25 bound)
    assert source_bound_example(gcn, top, 0.0, bound=f_min**2)["margin"] < -0.9


def test_source_check_fails_when_the_bound_is_too_strong(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check run with f_max = μ/(μ + (1 − μ)γ) (the spectral gap γ) in place of f_min finds a violation."""
    original = structure.source_bound_example

    def with_f_max(s, z0, mu, **kw):
        lam = spectrum(s)
        gap = float(lam[lam > 1e-9].min())
        # a gross violation: a coarse rk4 grid keeps the search and its shrinking cheap
        return original(s, z0, mu, bound=(mu / (mu + (1 - mu) * gap)) ** 2, n_steps=80)

    monkeypatch.setattr(structure, "source_bound_example", with_f_max)
    result = outcome("structure.source_bound")
    assert not result.passed and "fell below" in result.details["error"]


def test_random_graphs_are_well_formed() -> None:
    shapes = []

    def prop(example: GraphExample) -> None:
        data = example.data()
        assert data.edge_index.shape == (2, len(example.edges)) and data.num_nodes == example.num_nodes
        pairs = sorted(example.edges)
        assert pairs == sorted((b, a) for a, b in example.edges)  # undirected
        shapes.append((example.num_nodes, len(example.edges)))

    assert for_all(structure.graph_examples(connected=True), prop, FAST) is None
    assert len(set(shapes)) > 5


def test_checks_run_single_threaded_and_restore_the_setting() -> None:
    seen = []
    original = structure.dirichlet_example

    def spy(case):
        seen.append(torch.get_num_threads())
        return original(case)

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(structure, "dirichlet_example", spy)
            item = next(c for c in registered_checks() if c.name == "structure.dirichlet_nonincreasing")
            assert run_check(item, Profile("tiny", 3)).passed
        assert torch.get_num_threads() == 2 and set(seen) == {1}
    finally:
        torch.set_num_threads(previous)
