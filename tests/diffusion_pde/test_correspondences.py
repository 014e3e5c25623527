"""The message-passing correspondences, checked against PyG's layers as oracles.

Each test takes a row of :data:`diffusion_pde.correspondences.correspondences`, runs K explicit
Euler steps of size τ of ``DiffusionField(S, source_weight=μ)`` through :func:`solvers.solve`,
and compares with the oracle layer under the same weights, in float64, to max |diff| ≤ 1e-10.
Graphs are random, directed, and contain isolated nodes, duplicate edges and self-loops.

The comparisons themselves live once, in :mod:`theory_checks.correspondences` (``ORACLES``,
``compare_*``), which the ``correspondences.pyg_oracles`` theory check runs as well; each test
here draws that row's cases and asserts every difference ≤ 1e-10 and every structural fact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from diffusion_pde import diffusivity
from diffusion_pde.correspondences import LayerArg, correspondence, correspondences, render_document, render_markdown
from diffusion_pde.diffusivities import diffusivity_class
from theory_checks.correspondences import ORACLES, Comparison, euler, maxdiff

TOL = 1e-10
F64 = torch.float64
REPO = Path(__file__).resolve().parents[2]


def assert_matches(result: Comparison) -> None:
    """Every max |diff| of the row (outputs, gradients, dense S) ≤ 1e-10 in float64, and every
    structural fact (resolved step count, non-zero finite gradient, ...) holds."""
    assert result.diffs and result.max_diff <= TOL, f"{result.row}: {result.diffs}"
    assert all(result.facts.values()), f"{result.row}: {result.facts}"


# --------------------------------------------------------------------------------------------
# the table itself


def test_table_rows_are_consistent() -> None:
    names = [row.name for row in correspondences]
    assert len(names) == len(set(names)) == len(set(correspondences))  # rows are hashable data
    assert {"MLP", "GCN", "SGC", "GIN", "APPNP", "GAT", "GAT (head mean)", "Transformer"} <= set(names)
    for row in correspondences:
        diffusivity_class(row.diffusivity)  # registered
        assert callable(globals().get(row.test)), f"{row.name}: no test named {row.test}"
        for value in (*row.params.values(), row.steps, row.source_weight):
            if isinstance(value, LayerArg):
                assert value.name in row.layer_args, f"{row.name}: {value.name} is not an oracle argument"
        resolved = row.resolve()
        assert resolved.steps >= 1 and resolved.tau == 1.0 and 0.0 <= resolved.source_weight <= 1.0
        assert row.name in render_markdown()
    assert correspondence("APPNP").resolve(K=3, alpha=0.2)[2:] == (3, 1.0, 0.2)
    with pytest.raises(ValueError, match="unknown oracle argument"):
        correspondence("SGC").resolve(k=3)
    with pytest.raises(ValueError, match="no correspondence named"):
        correspondence("GraphSAGE")


def test_docs_page_is_generated_from_the_table() -> None:
    page = REPO / "docs" / "correspondences.md"
    assert page.read_text(encoding="utf-8") == render_document(), (
        "docs/correspondences.md is stale: python -m diffusion_pde.correspondences > docs/correspondences.md"
    )


# --------------------------------------------------------------------------------------------
# oracles


def test_every_row_has_an_oracle() -> None:
    assert [row.name for row in correspondences] == list(ORACLES)


@given(case=ORACLES["MLP"].cases)
def test_identity_is_mlp(case: dict) -> None:
    """S = I: the step returns Z⁰ = X Wᵀ; plus the bias it is ``nn.Linear(X)``."""
    assert_matches(ORACLES["MLP"].run(case))


@given(case=ORACLES["GCN"].cases)
def test_gcn_is_gcnconv(case: dict) -> None:
    """One Euler step (τ = 1) of gcn on Z⁰ = conv.lin(X), plus the bias, is GCNConv, with and
    without edge weights (at most one self-loop per node, see ``compare_gcn``)."""
    assert_matches(ORACLES["GCN"].run(case))


@given(case=ORACLES["SGC"].cases)
def test_sgc_is_sgconv(case: dict) -> None:
    """K ∈ {1, 2, 3} Euler steps of gcn with no channel map between them, then SGConv.lin, is SGConv(K)."""
    assert_matches(ORACLES["SGC"].run(case))


@given(case=ORACLES["GIN"].cases)
def test_gin_is_ginconv(case: dict) -> None:
    """One Euler step of gin(ε) is GINConv(nn=Identity(), eps=ε) on any graph; S = dense() too;
    with train_eps=True the gradient with respect to ε matches PyG's (and is finite, non-zero)."""
    assert_matches(ORACLES["GIN"].run(case))


