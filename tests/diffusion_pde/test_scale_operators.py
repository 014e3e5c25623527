"""The full-graph fast paths against plain references (docs/scale.md, "Full-graph speed and memory"):

- the graph operator's CSR pair (S, Sᵀ) from one sort, ``coalesce``, unit weights without memory,
  against dense matrices built entry by entry (unsorted edges, duplicates, loops, weights, none);
- ``spmm`` as a row gather (``embedding_bag``) against dense products, forward and backward,
  batched, 16-bit, CSR row blocks; ``spmm_add_`` (out += α S V by row blocks) likewise;
- ``DiffusionField.euler_step`` (fused, in place) against z + h·field(t, z), values and gradients;
- ``MaskedDropout`` against its restated formula bit for bit under the same seed (and its keep rate), and the encoder's
  dropout-then-ReLU against ReLU-then-dropout;
- DIFFormer-s with global norms in its gram form (queries and keys never formed) against a
  brute-force N×N attention, values and gradients of z, the values and every parameter.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch_geometric.utils import add_self_loops, to_undirected

from diffusion_pde import DiffusionField, diffusivity
from diffusion_pde import graph as graph_module
from diffusion_pde.graph import as_graph, coalesce, csr_matrix, csr_pair, csr_transpose, has_unit_weights, \
    in_degree, spmm, spmm_add_
from diffusion_pde.models import ModelConfig, Propagation, build_model
from diffusion_pde.models import dropout as dropout_module
from diffusion_pde.models.classifier import OwnedLayerNorm
from diffusion_pde.models.dropout import MaskedDropout, keep_mask

F64 = torch.float64


def dense_reference(edge_index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """S[target, source] += value, edge by edge (float64)."""
    out = torch.zeros(n, n, dtype=F64)
    out.index_put_((edge_index[1], edge_index[0]), values.double(), accumulate=True)
    return out


def edge_sets(seed: int):
    """(edge_index, edge_weight or None, num_nodes): unsorted with duplicates and loops; PyG's
    coalesced undirected order, also with loops appended; weighted; no edges."""
    gen = torch.Generator().manual_seed(seed)
    n = 11
    raw = torch.randint(0, n, (2, 40), generator=gen)
    undirected = to_undirected(raw, num_nodes=n)
    yield raw, None, n
    yield undirected, None, n
    yield add_self_loops(undirected, num_nodes=n)[0], None, n
    yield raw, torch.rand(raw.shape[1], generator=gen, dtype=F64), n
    yield torch.zeros(2, 0, dtype=torch.long), None, n


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.float16])
def test_csr_pair_is_the_matrix_and_its_transpose(seed: int, dtype: torch.dtype) -> None:
    for edge_index, weight, n in edge_sets(seed):
        g = as_graph(edge_index, num_nodes=n, edge_weight=weight)
        values = torch.rand(g.num_edges, generator=torch.Generator().manual_seed(seed), dtype=F64)
        matrix, transpose = csr_pair(g, values, dtype)
        reference = dense_reference(g.edge_index, values, n).to(dtype)
        assert matrix.dtype == dtype and matrix.crow_indices().dtype == torch.int32
        assert torch.allclose(matrix.to_dense().double(), reference.double(), rtol=1e-3 if dtype == torch.float16 else 1e-12)
        assert torch.equal(transpose.to_dense(), matrix.to_dense().T)
        assert (transpose is matrix) == torch.equal(matrix.to_dense(), matrix.to_dense().T)
        for m in (matrix, transpose):  # sorted, coalesced CSR: strictly increasing columns per row
            crow, col = m.crow_indices().long(), m.col_indices().long()
            rows = torch.repeat_interleave(torch.arange(n), crow.diff())
            keys = rows * n + col
            assert bool((keys[1:] > keys[:-1]).all())
        single = csr_matrix(g, values)
        assert torch.allclose(single.to_dense(), dense_reference(g.edge_index, values, n), rtol=1e-12)
        assert torch.equal(csr_transpose(single).to_dense(), single.to_dense().T)


def test_a_symmetric_operator_is_one_tensor_also_after_moving_it() -> None:
    edge_index = to_undirected(torch.randint(0, 20, (2, 50), generator=torch.Generator().manual_seed(1)))
    gcn = diffusivity("gcn", edge_index=edge_index, num_nodes=20)
    assert gcn.matrix_t is gcn.matrix and gcn.properties.symmetric
    gcn.double()
    assert gcn.matrix_t is gcn.matrix and gcn.matrix.dtype == F64


def test_coalesce_sorts_by_source_and_sums_duplicates() -> None:
    gen = torch.Generator().manual_seed(2)
    for weighted in (False, True):
        edge_index = torch.randint(0, 9, (2, 60), generator=gen)
        weight = torch.rand(60, generator=gen, dtype=F64) if weighted else None
        g = coalesce(as_graph(edge_index, num_nodes=9, edge_weight=weight))
        ref = torch.sparse_coo_tensor(edge_index, torch.ones(60, dtype=F64) if weight is None else weight, (9, 9)).coalesce()
        assert g.coalesced and torch.equal(g.edge_index, ref.indices())
        assert torch.allclose(g.edge_weight, ref.values(), rtol=1e-14)
        assert coalesce(g) is g


def test_unit_weights_take_no_memory_and_count_as_ones() -> None:
    edge_index = torch.tensor([[0, 1, 2, 2], [1, 2, 0, 0]])
    g = as_graph(edge_index, num_nodes=3)
    assert has_unit_weights(g.edge_weight) and g.edge_weight.stride() == (0,)
    assert torch.equal(in_degree(g), torch.tensor([2.0, 1.0, 1.0], dtype=F64))
    weighted = as_graph(edge_index, num_nodes=3, edge_weight=torch.full((4,), 1.0, dtype=F64))
    assert not has_unit_weights(weighted.edge_weight)
    assert torch.equal(in_degree(weighted), in_degree(g))


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.float16])
def test_spmm_is_the_sparse_product_forward_and_backward(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    n = 13
    g = as_graph(torch.randint(0, n, (2, 50), generator=gen), num_nodes=n)
    values = torch.rand(g.num_edges, generator=gen, dtype=F64)
    matrix, transpose = csr_pair(g, values, dtype)
    dense = matrix.to_dense().double()
    tol = 1e-2 if dtype == torch.float16 else 1e-5
    for shape in [(n, 4), (3, n, 4), (n, 0)]:
        v = torch.randn(*shape, generator=gen, dtype=F64).to(dtype).requires_grad_()
        out = spmm(matrix, v, transpose)
        assert out.dtype == dtype and out.shape == v.shape
        assert torch.allclose(out.double(), dense @ v.double(), atol=tol)
        grad = torch.randn(out.shape, generator=gen, dtype=F64).to(dtype)
        (got,) = torch.autograd.grad(out, v, grad)
        assert torch.allclose(got.double(), dense.T @ grad.double(), atol=tol)
    # a block of rows (as chunked inference builds it): a [rows, N] CSR matrix
    crow = matrix.crow_indices()
    lo, hi = int(crow[4]), int(crow[9])
    block = torch.sparse_csr_tensor(crow[4:10] - lo, matrix.col_indices()[lo:hi], matrix.values()[lo:hi], (5, n))
    v = torch.randn(n, 3, generator=gen, dtype=F64).to(dtype)
    assert torch.allclose(spmm(block, v).double(), dense[4:9] @ v.double(), atol=tol)


def test_spmm_of_a_graph_without_edges_is_zero() -> None:
    g = as_graph(torch.zeros(2, 0, dtype=torch.long), num_nodes=4)
    matrix, transpose = csr_pair(g, torch.zeros(0, dtype=F64), torch.float32)
    v = torch.randn(4, 2, requires_grad=True)
    out = spmm(matrix, v, transpose)
    assert torch.equal(out, torch.zeros(4, 2))
    out.sum().backward()
    assert torch.equal(v.grad, torch.zeros(4, 2))


def _fields(n: int):
    edge_index = to_undirected(torch.randint(0, n, (2, 3 * n), generator=torch.Generator().manual_seed(4)))
    gcn = diffusivity("gcn", edge_index=edge_index, num_nodes=n, dtype=F64)
    attention = diffusivity("difformer_s", in_channels=5, qk_norm="global", dtype=F64)
    yield "gcn", gcn                                       # fresh output: in place
    yield "identity", diffusivity("identity")              # returns its input: never in place
    yield "propagation", Propagation(attention, gcn)
    yield "attention", Propagation(diffusivity("difformer_s", in_channels=5, dtype=F64))


@pytest.mark.parametrize("mu", [0.0, 0.3])
@pytest.mark.parametrize("same_source", [False, True])
def test_fused_euler_step_is_the_plain_step_with_the_same_gradients(mu: float, same_source: bool) -> None:
    n, h = 12, 0.4
    t = torch.tensor(0.0, dtype=F64)
    for name, s in _fields(n):
        field = DiffusionField(s, source_weight=mu)
        z = torch.randn(n, 5, dtype=F64, requires_grad=True)
        z0 = z if same_source else torch.randn(n, 5, dtype=F64, requires_grad=True)
        z_before = z.detach().clone()
        field.set_initial_state(z0)
        fused = field.euler_step(t, z, h)
        field.set_initial_state(z0)
        plain = z + h * field(t, z)
        assert torch.equal(z.detach(), z_before), name  # the inputs are left alone
        assert torch.allclose(fused, plain, rtol=0, atol=1e-14), name
        inputs = [z] + ([] if same_source else [z0]) + list(field.parameters())
        grad = torch.randn(n, 5, dtype=F64)
        for a, b in zip(torch.autograd.grad(fused, inputs, grad, allow_unused=True),
                        torch.autograd.grad(plain, inputs, grad, allow_unused=True)):
            assert (a is None and b is None) or torch.allclose(a, b, rtol=0, atol=1e-13), name


def test_an_euler_layer_with_unit_step_is_exactly_the_propagation() -> None:
    """τ = 1, μ = 0: the fused step returns S(z)z itself (GCN/SGC correspondences)."""
    n = 10
    _, gcn = next(_fields(n))
    z = torch.randn(n, 5, dtype=F64)
    out = DiffusionField(gcn).euler_step(torch.tensor(0.0, dtype=F64), z, 1.0)
    assert torch.equal(out, gcn(z))


def restated_keep(n: int, p: float) -> torch.Tensor:
    """The documented rule of ``keep_mask`` for one block of n entries: ⌈n/3⌉ int64 draws, their
    bits 0–20, 21–41 and 42–62 as three uniform integers below 2²¹ each, concatenated, kept where
    ≥ round(p 2²¹)."""
    bits = torch.empty(-(-n // 3), dtype=torch.int64).random_()
    low = 2**21 - 1
    return torch.cat([bits & low, (bits >> 21) & low, bits >> 42])[:n] >= round(p * 2**21)


class ReferenceDropout(nn.Module):
    """Dropout restated: keep where :func:`restated_keep` says so, scale by 1/(1 − p) rounded in
    x's dtype (the documented rule of ``keep_mask``/``MaskedDropout``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = restated_keep(x.numel(), self.p).view(x.shape)
        scale = torch.ones((), dtype=x.dtype) / (1.0 - self.p)
        return x * keep.to(x.dtype) * scale


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.float16])
@pytest.mark.parametrize("inplace", [False, True])
def test_masked_dropout_is_its_formula_bit_for_bit(dtype: torch.dtype, inplace: bool) -> None:
    x = torch.randn(300, 17, dtype=torch.float32).to(dtype)
    grad = torch.randn(300, 17).to(dtype)
    results = []
    for module in (ReferenceDropout(0.3), MaskedDropout(0.3, inplace=inplace)):
        torch.manual_seed(7)
        leaf = x.clone().requires_grad_()
        out = module(leaf * 1.0)  # a non-leaf input, as in a model (in place allowed)
        (g,) = torch.autograd.grad(out, leaf, grad)
        results.append((out.detach(), g, torch.get_rng_state()))
    (out_a, g_a, rng_a), (out_b, g_b, rng_b) = results
    assert torch.equal(out_a, out_b) and torch.equal(g_a, g_b) and torch.equal(rng_a, rng_b)
    assert torch.equal(torch.signbit(out_a), torch.signbit(out_b))
    dropout = MaskedDropout(0.3).eval()
    assert dropout(x) is x and MaskedDropout(0.0)(x) is x


