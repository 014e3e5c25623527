r"""Message-passing layers as Euler steps of the diffusion: symbolic derivations and PyG oracles.

An explicit Euler step of size τ of dZ/dt = F(Z) = (1 − μ)(S Z − Z) + μ(Z⁰ − Z) is
Z^{k+1} = Z^k + τ F(Z^k); with τ = 1 it is (1 − μ) S Z^k + μ Z⁰. Two kinds of checks:

- ``correspondences.symbolic_<layer>`` (GCN, GIN, SGC, APPNP): with sympy, on a small fixed
  graph with symbolic node features (and symbolic ε, α), S is built as the diffusivity's
  definition says, K Euler steps are taken symbolically, and the result is compared entry by
  entry with the layer's textbook formula written node by node; every difference must simplify
  to 0. The symbolic S is also compared with the library's numeric ``dense()`` and the symbolic
  steps with the library's Euler solve, at a numeric point (so the derivation is about the code).
- ``correspondences.pyg_oracles``: every row of :data:`diffusion_pde.correspondences.correspondences`
  against its oracle (PyG's layer, ``nn.Linear``, ``scaled_dot_product_attention``) in float64 on
  random graphs with isolated nodes, duplicate edges and self-loops; max |diff| ≤ 1e-10.

The oracle comparisons (:data:`ORACLES`, ``compare_*``) are the single implementation that the
tests in ``tests/diffusion_pde/test_correspondences.py`` also call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from hypothesis import strategies as st
from torch_geometric.nn import APPNP, GATConv, GCNConv, GINConv, SGConv

import solvers
from diffusion_pde import DiffusionField, diffusivity
from diffusion_pde.correspondences import correspondence, correspondences

from ._registry import Outcome, Profile, check, for_all

__all__ = [
    "ORACLES",
    "TOL",
    "Comparison",
    "Oracle",
    "compare_appnp",
    "compare_gat",
    "compare_gcn",
    "compare_gin",
    "compare_mlp",
    "compare_sgc",
    "compare_transformer",
    "euler",
    "features",
    "graphs",
    "maxdiff",
    "sdpa_reference",
    "differing_entries",
    "symbolic_case",
    "symbolic_layer",
]

TOL = 1e-10
F64 = torch.float64


# ============================================================================================
# numeric helpers shared by the oracle comparisons


@st.composite
def graphs(draw: st.DrawFn, *, single_self_loops: bool = False, weighted: bool = False) -> dict:
    """A random directed graph with ≥ 1 isolated node, ≥ 1 duplicate edge and ≥ 1 self-loop.

    ``single_self_loops``: at most one self-loop per node (GCN/SGC/APPNP: PyG's
    ``add_remaining_self_loops`` keeps one weight of several loops, the library sums them).
    Returns ``{"edge_index", "num_nodes", "edge_weight" (None unless weighted), "seed"}``.
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
    """Standard-normal float64 features of ``shape`` from the graph's seed."""
    gen = torch.Generator().manual_seed(g["seed"])
    return torch.randn(*shape, generator=gen, dtype=F64)


def euler(s: object, z0: torch.Tensor, *, steps: int, tau: float, source_weight: float = 0.0) -> torch.Tensor:
    """K Euler steps of size τ of the diffusion field on S, through the public solver."""
    field_ = DiffusionField(s, source_weight=source_weight).set_initial_state(z0)
    return solvers.solve(field_, z0, t1=tau * steps, method="euler", n_steps=steps).final


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| (shapes must agree)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).detach().abs().max())


# ============================================================================================
# the PyG-oracle comparisons, one per row of the correspondence table


@dataclass
class Comparison:
    """One row run on both sides: ``diffs`` (name → max |diff|, each must be ≤ TOL) and
    ``facts`` (name → structural condition that must hold, e.g. the resolved step count)."""

    row: str
    diffs: dict[str, float]
    facts: dict[str, bool] = field(default_factory=dict)

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values())

    def problems(self, tol: float = TOL) -> list[str]:
        """What does not hold: differences above ``tol`` and false facts (empty when all match)."""
        bad = [f"{name}: max |diff| {value:.3e} > {tol:g}" for name, value in self.diffs.items() if not value <= tol]
        return bad + [f"{name} does not hold" for name, ok in self.facts.items() if not ok]