@given(case=ORACLES["APPNP"].cases)
def test_appnp_is_appnp(case: dict) -> None:
    """K Euler steps (τ = 1) of gcn with source weight μ = α are APPNP(K, α)."""
    assert_matches(ORACLES["APPNP"].run(case))


@given(case=st.one_of(ORACLES["GAT"].cases, ORACLES["GAT (head mean)"].cases))
def test_gat_is_gatconv(case: dict) -> None:
    """One Euler step of gat on Z⁰ = conv.lin(X) with the conv's attention vectors, plus the bias,
    is GATConv (heads 1 and 4; concat=False: the head mean of the concat step); the attention
    gradients match PyG's, and a batched [B, N, d] state gives each element's result."""
    assert_matches(ORACLES["GAT" if case["concat"] else "GAT (head mean)"].run(case))


@given(case=ORACLES["Transformer"].cases)
def test_transformer_is_sdpa(case: dict) -> None:
    """One Euler step of transformer is scaled_dot_product_attention with the diffusivity's own
    q, k and v = Z in heads (heads 1 and 4, d_k = d/H and 3, [N, d] and [B, N, d]); S = dense() too."""
    assert_matches(ORACLES["Transformer"].run(case))


# --------------------------------------------------------------------------------------------
# the diffusivities beyond the oracles


GRAPH = torch.tensor([[0, 1, 1, 2, 3, 3, 2, 4, 0], [1, 0, 2, 1, 2, 2, 2, 4, 3]])  # dup (3→2), loops, isolated 5


def small_gat(**kw: object) -> object:
    torch.manual_seed(0)
    return diffusivity("gat", edge_index=GRAPH, num_nodes=6, in_channels=8, dtype=F64, **kw)


def small_transformer(**kw: object) -> object:
    torch.manual_seed(0)
    return diffusivity("transformer", in_channels=8, dtype=F64, **kw)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_gat_mean_heads_is_row_stochastic_average(heads: int) -> None:
    s = small_gat(heads=heads, concat=False)
    z = torch.randn(3, 6, 8, dtype=F64)
    dense = s.dense(z)  # [3, N, N]
    per_head = s.dense_heads(z)  # [3, H, N, N]
    assert maxdiff(dense, per_head.mean(1)) <= TOL
    assert maxdiff(per_head.sum(-1), torch.ones(3, heads, 6, dtype=F64)) <= TOL
    assert bool((per_head >= 0).all())
    assert maxdiff(s(z), dense @ z) <= TOL
    assert maxdiff(s(z[1]), s(z)[1]) <= TOL
    assert s.properties.row_stochastic and s.properties.depends_on_state and s.properties.cost == "O(E d)"


def test_gin_properties_and_train_eps() -> None:
    fixed = diffusivity("gin", edge_index=GRAPH, num_nodes=6, eps=0.5, dtype=F64)
    trained = diffusivity("gin", edge_index=GRAPH, num_nodes=6, eps=0.5, train_eps=True, dtype=F64)
    assert maxdiff(fixed.dense(), trained.dense()) <= TOL
    a = torch.zeros(6, 6, dtype=F64).index_put_((GRAPH[1], GRAPH[0]), torch.ones(GRAPH.shape[1], dtype=F64),
                                                accumulate=True)
    assert maxdiff(fixed.dense(), a + 1.5 * torch.eye(6, dtype=F64)) <= TOL
    assert fixed.node_measure() is None and not fixed.properties.row_stochastic
    assert [name for name, _ in trained.named_parameters()] == ["eps"]
    assert not list(fixed.parameters())
    assert not diffusivity("gin", edge_index=GRAPH, num_nodes=6, eps=-2.0).properties.nonnegative
    with torch.no_grad():
        trained.eps.fill_(3.0)
    trained.reset_parameters()
    assert trained.eps.item() == 0.5
    with pytest.raises(TypeError, match="eps must be a finite real"):
        diffusivity("gin", edge_index=GRAPH, num_nodes=6, eps=float("nan"))


