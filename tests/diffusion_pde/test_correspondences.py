"""The message-passing correspondences, checked against PyG's layers as oracles.

Each test takes a row of :data:`diffusion_pde.correspondences.correspondences`, runs K explicit
Euler steps of size τ of ``DiffusionField(S, source_weight=μ)`` through :func:`solvers.solve`,
and compares with the oracle layer under the same weights, in float64, to max |diff| ≤ 1e-10.
Graphs are random, directed, and contain isolated nodes, duplicate edges and self-loops.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch_geometric.nn import APPNP, GATConv, GCNConv, GINConv, SGConv

import solvers
from diffusion_pde import DiffusionField, diffusivity
from diffusion_pde.correspondences import LayerArg, correspondence, correspondences, render_document, render_markdown
from diffusion_pde.diffusivities import diffusivity_class

TOL = 1e-10
F64 = torch.float64
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# random graphs


@st.composite
def graphs(draw: st.DrawFn, *, single_self_loops: bool = False, weighted: bool = False) -> dict:
    """A random directed graph with ≥ 1 isolated node, ≥ 1 duplicate edge and ≥ 1 self-loop.

    ``single_self_loops``: at most one self-loop per node (GCN/SGC/APPNP: PyG's
    ``add_remaining_self_loops`` keeps one weight of several loops, the library sums them).
    """
    n = draw(st.integers(3, 12), label="num_nodes")
    core = draw(st.integers(2, n - 1), label="non-isolated nodes")  # nodes core..n-1 are isolated
    node = st.integers(0, core - 1)
    edges = draw(st.lists(st.tuples(node, node).filter(lambda e: e[0] != e[1]), min_size=1, max_size=30))
    edges += draw(st.lists(st.sampled_from(edges), min_size=1, max_size=5), label="duplicates")
    loops = draw(st.lists(node, min_size=1, max_size=core, unique=single_self_loops), label="self-loops")
    edges += [(v, v) for v in loops]
    order = draw(st.permutations(range(len(edges))))
    edge_index = torch.tensor([edges[i] for i in order], dtype=torch.long).t().contiguous()
    weight = None
    if weighted:
        weight = torch.tensor(draw(st.lists(st.floats(0.1, 3.0), min_size=len(edges), max_size=len(edges))), dtype=F64)
    seed = draw(st.integers(0, 2**31 - 1), label="feature seed")
    return {"edge_index": edge_index, "num_nodes": n, "edge_weight": weight, "seed": seed}


def features(g: dict, *shape: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(g["seed"])
    return torch.randn(*shape, generator=gen, dtype=F64)


def euler(s: object, z0: torch.Tensor, *, steps: int, tau: float, source_weight: float = 0.0) -> torch.Tensor:
    """K Euler steps of size τ of the diffusion field on S, through the public solver."""
    field = DiffusionField(s, source_weight=source_weight).set_initial_state(z0)
    return solvers.solve(field, z0, t1=tau * steps, method="euler", n_steps=steps).final


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).detach().abs().max())


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


@given(g=graphs())
def test_identity_is_mlp(g: dict) -> None:
    r = correspondence("MLP").resolve()
    lin = torch.nn.Linear(5, 3, dtype=F64)
    x = features(g, g["num_nodes"], 5)
    with torch.no_grad():
        z0 = x @ lin.weight.T
        out = euler(diffusivity("identity"), z0, steps=r.steps, tau=r.tau) + lin.bias
        assert maxdiff(out, lin(x)) <= TOL


@given(g=graphs(single_self_loops=True, weighted=True), weighted=st.booleans())
def test_gcn_is_gcnconv(g: dict, weighted: bool) -> None:
    """One Euler step (τ = 1) of gcn on Z⁰ = conv.lin(X), plus the bias, is GCNConv.

    At most one self-loop per node: with several, GCNConv (add_remaining_self_loops) keeps one of
    their weights whereas the library sums them, like every other duplicate edge."""
    r = correspondence("GCN").resolve()
    weight = g["edge_weight"] if weighted else None
    conv = GCNConv(6, 4, **r.layer_args).to(F64)
    torch.nn.init.normal_(conv.bias)
    x = features(g, g["num_nodes"], 6)
    s = diffusivity("gcn", edge_index=g["edge_index"], num_nodes=g["num_nodes"], edge_weight=weight, dtype=F64)
    with torch.no_grad():
        out = euler(s, conv.lin(x), steps=r.steps, tau=r.tau, source_weight=r.source_weight) + conv.bias
        assert maxdiff(out, conv(x, g["edge_index"], weight)) <= TOL


@given(g=graphs(single_self_loops=True), k=st.integers(1, 3))
def test_sgc_is_sgconv(g: dict, k: int) -> None:
    """K Euler steps (τ = 1) of gcn on Z⁰ = X with no channel map between them, then SGConv's
    linear map, is SGConv(K) (one self-loop per node at most, see the GCN test)."""
    r = correspondence("SGC").resolve(K=k)
    conv = SGConv(6, 4, **r.layer_args).to(F64)
    x = features(g, g["num_nodes"], 6)
    s = diffusivity("gcn", edge_index=g["edge_index"], num_nodes=g["num_nodes"], dtype=F64)
    with torch.no_grad():
        out = conv.lin(euler(s, x, steps=r.steps, tau=r.tau, source_weight=r.source_weight))
        assert r.steps == k
        assert maxdiff(out, conv(x, g["edge_index"])) <= TOL


@given(g=graphs(), eps=st.sampled_from([0.0, 0.5, -0.3, -1.0, 2.0]), train_eps=st.booleans())
def test_gin_is_ginconv(g: dict, eps: float, train_eps: bool) -> None:
    """One Euler step (τ = 1) of gin(ε) is GINConv(nn=Identity(), eps=ε) on any graph (duplicate
    edges and several self-loops included: both sum over every edge); with train_eps=True the
    gradient with respect to ε matches PyG's too."""
    r = correspondence("GIN").resolve(eps=eps, train_eps=train_eps)
    conv = GINConv(nn=torch.nn.Identity(), **r.layer_args).to(F64)
    conv.reset_parameters()  # refill ε in float64 (it was rounded to float32 at construction)
    s = diffusivity("gin", edge_index=g["edge_index"], num_nodes=g["num_nodes"], dtype=F64, **r.diffusivity_params)
    x = features(g, g["num_nodes"], 5)
    probe = features({"seed": g["seed"] + 1}, g["num_nodes"], 5)
    out = euler(s, x, steps=r.steps, tau=r.tau, source_weight=r.source_weight)
    expected = conv(x, g["edge_index"])
    assert maxdiff(out, expected) <= TOL
    assert maxdiff(s.dense() @ x, expected) <= TOL
    if train_eps:
        (grad,) = torch.autograd.grad((out * probe).sum(), s.eps)
        (expected_grad,) = torch.autograd.grad((expected * probe).sum(), conv.eps)
        assert abs(float(grad - expected_grad)) <= TOL
        assert grad.abs() > 0 and torch.isfinite(grad)