@pytest.mark.parametrize("p", [0.0, 1.0, 2**-21, 1 - 2**-21])
def test_keep_mask_at_the_ends_of_p_follows_the_rule_and_draws_the_same(p: float) -> None:
    """p = 0 keeps all, p = 1 none (where t·2⁴² would overflow int64), and the generator moves on
    as for any p; one step inside either end is still the restated rule."""
    torch.manual_seed(4)
    mask = keep_mask((3, 1001), p)
    after = torch.get_rng_state()
    torch.manual_seed(4)
    assert torch.equal(mask.view(-1), restated_keep(3003, p))
    assert torch.equal(after, torch.get_rng_state())


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9])
def test_keep_mask_keeps_each_entry_with_probability_one_minus_p(p: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """In blocks of 1,000 entries the mask is the restated rule block by block; the keep rate is
    1 − p within 5 binomial standard deviations, and the rate of nn.Dropout's own masks is too
    (same law)."""
    monkeypatch.setattr(dropout_module, "_MASK_BLOCK", 1000)
    torch.manual_seed(2)
    mask = keep_mask((200, 1001), p)
    torch.manual_seed(2)
    n = 200 * 1001
    expected = torch.cat([restated_keep(min(1000, n - start), p) for start in range(0, n, 1000)])
    assert torch.equal(mask, expected.view(200, 1001))
    n = mask.numel()
    band = 5 * math.sqrt(n * p * (1 - p))
    assert abs(int(mask.sum()) - n * (1 - p)) < band
    torch_kept = int((nn.functional.dropout(torch.ones(200, 1001), p) != 0).sum())
    assert abs(torch_kept - n * (1 - p)) < band


def test_encoder_dropout_then_relu_is_relu_then_dropout() -> None:
    gen = torch.Generator().manual_seed(5)
    from torch_geometric.data import Data

    data = Data(x=torch.randn(50, 6, generator=gen), y=torch.randint(0, 3, (50,), generator=gen),
                edge_index=torch.randint(0, 50, (2, 100), generator=gen))
    model = build_model(ModelConfig(model="difformer_s", num_layers=1, hidden=8, dropout=0.4), data)
    linear, norm = model.encoder[0], model.encoder[1]
    reference = nn.Sequential(linear, norm, nn.ReLU(), ReferenceDropout(0.4))
    outs = []
    for module in (model.encoder, reference):
        torch.manual_seed(11)
        out = module(data.x)
        outs.append((out.detach(), torch.autograd.grad(out, [linear.weight, norm.weight], torch.ones_like(out))))
    (a, grads_a), (b, grads_b) = outs
    assert torch.equal(a, b)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(grads_a, grads_b))


