"""Train/validation/test splits of the nodes.

* ``random`` (the DIFFormer/Planetoid protocol): for split seed s, a generator seeded with s
  draws ``per_class`` (20) training nodes from every class, then ``num_val`` (500) validation and
  ``num_test`` (1000) test nodes from the rest, uniformly.
* ``public``: the Planetoid public split stored with the dataset (one split).
* ``geom-gcn`` / ``fixed``: the 10 splits shipped with the dataset (geom-gcn's 60/20/20 splits, or
  those of the heterophilous-graph benchmark), selected by index 0..9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch_geometric.data import Data

SPLIT_KINDS = ("random", "public", "geom-gcn", "fixed")


@dataclass(frozen=True)
class Split:
    """Node indices of one split, plus what identifies it (``kind``, ``index``)."""

    kind: str
    index: int
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def to(self, device: torch.device) -> "Split":
        return Split(self.kind, self.index, self.train.to(device), self.val.to(device), self.test.to(device))


def random_split(y: torch.Tensor, seed: int, *, per_class: int = 20, num_val: int = 500, num_test: int = 1000) -> Split:
    """``per_class`` training nodes per class, then ``num_val`` / ``num_test`` from the rest."""
    generator = torch.Generator().manual_seed(int(seed))
    y = y.cpu()
    train = []
    for c in range(int(y.max()) + 1):
        members = (y == c).nonzero().view(-1)
        if members.numel() <= per_class:
            raise ValueError(
                f"class {c} has only {members.numel()} nodes, too few for {per_class} training nodes per class; "
                "use a smaller per_class or the dataset's fixed splits (--split geom-gcn/fixed)"
            )
        train.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    train_index = torch.cat(train)
    rest = torch.ones(y.numel(), dtype=torch.bool)
    rest[train_index] = False
    rest_index = rest.nonzero().view(-1)
    if rest_index.numel() < num_val + num_test:
        raise ValueError(
            f"only {rest_index.numel()} nodes remain after the training nodes, fewer than num_val + num_test = "
            f"{num_val + num_test}; lower them or use the dataset's fixed splits"
        )
    rest_index = rest_index[torch.randperm(rest_index.numel(), generator=generator)]
    return Split("random", int(seed), train_index.sort().values, rest_index[:num_val].sort().values,
                 rest_index[num_val:num_val + num_test].sort().values)


def mask_split(data: Data, kind: str, index: int) -> Split:
    """The split stored as masks on ``data``: [N] masks (``public``) or column ``index`` of [N, K]."""
    masks = []
    for name in ("train_mask", "val_mask", "test_mask"):
        mask = getattr(data, name, None)
        if mask is None:
            raise ValueError(f"dataset {getattr(data, 'name', '?')!r} has no stored {kind} split ({name} missing)")
        if mask.dim() == 2:
            if not 0 <= index < mask.shape[1]:
                raise ValueError(f"split index {index} out of range: the dataset has {mask.shape[1]} {kind} splits (0..{mask.shape[1] - 1})")
            mask = mask[:, index]
        elif index != 0:
            raise ValueError(f"the {kind} split is a single split; use split index 0 (--splits 1)")
        masks.append(mask.nonzero().view(-1))
    return Split(kind, index, *masks)