@given(g=graphs(single_self_loops=True), k=st.integers(1, 6), alpha=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_appnp_is_appnp(g: dict, k: int, alpha: float) -> None:
    """APPNP's Z^{k+1} = (1 − α)ÂZ^k + αZ⁰ is the Euler step (τ = 1) of the field with source
    weight μ = α: K such steps are APPNP(K, α) (one self-loop per node at most, see the GCN test)."""
    r = correspondence("APPNP").resolve(K=k, alpha=alpha)
    prop = APPNP(**r.layer_args)
    x = features(g, g["num_nodes"], 4)
    s = diffusivity("gcn", edge_index=g["edge_index"], num_nodes=g["num_nodes"], dtype=F64)
    out = euler(s, x, steps=r.steps, tau=r.tau, source_weight=r.source_weight)
    assert (r.steps, r.source_weight) == (k, alpha)
    assert maxdiff(out, prop(x, g["edge_index"])) <= TOL


@given(g=graphs(), heads=st.sampled_from([1, 4]), concat=st.booleans(), slope=st.sampled_from([0.2, 0.05]))
def test_gat_is_gatconv(g: dict, heads: int, concat: bool, slope: float) -> None:
    """One Euler step (τ = 1) of gat (concat=True) on Z⁰ = conv.lin(X), with the conv's attention
    vectors, plus the bias, is GATConv; duplicate edges and several self-loops included (both
    remove existing self-loops and add one per node).

    For GATConv(concat=False) the comparison is with the head mean of the concat step: GATConv
    averages the heads' outputs Σ_j S^h_ij z^h_j, and that average over channel blocks is a
    channel map applied after the step (it is not gat(concat=False), which propagates all
    channels with the averaged matrix (1/H) Σ_h S^h). The attention-vector gradients match
    PyG's, and a batched [B, N, d] state gives each batch element's result."""
    r = correspondence("GAT" if concat else "GAT (head mean)").resolve(heads=heads, negative_slope=slope)
    n, c = g["num_nodes"], 3
    conv = GATConv(5, c, **r.layer_args).to(F64)
    torch.nn.init.normal_(conv.bias)
    s = diffusivity("gat", edge_index=g["edge_index"], num_nodes=n, in_channels=heads * c, dtype=F64,
                    **r.diffusivity_params)
    with torch.no_grad():
        s.att_src.copy_(conv.att_src.view(heads, c))
        s.att_dst.copy_(conv.att_dst.view(heads, c))
    x = features(g, 2, n, 5)

    def readout(z: torch.Tensor) -> torch.Tensor:
        return (z if concat else z.unflatten(-1, (heads, c)).mean(-2)) + conv.bias

    z0 = conv.lin(x).detach()  # [2, N, H·C]
    out = readout(euler(s, z0[0], steps=r.steps, tau=r.tau, source_weight=r.source_weight))
    expected = conv(x[0], g["edge_index"])
    assert maxdiff(out, expected) <= TOL

    probe = features({"seed": g["seed"] + 1}, *out.shape)
    grads = torch.autograd.grad((out * probe).sum(), (s.att_src, s.att_dst))
    expected_grads = torch.autograd.grad((expected * probe).sum(), (conv.att_src, conv.att_dst))
    for grad, expected_grad in zip(grads, expected_grads):
        assert maxdiff(grad, expected_grad.view(heads, c)) <= TOL

    with torch.no_grad():
        batched = readout(euler(s, z0, steps=1, tau=1.0))
        assert maxdiff(batched, torch.stack([conv(xb, g["edge_index"]) for xb in x])) <= TOL


def sdpa_reference(s: object, z: torch.Tensor) -> torch.Tensor:
    """Multi-head attention by the oracle, with the diffusivity's own q, k and v = Z in heads."""
    heads, dk = s.heads, s.key_channels
    q = s.query(z).unflatten(-1, (heads, dk)).transpose(-3, -2)  # [..., H, N, d_k]
    k = s.key(z).unflatten(-1, (heads, dk)).transpose(-3, -2)
    if s.concat:
        v = z.unflatten(-1, (heads, -1)).transpose(-3, -2)  # [..., H, N, d/H]
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(-3, -2).flatten(-2)
    v = z.unsqueeze(-3).expand(*q.shape[:-1], z.shape[-1])  # the full Z as every head's value
    return torch.nn.functional.scaled_dot_product_attention(q, k, v).mean(-3)


@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 12),
    heads=st.sampled_from([1, 4]),
    key_channels=st.sampled_from([None, 3]),
    concat=st.booleans(),
    batch=st.sampled_from([(), (2,)]),
)
def test_transformer_is_sdpa(seed: int, n: int, heads: int, key_channels: int | None, concat: bool,
                             batch: tuple[int, ...]) -> None:
    """One Euler step (τ = 1) of transformer is scaled_dot_product_attention with q = Z W_qᵀ,
    k = Z W_kᵀ and v = Z split into heads (concat=False: the head mean with v = Z per head)."""
    r = correspondence("Transformer").resolve(heads=heads)
    torch.manual_seed(seed)
    s = diffusivity("transformer", in_channels=8, key_channels=key_channels, dtype=F64,
                    **{**r.diffusivity_params, "concat": concat})
    z0 = 2 * torch.randn(*batch, n, 8, dtype=F64)
    with torch.no_grad():
        out = euler(s, z0, steps=r.steps, tau=r.tau, source_weight=r.source_weight)
        assert maxdiff(out, sdpa_reference(s, z0)) <= TOL
        if not concat or heads == 1:
            assert maxdiff(s.dense(z0) @ z0, out) <= TOL


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