def brute_force_global_attention(s, z: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(S V) from the definition: q, k projected, each divided by its Frobenius norm over all nodes
    and heads, kernel 1 + q̂_iᵀk̂_j per head, rows normalised, heads averaged (dense, O(N²))."""
    def project(lin):
        out = z @ lin.weight.T + (0 if lin.bias is None else lin.bias)
        return out.unflatten(-1, (s.heads, s.key_channels))
    q, k = project(s.query), project(s.key)
    q = q / q.square().sum(dim=(-3, -2, -1), keepdim=True).sqrt()
    k = k / k.square().sum(dim=(-3, -2, -1), keepdim=True).sqrt()
    kernel = 1 + torch.einsum("...ihc,...jhc->...hij", q, k)
    return (kernel / kernel.sum(dim=-1, keepdim=True)).mean(dim=-3) @ values


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("separate_values", [False, True])
@pytest.mark.parametrize("row_block", [4, 16384])
def test_global_difformer_s_gram_form_equals_brute_force(bias: bool, heads: int, batch: tuple, separate_values: bool,
                                                         row_block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row blocks of 4 (9 nodes: blocks 4, 4, 1) and one block."""
    monkeypatch.setattr(graph_module, "ROW_BLOCK", row_block)
    torch.manual_seed(heads + 10 * bias + 100 * len(batch) + 1000 * separate_values)
    s = diffusivity("difformer_s", in_channels=5, heads=heads, key_channels=4, qk_norm="global", bias=bias, dtype=F64)
    z = torch.randn(*batch, 9, 5, dtype=F64, requires_grad=True)
    v = torch.randn(*batch, 9, 6, dtype=F64, requires_grad=True) if separate_values else None
    out = s(z, v)
    reference = brute_force_global_attention(s, z, z if v is None else v)
    assert torch.allclose(out, reference, rtol=1e-12, atol=1e-12)
    inputs = [z, *s.parameters()] + ([v] if separate_values else [])
    upstream = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, inputs, upstream), torch.autograd.grad(reference, inputs, upstream)):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda z, *params: s(z, v), (z, *s.parameters()))