def compare_mlp(g: dict) -> Comparison:
    """S = I: the step returns Z⁰ = X Wᵀ; plus the bias it is ``nn.Linear(X)``."""
    r = correspondence("MLP").resolve()
    lin = _seeded(g, lambda: torch.nn.Linear(5, 3, dtype=F64))
    x = features(g, g["num_nodes"], 5)
    with torch.no_grad():
        z0 = x @ lin.weight.T
        out = euler(diffusivity("identity"), z0, steps=r.steps, tau=r.tau) + lin.bias
        return Comparison("MLP", {"output": maxdiff(out, lin(x))})


def compare_gcn(g: dict, weighted: bool) -> Comparison:
    """One Euler step (τ = 1) of gcn on Z⁰ = conv.lin(X), plus the bias, is GCNConv.

    At most one self-loop per node: with several, GCNConv (add_remaining_self_loops) keeps one of
    their weights whereas the library sums them, like every other duplicate edge."""
    r = correspondence("GCN").resolve()
    weight = g["edge_weight"] if weighted else None
    conv = _seeded(g, lambda: GCNConv(6, 4, **r.layer_args).to(F64))
    with torch.no_grad():
        conv.bias.copy_(features({"seed": g["seed"] + 2}, *conv.bias.shape))
    x = features(g, g["num_nodes"], 6)
    s = diffusivity("gcn", edge_index=g["edge_index"], num_nodes=g["num_nodes"], edge_weight=weight, dtype=F64)
    with torch.no_grad():
        out = euler(s, conv.lin(x), steps=r.steps, tau=r.tau, source_weight=r.source_weight) + conv.bias
        return Comparison("GCN", {"output": maxdiff(out, conv(x, g["edge_index"], weight))})


def compare_sgc(g: dict, k: int) -> Comparison:
    """K Euler steps (τ = 1) of gcn on Z⁰ = X with no channel map between them, then SGConv's
    linear map, is SGConv(K) (one self-loop per node at most, see :func:`compare_gcn`)."""
    r = correspondence("SGC").resolve(K=k)
    conv = _seeded(g, lambda: SGConv(6, 4, **r.layer_args).to(F64))
    x = features(g, g["num_nodes"], 6)
    s = diffusivity("gcn", edge_index=g["edge_index"], num_nodes=g["num_nodes"], dtype=F64)
    with torch.no_grad():
        out = conv.lin(euler(s, x, steps=r.steps, tau=r.tau, source_weight=r.source_weight))
        return Comparison("SGC", {"output": maxdiff(out, conv(x, g["edge_index"]))}, {"steps == K": r.steps == k})


def compare_gin(g: dict, eps: float, train_eps: bool) -> Comparison:
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
    result = Comparison("GIN", {"output": maxdiff(out, expected), "dense S @ X": maxdiff(s.dense() @ x, expected)})
    if train_eps:
        (grad,) = torch.autograd.grad((out * probe).sum(), s.eps)
        (expected_grad,) = torch.autograd.grad((expected * probe).sum(), conv.eps)
        result.diffs["d/dε"] = abs(float(grad - expected_grad))
        result.facts["d/dε non-zero and finite"] = bool(grad.abs() > 0 and torch.isfinite(grad))
    return result


def compare_appnp(g: dict, k: int, alpha: float) -> Comparison:
    """APPNP's Z^{k+1} = (1 − α)ÂZ^k + αZ⁰ is the Euler step (τ = 1) of the field with source
    weight μ = α: K such steps are APPNP(K, α) (one self-loop per node at most)."""
    r = correspondence("APPNP").resolve(K=k, alpha=alpha)
    prop = APPNP(**r.layer_args)
    x = features(g, g["num_nodes"], 4)
    s = diffusivity("gcn", edge_index=g["edge_index"], num_nodes=g["num_nodes"], dtype=F64)
    with torch.no_grad():
        out = euler(s, x, steps=r.steps, tau=r.tau, source_weight=r.source_weight)
        return Comparison("APPNP", {"output": maxdiff(out, prop(x, g["edge_index"]))},
                          {"(steps, μ) == (K, α)": (r.steps, r.source_weight) == (k, alpha)})


