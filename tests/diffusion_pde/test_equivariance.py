"""Every registered diffusivity that declares it commutes with node relabelling: S_{Pπ}(PZ) = P S(Z) Pᵀ."""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch_geometric.data import Data

import diffusion_pde as dp
from diffusion_pde.diffusivities import diffusivity_class, diffusivity_for

WIDTH = 4
# The position kernels of sequences declare permutation_equivariant=False (positions are not
# exchangeable; tests/diffusion_pde/test_position_diffusivities.py shows that they are not).
NAMES = [n for n in dp.available_diffusivities()
         if diffusivity_for(n, graph=Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2),
                            in_channels=WIDTH).properties.permutation_equivariant]


def build(name: str, edge_index: torch.Tensor, n: int) -> dp.Diffusivity:
    torch.manual_seed(0)  # same learned weights for the original and the relabelled graph
    return diffusivity_for(name, graph=Data(edge_index=edge_index, num_nodes=n), in_channels=WIDTH, dtype=torch.float64)


@st.composite
def graphs_and_permutations(draw):
    n = draw(st.integers(2, 9))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=3 * n))
    perm = draw(st.permutations(range(n)))
    seed = draw(st.integers(0, 2**16))
    return n, torch.tensor(edges).t().contiguous(), torch.tensor(perm), seed


@pytest.mark.parametrize("name", NAMES)
@given(case=graphs_and_permutations())
def test_permutation_equivariance(name: str, case) -> None:
    n, edge_index, perm, seed = case
    gen = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, WIDTH, generator=gen, dtype=torch.float64), dim=-1)
    values = torch.randn(n, 3 if name not in ("gat", "transformer") else WIDTH, generator=gen, dtype=torch.float64)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)  # old node i sits at new position inverse[i]
    original = build(name, edge_index, n)
    relabelled = build(name, inverse[edge_index], n)
    for s, state in ((original, z), (relabelled, z[perm])):
        s.set_initial_state(state)
    out = original(z, values)
    out_perm = relabelled(z[perm], values[perm])
    assert torch.allclose(out_perm, out[perm], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if "graph" in inspect.signature(diffusivity_class(n).__init__).parameters])
def test_graph_diffusivities_without_a_graph_say_so(name: str) -> None:
    with pytest.raises(ValueError, match="edge_index"):
        diffusivity_for(name, in_channels=WIDTH)
