"""The fixed graph diffusivities ``gcn`` and ``random_walk`` against an independent numpy
construction, their operator properties, and graph-input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from diffusion_pde import available_diffusivities, diffusivity




NAMES = ["gcn", "random_walk"]


# --------------------------------------------------------------------------- numpy oracle


def dense_with_loops(edge_index: np.ndarray, num_nodes: int, weight: np.ndarray | None) -> np.ndarray:
    """Ã: entry (target i, source j) = summed weights of edges j → i, plus a unit self-loop on
    each node that has no self-loop in the edge list."""
    src, dst = edge_index
    w = np.ones(src.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    a = np.zeros((num_nodes, num_nodes))
    for j, i, wij in zip(src, dst, w):
        a[i, j] += wij
    has_loop = {int(j) for j, i in zip(src, dst) if j == i}
    for k in range(num_nodes):
        if k not in has_loop:
            a[k, k] += 1.0
    return a


def oracle(name: str, edge_index: np.ndarray, num_nodes: int, weight: np.ndarray | None) -> np.ndarray:
    a = dense_with_loops(edge_index, num_nodes, weight)
    deg = a.sum(axis=1)
    if name == "gcn":
        # PyG's gcn_norm convention: a node of degree 0 gets 1/sqrt(0) := 0.
        safe = np.where(deg > 0, deg, 1.0)
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(safe), 0.0)
        return inv_sqrt[:, None] * a * inv_sqrt[None, :]
    if name == "random_walk":
        return a / deg[:, None]
    raise AssertionError(name)


def random_directed_graph(seed: int, num_nodes: int = 12, num_edges: int = 40, weighted: bool = False):
    """Directed edges among the first num_nodes - 3 nodes (the last three are isolated), with
    deliberate duplicates and a few existing self-loops (at most one per node)."""
    rng = np.random.default_rng(seed)
    active = num_nodes - 3
    src = rng.integers(0, active, num_edges)
    dst = rng.integers(0, active, num_edges)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    src = np.concatenate([src, src[:5], [0, 2, 4]])  # 5 duplicate edges, 3 self-loops
    dst = np.concatenate([dst, dst[:5], [0, 2, 4]])
    edge_index = np.stack([src, dst])
    weight = rng.uniform(0.2, 3.0, edge_index.shape[1]) if weighted else None
    return edge_index, weight


def build(name: str, edge_index: np.ndarray, num_nodes: int, weight: np.ndarray | None, dtype=torch.float64):
    kwargs = {"edge_index": torch.as_tensor(edge_index, dtype=torch.long), "num_nodes": num_nodes, "dtype": dtype}
    if weight is not None:
        kwargs["edge_weight"] = torch.as_tensor(weight, dtype=torch.float64)
    return diffusivity(name, **kwargs)


# --------------------------------------------------------------------------- dense matrix


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_matches_numpy_construction(name, weighted, seed):
    n = 12
    edge_index, weight = random_directed_graph(seed, num_nodes=n, weighted=weighted)
    op = build(name, edge_index, n, weight)
    s = op.dense()
    assert s.shape == (n, n) and s.dtype == torch.float64
    expected = oracle(name, edge_index, n, weight)
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-13, atol=1e-15)
    # Isolated nodes only keep their own state.
    for k in (n - 3, n - 2, n - 1):
        assert s[k, k] == 1.0 and s[k].abs().sum() == 1.0 and s[:, k].abs().sum() == 1.0


def test_orientation_target_row_source_column():
    # A single edge 0 -> 1: node 1 (target) receives from node 0 (source); node 0 receives nothing.
    edge_index = torch.tensor([[0], [1]])
    s = diffusivity("random_walk", edge_index=edge_index, num_nodes=2, dtype=torch.float64).dense()
    torch.testing.assert_close(s, torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64))
    z = torch.tensor([[10.0], [0.0]], dtype=torch.float64)
    out = diffusivity("gcn", edge_index=edge_index, num_nodes=2, dtype=torch.float64)(z)
    assert out[0, 0] == pytest.approx(10.0)  # deg 1: node 0 only sees itself
    assert out[1, 0] == pytest.approx(10.0 / np.sqrt(2.0))  # 1/sqrt(d_1 d_0) * z_0


def test_existing_self_loop_keeps_its_weight():
    edge_index = torch.tensor([[0, 1, 0], [0, 0, 1]])
    weight = torch.tensor([3.0, 1.0, 1.0], dtype=torch.float64)
    s = diffusivity("random_walk", edge_index=edge_index, num_nodes=2, edge_weight=weight, dtype=torch.float64)
    # Row 0: loop weight 3 (not 3 + 1) and edge 1 -> 0 of weight 1: [3/4, 1/4].
    torch.testing.assert_close(s.dense()[0], torch.tensor([0.75, 0.25], dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_zero_weight_self_loop_on_node_without_in_edges_stays_finite(name):
    """Node 0 has a zero-weight self-loop and no other incoming edge, so its degree is 0 (an
    explicit loop suppresses the unit one). The operator must stay finite (PyG's gcn_norm maps
    1/sqrt(0) to 0) or be refused with a clear error, never hold NaN/Inf."""
    edge_index = torch.tensor([[0, 0, 1], [0, 1, 2]])
    weight = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    try:
        op = diffusivity(name, edge_index=edge_index, num_nodes=3, edge_weight=weight, dtype=torch.float64)
    except ValueError as err:
        assert "degree" in str(err) or "edge_weight" in str(err)
        return
    assert torch.isfinite(op.dense()).all(), op.dense()
    z = torch.ones(3, 2, dtype=torch.float64)
    assert torch.isfinite(op(z)).all()
    if name == "gcn":
        # Same matrix as PyG's gcn_norm: node 0's row and column are zero.
        expected = oracle("gcn", edge_index.numpy(), 3, weight.numpy())
        assert expected[0].sum() == 0 and expected[:, 0].sum() == 0
        np.testing.assert_allclose(op.dense().numpy(), expected, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_equals_dense_product(name, dtype):
    n = 12
    edge_index, weight = random_directed_graph(5, num_nodes=n, weighted=True)
    op = build(name, edge_index, n, weight, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, 3, generator=gen, dtype=torch.float64).to(dtype)
    zb = torch.randn(4, n, 3, generator=gen, dtype=torch.float64).to(dtype)
    s = torch.from_numpy(oracle(name, edge_index, n, weight)).to(dtype)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    out = op(z)
    assert out.shape == z.shape and out.dtype == dtype
    torch.testing.assert_close(out, op.dense() @ z, **tol)
    torch.testing.assert_close(out, s @ z, **tol)
    outb = op(zb)
    assert outb.shape == zb.shape
    torch.testing.assert_close(outb, s @ zb, **tol)
    for b in range(zb.shape[0]):
        torch.testing.assert_close(outb[b], op(zb[b]), **tol)
    # values= applies S to another tensor of the same node count.
    v = torch.randn(n, 5, generator=gen, dtype=torch.float64).to(dtype)
    torch.testing.assert_close(op(z, values=v), s @ v, **tol)


@pytest.mark.parametrize("seed", [0, 3])
def test_random_walk_rows_sum_to_one(seed):
    n = 12
    edge_index, weight = random_directed_graph(seed, num_nodes=n, weighted=True)
    s = build("random_walk", edge_index, n, weight).dense()
    torch.testing.assert_close(s.sum(dim=1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-14)
    assert (s >= 0).all()
    # Constants are fixed points.
    const = torch.full((n, 2), 2.5, dtype=torch.float64)
    op = build("random_walk", edge_index, n, weight)
    torch.testing.assert_close(op(const), const, rtol=0, atol=1e-14)


def test_gcn_symmetric_on_undirected_graph():
    rng = np.random.default_rng(4)
    upper = np.argwhere(np.triu(rng.random((10, 10)) < 0.3, k=1))
    edge_index = np.concatenate([upper.T, upper.T[::-1]], axis=1)
    s = build("gcn", edge_index, 10, None).dense()
    torch.testing.assert_close(s, s.T)
    eig = torch.linalg.eigvalsh(s)
    assert eig.max() <= 1 + 1e-12 and eig.min() > -1


@st.composite
def graphs(draw):
    n = draw(st.integers(min_value=1, max_value=8))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=20))
    weighted = draw(st.booleans())
    weights = (
        draw(st.lists(st.floats(0.1, 5.0), min_size=len(pairs), max_size=len(pairs))) if weighted else None
    )
    return n, pairs, weights


@given(
    graph=graphs(),
    name=st.sampled_from(NAMES),
    seed=st.integers(0, 2**16),
    coeffs=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
    data=st.data(),
)
def test_linear_and_permutation_equivariant(graph, name, seed, coeffs, data):
    n, pairs, weights = graph
    edge_index = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    weight = None if weights is None else np.array(weights)
    op = build(name, edge_index, n, weight)
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    z2 = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    a, b = coeffs

    # Linear: S(a z1 + b z2) = a S z1 + b S z2.
    torch.testing.assert_close(op(a * z1 + b * z2), a * op(z1) + b * op(z2), rtol=1e-12, atol=1e-12)

    # Equivariant: relabel node k as perm[k]; the output is relabelled the same way.
    perm = np.array(data.draw(st.permutations(range(n))), dtype=np.int64)
    permuted = build(name, perm[edge_index], n, weight)
    z1_permuted = torch.empty_like(z1)
    z1_permuted[torch.from_numpy(perm)] = z1
    out_permuted = permuted(z1_permuted)
    torch.testing.assert_close(out_permuted[torch.from_numpy(perm)], op(z1), rtol=1e-12, atol=1e-12)

    # And the matrix itself matches the oracle on these small arbitrary graphs.
    np.testing.assert_allclose(op.dense().numpy(), oracle(name, edge_index, n, weight), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- errors

EDGES = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 3]])


@pytest.mark.parametrize("name", NAMES)
def test_edge_index_transposed_rejected(name):
    with pytest.raises(ValueError, match=r"edge_index.*\[2, E\]"):
        diffusivity(name, edge_index=EDGES.t().contiguous(), num_nodes=4)


@pytest.mark.parametrize("name", NAMES)
def test_edge_index_one_dimensional_rejected(name):
    with pytest.raises(ValueError, match=r"edge_index.*shape"):
        diffusivity(name, edge_index=EDGES.flatten(), num_nodes=4)


@pytest.mark.parametrize("name", NAMES)
def test_float_edge_index_rejected(name):
    with pytest.raises(TypeError, match=r"edge_index.*(?i:long|integer)"):
        diffusivity(name, edge_index=EDGES.double(), num_nodes=4)


@pytest.mark.parametrize("name", NAMES)
def test_non_tensor_edge_index_rejected(name):
    with pytest.raises(TypeError, match="edge_index"):
        diffusivity(name, edge_index=[[0, 1], [1, 0]], num_nodes=2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-1, 4, 10])
def test_node_index_out_of_range_rejected(name, bad):
    edges = EDGES.clone()
    edges[1, 2] = bad
    with pytest.raises(ValueError, match=r"edge_index.*num_nodes"):
        diffusivity(name, edge_index=edges, num_nodes=4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_nodes", [0, -3])
def test_non_positive_num_nodes_rejected(name, num_nodes):
    with pytest.raises(ValueError, match="num_nodes"):
        diffusivity(name, edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=num_nodes)


@pytest.mark.parametrize("name", NAMES)
def test_missing_graph_rejected(name):
    with pytest.raises(ValueError, match=r"(?i)graph.*edge_index|edge_index.*graph"):
        diffusivity(name)


def test_unknown_diffusivity_lists_valid_names():
    with pytest.raises(ValueError, match=r"(?s)unknown.*'?gcn'?") as info:
        diffusivity("gcnn", edge_index=EDGES, num_nodes=4)
    assert "random_walk" in str(info.value) and "identity" in str(info.value)
    assert set(NAMES) <= set(available_diffusivities())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3), (4,), (1, 2, 4, 3)])
def test_state_with_wrong_shape_rejected(name, shape):
    op = diffusivity(name, edge_index=EDGES, num_nodes=4)
    with pytest.raises(ValueError, match=r"\bz\b.*N.*4"):
        op(torch.ones(shape))


@pytest.mark.parametrize("name", NAMES)
def test_dtype_mismatch_rejected_with_hint(name):
    op = diffusivity(name, edge_index=EDGES, num_nodes=4)  # float32 by default
    with pytest.raises(TypeError, match=r"(?s)float64.*float32.*\.to\("):
        op(torch.ones(4, 2, dtype=torch.float64))
    # The suggested fix works.
    out = op.to(torch.float64)(torch.ones(4, 2, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_edge_weight_values_rejected(name, bad):
    weight = torch.ones(EDGES.shape[1], dtype=torch.float64)
    weight[2] = bad
    with pytest.raises(ValueError, match="edge_weight"):
        diffusivity(name, edge_index=EDGES, num_nodes=4, edge_weight=weight)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(4,), (6,), (5, 1), (1, 5)])
def test_edge_weight_wrong_shape_rejected(name, shape):
    with pytest.raises(ValueError, match=r"edge_weight.*shape"):
        diffusivity(name, edge_index=EDGES, num_nodes=4, edge_weight=torch.ones(shape, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_integer_edge_weight_rejected(name):
    with pytest.raises(TypeError, match="edge_weight"):
        diffusivity(name, edge_index=EDGES, num_nodes=4, edge_weight=torch.ones(5, dtype=torch.long))