def compare_gat(g: dict, heads: int, concat: bool, slope: float) -> Comparison:
    """One Euler step (τ = 1) of gat (concat=True) on Z⁰ = conv.lin(X), with the conv's attention
    vectors, plus the bias, is GATConv; duplicate edges and several self-loops included (both
    remove existing self-loops and add one per node).

    For GATConv(concat=False) the comparison is with the head mean of the concat step: GATConv
    averages the heads' outputs Σ_j S^h_ij z^h_j, and that average over channel blocks is a
    channel map applied after the step (it is not gat(concat=False), which propagates all
    channels with the averaged matrix (1/H) Σ_h S^h). The attention-vector gradients are
    compared with PyG's, and a batched [B, N, d] state with each batch element's result."""
    row = "GAT" if concat else "GAT (head mean)"
    r = correspondence(row).resolve(heads=heads, negative_slope=slope)
    n, c = g["num_nodes"], 3
    conv = _seeded(g, lambda: GATConv(5, c, **r.layer_args).to(F64))
    with torch.no_grad():
        conv.bias.copy_(features({"seed": g["seed"] + 2}, *conv.bias.shape))
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
    result = Comparison(row, {"output": maxdiff(out, expected)})

    probe = features({"seed": g["seed"] + 1}, *out.shape)
    grads = torch.autograd.grad((out * probe).sum(), (s.att_src, s.att_dst))
    expected_grads = torch.autograd.grad((expected * probe).sum(), (conv.att_src, conv.att_dst))
    for name, grad, expected_grad in zip(("d/d att_src", "d/d att_dst"), grads, expected_grads):
        result.diffs[name] = maxdiff(grad, expected_grad.view(heads, c))

    with torch.no_grad():
        batched = readout(euler(s, z0, steps=1, tau=1.0))
        result.diffs["batched [B, N, d]"] = maxdiff(batched, torch.stack([conv(xb, g["edge_index"]) for xb in x]))
    return result


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


def compare_transformer(seed: int, n: int, heads: int, key_channels: int | None, concat: bool,
                        batch: tuple[int, ...]) -> Comparison:
    """One Euler step (τ = 1) of transformer is scaled_dot_product_attention with q = Z W_qᵀ,
    k = Z W_kᵀ and v = Z split into heads (concat=False: the head mean with v = Z per head)."""
    r = correspondence("Transformer").resolve(heads=heads)
    s = _seeded({"seed": seed}, lambda: diffusivity("transformer", in_channels=8, key_channels=key_channels, dtype=F64,
                                                     **{**r.diffusivity_params, "concat": concat}))
    z0 = 2 * features({"seed": seed}, *batch, n, 8)
    with torch.no_grad():
        out = euler(s, z0, steps=r.steps, tau=r.tau, source_weight=r.source_weight)
        result = Comparison("Transformer", {"output": maxdiff(out, sdpa_reference(s, z0))})
        if not concat or heads == 1:
            result.diffs["dense S @ Z"] = maxdiff(s.dense(z0) @ z0, out)
        return result


