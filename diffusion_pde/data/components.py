"""Connected components of a graph: the largest one as a graph of its own, as GRAND's protocol
(Chamberlain et al. 2021, :func:`~diffusion_pde.data.grand_split`) trains and tests on.

Edges count in either direction (weak connectivity; on an undirected graph the usual
components). PyG's ``LargestConnectedComponents`` transform finds the component (scipy's
``connected_components``) and takes its induced subgraph.
"""

from __future__ import annotations

import copy

import scipy.sparse.csgraph
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import LargestConnectedComponents
from torch_geometric.utils import to_scipy_sparse_matrix

from .datasets import dataset_source


def largest_component(data: Data) -> Data:
    """The subgraph of ``data`` induced by its largest connected component (one of them on a tie).

    Returns a new ``Data`` (``data`` is left as it is) with the component's N' nodes renumbered
    0..N'−1 in their original order: every node-level attribute (``x`` [N', F], ``y`` [N'], masks
    [N'] or [N', K]) restricted to them, the edges among them (``edge_index`` [2, E'] and
    ``edge_weight`` [E']), ``n_id`` [N'] (long: each node's index in ``data``, PyG's name for
    global node ids; when ``data`` has ``n_id`` already, its entries for the component's nodes)
    and ``source`` marked ``"largest_component": True``, so that a checkpoint of a model trained
    on it loads the same component again. A connected graph gives a copy of itself.
    """
    graph = copy.copy(data)  # shallow: the attributes set here stay off ``data``
    if getattr(data, "n_id", None) is None:
        graph.n_id = torch.arange(data.num_nodes, device=data.edge_index.device)
    component = LargestConnectedComponents(connection="weak")(graph)
    component.source = {**dataset_source(data), "largest_component": True}
    return component


def is_connected(data: Data) -> bool:
    """Whether ``data``'s graph is one (weakly) connected component."""
    adjacency = to_scipy_sparse_matrix(data.edge_index.cpu(), num_nodes=data.num_nodes)
    count, _ = scipy.sparse.csgraph.connected_components(adjacency, connection="weak")
    return count == 1
