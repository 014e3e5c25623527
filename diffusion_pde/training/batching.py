"""Which nodes one optimisation step sees: random node partitions and their induced subgraphs.

Mini-batch training as in the DIFFormer authors' code for large graphs: every epoch the nodes are
shuffled into K disjoint random partitions of at most ``batch_size`` nodes; a step runs the model
on one partition's induced subgraph (attention among the partition's nodes, the graph term on the
edges between them, the operator normalised on that subgraph) and takes the loss on the
partition's training nodes. With W processes (``world_size``) K is a multiple of W, so every
rank takes the same number of partitions per epoch (rank r the partitions r, r + W, r + 2W, ...).

The permutation of an epoch is drawn from a generator seeded by (seed, epoch) alone: every rank
draws the same partitions without communicating, and a resumed run draws the ones it would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_geometric.data import Data
from torch_geometric.utils import subgraph


def num_partitions(num_nodes: int, batch_size: int, world_size: int = 1) -> int:
    """K = W · ⌈N / (B · W)⌉: the fewest partitions of at most B nodes whose count is a multiple of W."""
    return world_size * max(1, math.ceil(num_nodes / (batch_size * world_size)))


def node_partitions(num_nodes: int, batch_size: int, *, seed: int, epoch: int, world_size: int = 1) -> list[torch.Tensor]:
    """The K random disjoint node sets of ``epoch`` (:func:`num_partitions`), each sorted, of sizes
    differing by at most one; together they hold every node once."""
    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % 2**63)
    order = torch.randperm(num_nodes, generator=generator)
    return [part.sort().values for part in torch.tensor_split(order, num_partitions(num_nodes, batch_size, world_size))]


@dataclass
class Batch:
    """One partition: its ``nodes`` (global ids, [n]), their induced subgraph ``graph`` (x, y,
    relabelled edge_index, edge_weight if any) and ``train``, the positions of its training
    nodes within the partition."""

    nodes: torch.Tensor
    graph: Data
    train: torch.Tensor


def induced_batch(data: Data, nodes: torch.Tensor, train_mask: torch.Tensor) -> Batch:
    """The subgraph of ``data`` induced by ``nodes`` (PyG's ``subgraph``, relabelled to 0..n−1),
    on ``data``'s device; ``train_mask`` [N] marks the training nodes."""
    device = data.x.device
    nodes = nodes.to(device)
    weight = getattr(data, "edge_weight", None)
    edge_index, edge_weight = subgraph(nodes, data.edge_index, edge_attr=weight, relabel_nodes=True,
                                       num_nodes=data.num_nodes)
    graph = Data(x=data.x[nodes], edge_index=edge_index, y=data.y[nodes], num_nodes=int(nodes.numel()))
    if edge_weight is not None:
        graph.edge_weight = edge_weight
    return Batch(nodes, graph, torch.nonzero(train_mask[nodes]).flatten())
