"""The correspondence checks pass in the fast profile and can fail: a wrong textbook formula
leaves entries that do not simplify to 0, and a wrong diffusivity breaks the PyG oracles."""

from __future__ import annotations

import pytest
import sympy

from diffusion_pde import diffusivity
from diffusion_pde.correspondences import correspondences
from theory_checks import Profile, load_checks, run_check
from theory_checks import correspondences as checks
from theory_checks.correspondences import (
    GCN_GRAPH,
    GIN_GRAPH,
    ORACLES,
    Comparison,
    differing_entries,
    gcn_matrix_symbolic,
    symbolic_case,
    symbolic_layer,
)

FAST = Profile.fast()
SYMBOLIC = ("GCN", "GIN", "SGC", "APPNP")


def outcome(name: str):
    (item,) = [c for c in load_checks() if c.name == name]
    return run_check(item, FAST)


def test_registered_in_the_correspondences_section() -> None:
    names = {c.name for c in load_checks() if c.section == "correspondences"}
    assert names == {"correspondences.pyg_oracles", *(f"correspondences.symbolic_{x.lower()}" for x in SYMBOLIC)}


@pytest.mark.parametrize("layer", SYMBOLIC)
def test_symbolic_checks_pass(layer: str) -> None:
    result = outcome(f"correspondences.symbolic_{layer.lower()}")
    assert result.passed, result.details
    assert result.value == 8.0 and result.measure.startswith("8/8 entries identical")
    assert result.details["library S vs symbolic S at a numeric point"] <= 1e-12
    assert result.details["library Euler solve vs symbolic steps at a numeric point"] <= 1e-12


def test_symbolic_graphs_have_the_interesting_cases() -> None:
    for graph in (GCN_GRAPH, GIN_GRAPH):
        assert graph.num_nodes in (3, 4)
        assert any(not graph.in_edges(i) for i in range(graph.num_nodes))  # an isolated node
    assert any(j == i for j, i in GIN_GRAPH.edges)  # a self-loop where GIN treats it as an edge
    case = symbolic_case("APPNP")
    free = {str(s) for s in case.diffusion.free_symbols}
    assert {"alpha", "w01", "w12", "x_00", "x_31"} <= free
    assert "epsilon" in {str(s) for s in symbolic_case("GIN").diffusion.free_symbols}


def test_symbolic_comparison_detects_a_wrong_formula() -> None:
    sp = sympy
    case = symbolic_case("GCN")
    assert not differing_entries(case.diffusion, case.textbook)
    x = sp.Matrix(4, 2, lambda i, c: sp.Symbol(f"x_{i}{c}", real=True))
    # the random-walk normalisation D̃^{-1}(A + I) is not GCN's D̃^{-1/2}(A + I)D̃^{-1/2} ...
    a_tilde = GCN_GRAPH.adjacency() + sp.eye(4)
    random_walk = sp.diag(*[1 / sum(a_tilde.row(i)) for i in range(4)]) * a_tilde
    differ = differing_entries(random_walk * x, case.textbook)
    assert set(differ) == {f"[{i},{c}]" for i in range(3) for c in range(2)}  # only the isolated node 3 agrees
    # ... and one Euler step with τ = 1/2 is the residual (X + ÂX)/2, not the layer
    half = checks.euler_steps_symbolic(gcn_matrix_symbolic(GCN_GRAPH), x, 1, sp.Rational(1, 2), 0)
    assert set(differing_entries(half, case.textbook)) == set(differ)


def test_symbolic_check_fails_with_a_wrong_textbook(monkeypatch: pytest.MonkeyPatch) -> None:
    def without_self_loop(graph, h):  # Σ_{j ∈ N(i)} h_j / √(d_i d_j) with d̃ replaced by 1 + d (no self term)
        sp = sympy
        deg = [1 + sum(w for _, w in graph.in_edges(i)) for i in range(graph.num_nodes)]
        return sp.Matrix.vstack(*[
            sum((w * h.row(j) / sp.sqrt(deg[i] * deg[j]) for j, w in graph.in_edges(i)), sp.zeros(1, h.cols))
            for i in range(graph.num_nodes)
        ])

    monkeypatch.setattr(checks, "gcn_textbook", without_self_loop)
    result = symbolic_layer("GCN")
    assert not result.passed and result.value == 0.0  # every node loses its self term
    assert len(result.details["entries whose difference does not simplify to 0"]) == 8


def test_pyg_oracles_check_passes() -> None:
    result = outcome("correspondences.pyg_oracles")
    assert result.passed, result.details
    per_row = result.details["max |diff| per row"]
    assert set(per_row) == {row.name for row in correspondences} == set(ORACLES)
    assert 0.0 <= result.value <= 1e-10


def test_pyg_oracles_check_fails_with_the_wrong_diffusivity(monkeypatch: pytest.MonkeyPatch) -> None:
    def random_walk_for_gcn(name: str, **kw):
        return diffusivity("random_walk" if name == "gcn" else name, **kw)

    monkeypatch.setattr(checks, "diffusivity", random_walk_for_gcn)
    result = run_check(next(c for c in load_checks() if c.name == "correspondences.pyg_oracles"), Profile("tiny", 5))
    assert not result.passed
    assert {"GCN", "SGC", "APPNP"} <= set(result.details) and "GIN" not in result.details
    assert "max |diff|" in result.details["GCN"]["error"]


def test_comparison_problems() -> None:
    ok = Comparison("row", {"output": 1e-15}, {"steps == K": True})
    assert ok.max_diff == 1e-15 and ok.problems() == []
    bad = Comparison("row", {"output": 1e-15, "grad": 1e-3}, {"steps == K": False})
    assert bad.problems() == ["grad: max |diff| 1.000e-03 > 1e-10", "steps == K does not hold"]
    assert Comparison("row", {"output": float("nan")}).problems()  # NaN is a failure, not a pass