def _seeded(g: dict, make: Callable[[], Any]) -> Any:
    """``make()`` with torch's global generator seeded from the example (restored afterwards),
    so the oracle layers' initial weights are a function of the example."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(g["seed"] % 2**63)
        return make()




@dataclass(frozen=True)
class Oracle:
    """How to check one correspondence row: ``compare(**case)`` for ``case`` drawn from ``cases``."""

    row: str
    compare: Callable[..., Comparison]
    cases: st.SearchStrategy

    def run(self, case: dict[str, Any]) -> Comparison:
        return self.compare(**case)


def _cases(**strategies: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(strategies)


_GAT_CASE = {"g": graphs(), "heads": st.sampled_from([1, 4]), "slope": st.sampled_from([0.2, 0.05])}

ORACLES: dict[str, Oracle] = {
    oracle.row: oracle
    for oracle in (
        Oracle("MLP", compare_mlp, _cases(g=graphs())),
        Oracle("GCN", compare_gcn, _cases(g=graphs(single_self_loops=True, weighted=True), weighted=st.booleans())),
        Oracle("SGC", compare_sgc, _cases(g=graphs(single_self_loops=True), k=st.integers(1, 3))),
        Oracle("GIN", compare_gin, _cases(g=graphs(), eps=st.sampled_from([0.0, 0.5, -0.3, -1.0, 2.0]),
                                          train_eps=st.booleans())),
        Oracle("APPNP", compare_appnp, _cases(g=graphs(single_self_loops=True), k=st.integers(1, 6),
                                              alpha=st.sampled_from([0.0, 0.1, 0.5, 1.0]))),
        Oracle("GAT", compare_gat, _cases(**_GAT_CASE, concat=st.just(True))),
        Oracle("GAT (head mean)", compare_gat, _cases(**_GAT_CASE, concat=st.just(False))),
        Oracle("Transformer", compare_transformer, _cases(
            seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), heads=st.sampled_from([1, 4]),
            key_channels=st.sampled_from([None, 3]), concat=st.booleans(), batch=st.sampled_from([(), (2,)]))),
    )
}
"""The oracle of every row of :data:`diffusion_pde.correspondences.correspondences`, by row name."""

@check(
    "correspondences.pyg_oracles",
    "correspondences",
    "Every row of the correspondence table (MLP, GCN, SGC, GIN, APPNP, GAT with 1 and 4 heads and its head "
    "mean, transformer) equals its oracle (torch.nn.Linear, GCNConv, SGConv, GINConv, APPNP, GATConv, "
    "scaled_dot_product_attention) under the same weights in float64 on random graphs with isolated nodes, "
    "duplicate edges and self-loops (outputs and, where trainable, gradients): max |diff| <= 1e-10.",
)
def pyg_oracles(profile: Profile) -> Outcome:
    worst: dict[str, float] = {}
    failures: dict[str, Any] = {}
    missing = [row.name for row in correspondences if row.name not in ORACLES]
    for row in correspondences:
        if row.name not in ORACLES:
            continue
        oracle = ORACLES[row.name]
        worst[row.name] = 0.0

        def prop(case: dict[str, Any], oracle: Oracle = oracle) -> None:
            result = oracle.run(case)
            worst[oracle.row] = max(worst[oracle.row], result.max_diff)
            problems = result.problems()
            assert not problems, "; ".join(problems)

        failure = for_all(oracle.cases, prop, profile)
        if failure is not None:
            failures[row.name] = failure
    value = max(worst.values(), default=float("nan"))
    details: dict[str, Any] = {"max |diff| per row": {k: float(f"{v:.3e}") for k, v in worst.items()}}
    if missing:
        details["rows without an oracle"] = missing
    details.update(failures)
    passed = not failures and not missing and value <= TOL
    return Outcome(passed, f"max |diff| {value:.2e} over {len(worst)} rows (tolerance {TOL:g})", value, details)


# ============================================================================================
# symbolic derivations (sympy)


def _sympy():  # imported lazily: the numeric oracle comparisons do not need it
    import sympy

    return sympy


@dataclass(frozen=True)
class SymbolicGraph:
    """A small fixed graph: ``edges`` as (source j, target i) pairs (PyG's message direction) with
    optional ``weights`` (names of positive symbols, one per edge; an undirected edge's two
    directions share one name). Unweighted edges have weight 1."""

    num_nodes: int
    edges: tuple[tuple[int, int], ...]
    weights: tuple[str, ...] | None = None

    def weight(self, e: int):
        sp = _sympy()
        return sp.Integer(1) if self.weights is None else sp.Symbol(self.weights[e], positive=True)

    def symbols(self) -> dict[str, Any]:
        return {str(self.weight(e)): self.weight(e) for e in range(len(self.edges)) if self.weights is not None}

    def adjacency(self):
        """A with A[i, j] = Σ of the weights of the edges j → i (a sympy Matrix)."""
        sp = _sympy()
        a = sp.zeros(self.num_nodes, self.num_nodes)
        for e, (j, i) in enumerate(self.edges):
            a[i, j] += self.weight(e)
        return a

    def in_edges(self, i: int) -> list[tuple[int, Any]]:
        """[(j, w_ji)] for the edges into i, with multiplicity (a self-loop lists i itself)."""
        return [(j, self.weight(e)) for e, (j, target) in enumerate(self.edges) if target == i]

    def edge_index(self) -> torch.Tensor:
        return torch.tensor(self.edges, dtype=torch.long).t().contiguous()


def _undirected(*pairs: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(e for a, b in pairs for e in ((a, b), (b, a)))


# GCN/SGC/APPNP: the undirected path 0 – 1 – 2 with symbolic edge weights w01, w12 and an isolated node 3
# (d̃ = 1 + w01, 1 + w01 + w12, 1 + w12, 1 with the added unit self-loops; A has no self-loops, as gcn adds
# them only where missing, so Ã = A + I exactly).
GCN_GRAPH = SymbolicGraph(4, _undirected((0, 1), (1, 2)), ("w01", "w01", "w12", "w12"))
# GIN: directed edges, a self-loop on node 1 (GIN counts it as an ordinary edge) and an isolated node 3.
GIN_GRAPH = SymbolicGraph(4, ((0, 1), (1, 0), (2, 1), (0, 2), (1, 1)))
SYMBOLIC_CHANNELS = 2
SYMBOLIC_LAYERS = ("GCN", "GIN", "SGC", "APPNP")


def _features(num_nodes: int):
    sp = _sympy()
    return sp.Matrix(num_nodes, SYMBOLIC_CHANNELS, lambda i, c: sp.Symbol(f"x_{i}{c}", real=True))


def euler_steps_symbolic(s, z0, steps: int, tau, mu):
    """K Euler steps Z ← Z + τ[(1 − μ)(S Z − Z) + μ(Z⁰ − Z)] of the diffusion, symbolically."""
    z = z0
    for _ in range(steps):
        z = z + tau * ((1 - mu) * (s * z - z) + mu * (z0 - z))
    return z


def gcn_matrix_symbolic(graph: SymbolicGraph):
    """The diffusivity's definition: S = D̃^{-1/2} (A + I) D̃^{-1/2}, D̃ = diag of the row sums of A + I."""
    sp = _sympy()
    a_tilde = graph.adjacency() + sp.eye(graph.num_nodes)
    d_inv_sqrt = sp.diag(*[1 / sp.sqrt(sum(a_tilde.row(i))) for i in range(graph.num_nodes)])
    return d_inv_sqrt * a_tilde * d_inv_sqrt


def gcn_textbook(graph: SymbolicGraph, h):
    """Kipf & Welling node by node: h_i' = Σ_{j ∈ N(i) ∪ {i}} ã_ij h_j / √(d̃_i d̃_j), with ã_ii = 1 and
    d̃_i = 1 + Σ_{j ∈ N(i)} a_ij."""
    sp = _sympy()
    n = graph.num_nodes
    neighbours = [[*graph.in_edges(i), (i, sp.Integer(1))] for i in range(n)]
    deg = [sum(w for _, w in neighbours[i]) for i in range(n)]
    return sp.Matrix.vstack(*[
        sum((w * h.row(j) / sp.sqrt(deg[i] * deg[j]) for j, w in neighbours[i]), sp.zeros(1, h.cols))
        for i in range(n)
    ])


def gin_textbook(graph: SymbolicGraph, x, eps):
    """Xu et al. node by node: x_i' = (1 + ε) x_i + Σ_{j ∈ N(i)} x_j."""
    sp = _sympy()
    return sp.Matrix.vstack(*[
        (1 + eps) * x.row(i) + sum((x.row(j) for j, _ in graph.in_edges(i)), sp.zeros(1, x.cols))
        for i in range(graph.num_nodes)
    ])


@dataclass
class SymbolicCase:
    """One derivation: K Euler steps (``diffusion``) and the ``textbook`` layer, both sympy matrices,
    with what is needed to rerun the diffusion side in the library at a numeric point."""

    layer: str
    diffusion: Any
    textbook: Any
    matrix: Any
    graph: SymbolicGraph
    steps: int
    source_weight: Any
    library_name: str
    library_params: dict[str, Any]
    symbols: dict[str, Any]


def symbolic_case(layer: str) -> SymbolicCase:
    """The derivation for ``layer`` ∈ {GCN, GIN, SGC, APPNP} (τ = 1; SGC and APPNP with K = 2)."""
    sp = _sympy()
    one, zero = sp.Integer(1), sp.Integer(0)
    if layer == "GIN":
        graph, eps = GIN_GRAPH, sp.Symbol("epsilon", real=True)
        x = _features(graph.num_nodes)
        s = graph.adjacency() + (1 + eps) * sp.eye(graph.num_nodes)  # S = A + (1 + ε) I
        return SymbolicCase(layer, euler_steps_symbolic(s, x, 1, one, zero), gin_textbook(graph, x, eps), s, graph,
                            1, zero, "gin", {"eps": eps}, {"epsilon": eps})
    graph = GCN_GRAPH
    x = _features(graph.num_nodes)
    s = gcn_matrix_symbolic(graph)
    weights = graph.symbols()
    if layer == "GCN":
        return SymbolicCase(layer, euler_steps_symbolic(s, x, 1, one, zero), gcn_textbook(graph, x), s, graph, 1,
                            zero, "gcn", {}, weights)
    if layer == "SGC":  # K = 2: Â² X
        textbook = gcn_textbook(graph, gcn_textbook(graph, x))
        return SymbolicCase(layer, euler_steps_symbolic(s, x, 2, one, zero), textbook, s, graph, 2, zero, "gcn", {},
                            weights)
    if layer == "APPNP":  # K = 2: H^{k+1} = (1 − α) Â H^k + α H⁰
        alpha = sp.Symbol("alpha", real=True)
        h = x
        for _ in range(2):
            h = (1 - alpha) * gcn_textbook(graph, h) + alpha * x
        return SymbolicCase(layer, euler_steps_symbolic(s, x, 2, one, alpha), h, s, graph, 2, alpha, "gcn", {},
                            {**weights, "alpha": alpha})
    raise ValueError(f"no symbolic derivation for {layer!r}; layers: {', '.join(SYMBOLIC_LAYERS)}")


def differing_entries(a, b) -> dict[str, str]:
    """The entries of two sympy matrices whose difference does not simplify to 0 (name → difference)."""
    sp = _sympy()
    if a.shape != b.shape:
        return {"shape": f"{a.shape} != {b.shape}"}
    out = {}
    for i in range(a.rows):
        for c in range(a.cols):
            # expand first (an algebraic identity; here it already gives a sum of monomials in the
            # symbols and radicals, cheaply), then simplify what is left: 100x faster on APPNP
            difference = sp.simplify(sp.expand(a[i, c] - b[i, c]))
            if difference != 0:
                out[f"[{i},{c}]"] = str(difference)
    return out


def symbolic_layer(layer: str, numeric_point: int = 0) -> Outcome:
    """Check that K symbolic Euler steps (τ = 1) equal the textbook formula of ``layer``.

    Passes when ``sympy.simplify(diffusion − textbook) == 0`` for every entry, and the symbolic S
    equals the library's ``dense()`` and the symbolic steps the library's Euler solve at a
    numeric point (features, weights, ε, α) drawn from ``numeric_point`` (each to 1e-12)."""
    sp = _sympy()
    case = symbolic_case(layer)
    differing = differing_entries(case.diffusion, case.textbook)
    total = case.diffusion.rows * case.diffusion.cols

    # the diffusion side again, in the library, at a numeric point
    gen = torch.Generator().manual_seed(numeric_point)
    values = {name: float(torch.empty((), dtype=F64).uniform_(0.1, 0.9, generator=gen)) for name in case.symbols}
    x_num = torch.randn(case.graph.num_nodes, SYMBOLIC_CHANNELS, generator=gen, dtype=F64)
    subs = {case.symbols[name]: value for name, value in values.items()}
    subs.update({sym: float(x_num[i, c]) for (i, c), sym in
                 zip(((i, c) for i in range(x_num.shape[0]) for c in range(x_num.shape[1])),
                     _features(case.graph.num_nodes))})
    edge_weight = None
    if case.graph.weights is not None:
        edge_weight = torch.tensor([float(case.graph.weight(e).subs(subs)) for e in range(len(case.graph.edges))],
                                   dtype=F64)
    params = {name: float(value.subs(subs)) for name, value in case.library_params.items()}
    lib = diffusivity(case.library_name, edge_index=case.graph.edge_index(), num_nodes=case.graph.num_nodes,
                      edge_weight=edge_weight, dtype=F64, **params)
    numeric = lambda m: torch.tensor(sp.matrix2numpy(m.subs(subs), dtype=float))  # noqa: E731
    matrix_diff = maxdiff(lib.dense(), numeric(case.matrix))
    mu = float(case.source_weight.subs(subs))
    steps_diff = maxdiff(euler(lib, x_num, steps=case.steps, tau=1.0, source_weight=mu), numeric(case.diffusion))

    identical = total - len(differing)
    details: dict[str, Any] = {
        "graph edges (source, target)": list(case.graph.edges),
        "num_nodes": case.graph.num_nodes,
        "symbols": sorted(case.symbols) + ["x_ic (node features)"],
        "Euler steps": case.steps,
        "library S vs symbolic S at a numeric point": matrix_diff,
        "library Euler solve vs symbolic steps at a numeric point": steps_diff,
    }
    if differing:
        details["entries whose difference does not simplify to 0"] = differing
    passed = not differing and matrix_diff <= 1e-12 and steps_diff <= 1e-12
    return Outcome(passed, f"{identical}/{total} entries identical (library at a numeric point: "
                           f"{max(matrix_diff, steps_diff):.1e})", float(identical), details)


@check("correspondences.symbolic_gcn", "correspondences",
       "One Euler step (tau = 1, mu = 0) of dZ/dt = S Z - Z with S = D^{-1/2}(A + I)D^{-1/2} is the GCN layer "
       "x_i' = sum_{j in N(i) + i} a_ij x_j / sqrt(d_i d_j), identically in symbolic features and edge "
       "weights (sympy), on a graph with an isolated node.")
def symbolic_gcn(profile: Profile) -> Outcome:
    return symbolic_layer("GCN")


@check("correspondences.symbolic_gin", "correspondences",
       "One Euler step (tau = 1, mu = 0) with S = A + (1 + eps) I is the GIN aggregation "
       "(1 + eps) x_i + sum_{j in N(i)} x_j, identically in symbolic features and eps (sympy), on a directed "
       "graph with a self-loop and an isolated node.")
def symbolic_gin(profile: Profile) -> Outcome:
    return symbolic_layer("GIN")


@check("correspondences.symbolic_sgc", "correspondences",
       "K = 2 Euler steps (tau = 1, mu = 0) with the GCN matrix A_hat and no channel map between them are "
       "SGC's A_hat^2 X, identically in symbolic features and edge weights (sympy).")
def symbolic_sgc(profile: Profile) -> Outcome:
    return symbolic_layer("SGC")


@check("correspondences.symbolic_appnp", "correspondences",
       "K = 2 Euler steps (tau = 1) with source weight mu = alpha and the GCN matrix A_hat are APPNP's "
       "H^{k+1} = (1 - alpha) A_hat H^k + alpha H^0, identically in symbolic features, edge weights and "
       "alpha (sympy).")
def symbolic_appnp(profile: Profile) -> Outcome:
    return symbolic_layer("APPNP")