def test_global_difformer_s_gram_form_float32_at_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 nodes in row blocks of 300, float32 sums over all of them: within 1e-5 of the
    float64 brute force."""
    monkeypatch.setattr(graph_module, "ROW_BLOCK", 300)
    torch.manual_seed(0)
    s = diffusivity("difformer_s", in_channels=16, heads=2, key_channels=8, qk_norm="global", bias=True)
    z = torch.randn(2000, 16) + 3.0  # an offset mean: the bias and node-sum terms matter
    reference = brute_force_global_attention(s.double(), z.double(), z.double())
    out = s.float()(z)
    assert (out.double() - reference).abs().max() / reference.abs().max() < 1e-5


def test_global_difformer_s_gram_form_with_vanishing_queries_is_uniform() -> None:
    """W_q = 0: every query is 0, ‖Q‖ = 0 is taken as 1/0 = 0, so S is uniform (the mean of V),
    with finite gradients."""
    s = diffusivity("difformer_s", in_channels=4, qk_norm="global", dtype=F64)
    with torch.no_grad():
        s.query.weight.zero_()
    z = torch.randn(7, 4, dtype=F64, requires_grad=True)
    out = s(z)
    assert torch.allclose(out, z.mean(dim=0, keepdim=True).expand(7, 4), atol=1e-14)
    (grad,) = torch.autograd.grad(out.sum(), z)
    assert torch.isfinite(grad).all() and torch.allclose(grad, torch.ones_like(grad), atol=1e-12)


@pytest.mark.parametrize("row_block", [3, 16384])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("form", ["plain", "batched", "float16"])
def test_spmm_add_is_out_plus_the_dense_product(row_block: int, alpha: float, form: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """out + α S V in place, by blocks of 3 rows (11 nodes: 3, 3, 3, 2) or one block, values and
    gradients of out's source and of V against the dense product; batched and float16 values take
    the plain path."""
    monkeypatch.setattr(graph_module, "ROW_BLOCK", row_block)
    edge_index, _, n = next(edge_sets(row_block))
    g = as_graph(edge_index, num_nodes=n)
    dtype = torch.float16 if form == "float16" else F64
    matrix, transpose = csr_pair(g, torch.rand(g.num_edges, dtype=F64, generator=torch.Generator().manual_seed(1)), dtype)
    dense = matrix.to_dense().double()
    shape = (2, n, 5) if form == "batched" else (n, 5)
    base = torch.randn(shape, dtype=F64).to(dtype).requires_grad_()
    values = torch.randn(shape, dtype=F64).to(dtype).requires_grad_()
    out = spmm_add_(base * 1.0, matrix, values, transpose, alpha)
    reference = base.double() + alpha * (dense @ values.double())
    tol = 2e-2 if form == "float16" else 1e-12
    assert torch.allclose(out.double(), reference, rtol=tol, atol=tol)
    upstream = torch.randn(shape, dtype=F64)
    got = torch.autograd.grad(out, [base, values], upstream.to(dtype))
    want = (upstream, alpha * (dense.T @ upstream))
    for g_got, g_want in zip(got, want):
        assert torch.allclose(g_got.double(), g_want, rtol=tol, atol=tol)


@pytest.mark.parametrize("bias", [False, True])
def test_global_difformer_s_refuses_second_derivatives_clearly(bias: bool) -> None:
    """The hand-written backward passes are differentiable once: create_graph=True is refused
    with a message naming the limit, also for a loss linear in the output (where torch's
    once_differentiable returned a silently wrong second derivative: regression case)."""
    s = diffusivity("difformer_s", in_channels=3, heads=2, qk_norm="global", bias=bias, dtype=F64)
    z = torch.randn(5, 3, dtype=F64, requires_grad=True)
    weights = torch.randn(5, 3, dtype=F64)
    for loss in (lambda: s(z).square().sum(), lambda: (s(z) * weights).sum()):
        with pytest.raises(RuntimeError, match="first derivatives only"):
            torch.autograd.grad(loss(), z, create_graph=True)
    (grad,) = torch.autograd.grad((s(z) * weights).sum(), z)  # first derivatives still work
    assert torch.isfinite(grad).all()


def test_inplace_masked_dropout_overwrites_a_non_contiguous_input() -> None:
    torch.manual_seed(3)
    x = torch.randn(6, 8)[:, ::2]
    expected = x * 1.0
    torch.manual_seed(4)
    reference = ReferenceDropout(0.3)(expected)
    torch.manual_seed(4)
    out = MaskedDropout(0.3, inplace=True).train()(x)
    assert out is x and torch.equal(x, reference)


@pytest.mark.parametrize("block", [3, 16384])
def test_owned_layer_norm_is_layer_norm_in_place_without_autograd(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """No gradient recorded: nn.LayerNorm's values, written into the input (blocks of 3 rows of
    10, or one block); with autograd: nn.LayerNorm itself, gradients included, input untouched."""
    monkeypatch.setattr(graph_module, "ROW_BLOCK", block)
    torch.manual_seed(0)
    reference = nn.LayerNorm(6, dtype=F64)
    nn.init.normal_(reference.weight)
    nn.init.normal_(reference.bias)
    owned = OwnedLayerNorm(6, dtype=F64)
    owned.load_state_dict(reference.state_dict())
    x = torch.randn(2, 5, 6, dtype=F64)
    expected = reference(x).detach()
    with torch.no_grad():
        y = x.clone()
        out = owned(y)
    assert out is y and torch.allclose(out, expected, rtol=0, atol=1e-15)
    x.requires_grad_()
    before = x.detach().clone()
    out = owned(x)
    assert torch.equal(x.detach(), before) and torch.allclose(out, expected, atol=1e-15)
    upstream = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [x, *owned.parameters()], upstream),
                    torch.autograd.grad(reference(x), [x, *reference.parameters()], upstream)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("magnitude", [1e-150, 1.0, 1e80, 1e150])
def test_global_difformer_s_is_scale_invariant_at_extreme_magnitudes(magnitude: float) -> None:
    """Global q/k norms make S independent of the scale of z (no biases): in float64 S(c z) V
    equals S(z) V for c from 1e-150 to 1e150, where 1/(‖Q‖ ‖K‖) as one root of the product
    overflowed at 1e80 (regression case)."""
    torch.manual_seed(4)
    s = diffusivity("difformer_s", in_channels=4, heads=1, qk_norm="global", dtype=F64)
    z, values = torch.randn(7, 4, dtype=F64), torch.randn(7, 4, dtype=F64)
    assert torch.allclose(s(z * magnitude, values), s(z, values), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, magnitude", [(F64, 1e-100), (F64, 1e100), (torch.float32, 1e-12), (torch.float32, 1e12)])
def test_global_difformer_s_gradients_are_scale_invariant_at_extreme_magnitudes(dtype, magnitude: float) -> None:
    """Without biases f(z) = Σ S(z) z is homogeneous of degree 1, so its gradient at c z equals
    the one at z. The hand-written backward pass formed dL/dr (of order |z|³, r = 1/(‖Q‖ ‖K‖)),
    which overflowed float64 at |z| ~ 1e103 (NaN gradients) and float32 at 1e13 (regression case
    of a review: z = 1e103 · I₂, W_q = W_k = I₂)."""
    torch.manual_seed(5)
    s = diffusivity("difformer_s", in_channels=4, heads=2, key_channels=3, qk_norm="global", dtype=dtype)
    z = torch.randn(9, 4, dtype=dtype)
    grads = []
    for scale in (1.0, magnitude):
        x = (z * scale).requires_grad_()
        s(x).sum().backward()
        grads.append(x.grad)
    tol = 1e-9 if dtype == F64 else 1e-3
    assert bool(torch.isfinite(grads[1]).all())
    torch.testing.assert_close(grads[1], grads[0], rtol=tol, atol=tol)
    w = torch.eye(2, dtype=F64)
    x = (torch.eye(2, dtype=F64) * 1e103).requires_grad_()
    two = diffusivity("difformer_s", in_channels=2, qk_norm="global", dtype=F64)
    with torch.no_grad():
        two.query.weight.copy_(w)
        two.key.weight.copy_(w)
    two(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2, 2, dtype=F64), rtol=1e-12, atol=1e-12)