def test_gradients_reach_the_parameters() -> None:
    gen = torch.Generator().manual_seed(1)
    z0, probe = torch.randn(2, 6, 8, generator=gen, dtype=F64)
    cases = [
        (small_gat(heads=2), ("att_src", "att_dst")),
        (small_gat(heads=2, concat=False, frozen=True), ("att_src", "att_dst")),
        (small_transformer(heads=2), ("query.weight", "key.weight")),
        (small_transformer(heads=2, frozen=True), ("query.weight", "key.weight")),
        (diffusivity("gin", edge_index=GRAPH, num_nodes=6, eps=0.1, train_eps=True, dtype=F64), ("eps",)),
    ]
    for s, names in cases:
        out = euler(s, z0, steps=3, tau=0.5)
        (out * probe).sum().backward()
        params = dict(s.named_parameters())
        for name in names:
            grad = params[name].grad
            assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0, (s, name)


@pytest.mark.parametrize("make", [small_gat, small_transformer], ids=["gat", "transformer"])
@pytest.mark.parametrize("concat", [True, False])
def test_frozen_equals_live_for_one_step_then_differs(make: object, concat: bool) -> None:
    live, frozen = make(heads=2, concat=concat), make(heads=2, concat=concat, frozen=True)
    frozen.load_state_dict(live.state_dict())
    z0 = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    with torch.no_grad():
        assert maxdiff(euler(live, z0, steps=1, tau=1.0), euler(frozen, z0, steps=1, tau=1.0)) <= TOL
        many_live, many_frozen = euler(live, z0, steps=4, tau=0.5), euler(frozen, z0, steps=4, tau=0.5)
        assert maxdiff(many_live, many_frozen) > 1e-6
        # frozen = the linear flow of S(Z⁰): Z^{k+1} = (1 − τ)Z^k + τ S(Z⁰) Z^k
        z = z0
        for _ in range(4):
            z = 0.5 * z + 0.5 * live(z0, values=z)
        assert maxdiff(many_frozen, z) <= TOL
        frozen.set_initial_state(z0[0])
        assert maxdiff(frozen(z0), live(z0[0], values=z0)) <= TOL  # one S(Z⁰) applied to a batch
    fresh = make(heads=2, concat=concat, frozen=True)
    with pytest.raises(RuntimeError, match="set_initial_state"):
        fresh(z0)


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="heads=3 must divide in_channels=8"):
        diffusivity("gat", edge_index=GRAPH, num_nodes=6, in_channels=8, heads=3)
    with pytest.raises(ValueError, match="gat needs in_channels"):
        diffusivity("gat", edge_index=GRAPH, num_nodes=6)
    with pytest.raises(ValueError, match="needs a graph"):
        diffusivity("gat", in_channels=8)
    with pytest.raises(ValueError, match="heads=3 must divide in_channels=8"):
        diffusivity("transformer", in_channels=8, heads=3)
    assert diffusivity("transformer", in_channels=8, heads=3, concat=False).key_channels == 2
    with pytest.raises(ValueError, match="transformer needs in_channels"):
        diffusivity("transformer")
    with pytest.raises(ValueError, match="pass key_channels"):
        diffusivity("transformer", in_channels=2, heads=4, concat=False)
    with pytest.raises(ValueError, match="heads must be a positive int"):
        diffusivity("transformer", in_channels=8, heads=0)

    gat, transformer = small_gat(heads=2), small_transformer(heads=2)
    gin = diffusivity("gin", edge_index=GRAPH, num_nodes=6, dtype=F64)
    with pytest.raises(ValueError, match="in_channels = 8"):
        gat(torch.randn(6, 7, dtype=F64))
    with pytest.raises(ValueError, match="in_channels = 8"):
        transformer(torch.randn(6, 7, dtype=F64))
    with pytest.raises(ValueError, match="num_nodes = 6"):
        gat(torch.randn(5, 8, dtype=F64))
    with pytest.raises(ValueError, match="num_nodes = 6"):
        gin(torch.randn(5, 8, dtype=F64))
    with pytest.raises(TypeError, match="float32"):
        gat(torch.randn(6, 8, dtype=torch.float32))
    with pytest.raises(TypeError, match="float32"):
        transformer(torch.randn(6, 8, dtype=torch.float32))
    with pytest.raises(ValueError, match="dense_heads"):
        gat.dense(torch.randn(6, 8, dtype=F64))
    with pytest.raises(ValueError, match="dense_heads"):
        transformer.dense(torch.randn(6, 8, dtype=F64))
