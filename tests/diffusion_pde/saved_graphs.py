"""Small graphs saved to disk, shared by the command-line tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Data


def tiny_graph(folder: Path) -> Path:
    """A saved 12-node ring with two alternating classes (fast to train on)."""
    n = 12
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    torch.save(Data(x=torch.rand(n, 3, generator=torch.Generator().manual_seed(0)), edge_index=ring,
                    y=torch.arange(n) % 2), folder / "graph.pt")
    return folder / "graph.pt"
