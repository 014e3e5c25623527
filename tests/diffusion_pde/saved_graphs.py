"""Small graphs shared by the tests (some saved to disk for the command-line tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Data

from diffusion_pde.data import Split


def tiny_graph(folder: Path) -> Path:
    """A saved 12-node ring with two alternating classes (fast to train on)."""
    n = 12
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    torch.save(Data(x=torch.rand(n, 3, generator=torch.Generator().manual_seed(0)), edge_index=ring,
                    y=torch.arange(n) % 2), folder / "graph.pt")
    return folder / "graph.pt"


def two_community_graph(n: int = 60, seed: int = 0) -> tuple[Data, Split]:
    """Two noisy communities (features tell the class apart weakly, edges mostly within)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 6, generator=g) + 1.5 * y[:, None] * torch.tensor([1.0, 0, 0, 0, 0, 0])
    src, dst = torch.randint(0, n, (2, 4 * n), generator=g)
    keep = (y[src] == y[dst]) | (torch.rand(4 * n, generator=g) < 0.1)
    edge_index = torch.cat([torch.stack([src[keep], dst[keep]]), torch.stack([dst[keep], src[keep]])], dim=1)
    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=n)
    data.name = "toy"
    perm = torch.randperm(n, generator=g)
    return data, Split("random", 0, perm[:10], perm[10:30], perm[30:])
