"""Train/validation/test splits of the nodes.

* ``random`` (the DIFFormer/Planetoid protocol): for split seed s, a generator seeded with s
  draws ``per_class`` (20) training nodes from every class, then ``num_val`` (500) validation and
  ``num_test`` (1000) test nodes from the rest, uniformly. ``per_class`` can also be a fraction
  in (0, 1) of each class's nodes, ``num_val`` and ``num_test`` fractions of the nodes left after
  the training nodes (the large graphs' default 50/25/25 is 0.5, 0.5, 0.5); ``num_test=None`` tests
  every node left (the label rates of the datasets without a graph: L per class, 1,000
  validation, the rest test). On a user's own graph the paper's counts
  rarely fit, so :func:`random_sizes` picks min(20, half the smallest class) training nodes per
  class and half of the rest each for validation and test.
* ``public``: the Planetoid public split stored with the dataset (one split).
* ``geom-gcn`` / ``fixed``: the 10 splits shipped with the dataset (geom-gcn's 60/20/20 splits, or
  those of the heterophilous-graph benchmark), selected by index 0..9.
* ``grand`` (the protocol of GRAND, Chamberlain et al. 2021): on a connected graph (a dataset's
  largest connected component, :func:`~diffusion_pde.data.largest_component`), for split seed s a
  generator seeded with s draws ``num_development`` (1,500) development nodes, then ``per_class``
  (20) training nodes from every class's development nodes; the other development nodes
  validate, every node outside the development set tests (:func:`grand_split`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch_geometric.data import Data

SPLIT_KINDS = ("random", "public", "geom-gcn", "fixed", "grand")


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


PAPER_SIZES = {"per_class": 20, "num_val": 500, "num_test": 1000}
GRAND_SIZES = {"num_development": 1500, "per_class": 20}


def random_sizes(y: torch.Tensor, *, builtin: bool) -> dict[str, int | float]:
    """The default sizes of a random split: the paper's :data:`PAPER_SIZES` on a built-in dataset;
    on a user's graph min(20, half the smallest class, at least 1) training nodes per class and
    half of the other nodes each for validation and test."""
    if builtin:
        return dict(PAPER_SIZES)
    smallest = int(torch.bincount(y.cpu()).min())
    return {"per_class": max(1, min(20, smallest // 2)), "num_val": 0.5, "num_test": 0.5}


def _count(name: str, value: int | float, rest: int) -> int:
    """A size given as a count (int >= 1) or a fraction in (0, 1) of ``rest`` nodes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a count (int >= 1) or a fraction in (0, 1), got {type(value).__name__}")
    if isinstance(value, float):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be a count (int >= 1) or a fraction in (0, 1), got {value!r}")
        return max(1, int(value * rest))  # rounded down, so that fractions summing to 1 fit
    if value < 1:
        raise ValueError(f"{name} must be a count (int >= 1) or a fraction in (0, 1), got {value!r}")
    return value


def random_split(y: torch.Tensor, seed: int, *, per_class: int | float = 20, num_val: int | float = 500,
                 num_test: int | float | None = 1000) -> Split:
    """``per_class`` training nodes per class (a count, or a fraction of each class's nodes), then
    ``num_val`` / ``num_test`` (counts, or fractions of the nodes left after the training nodes)
    from the rest; ``num_test=None``: every node left after the validation nodes tests (the
    label-rate splits of the datasets without a graph)."""
    fraction = isinstance(per_class, float)
    if isinstance(per_class, bool) or not isinstance(per_class, (int, float)) or \
            (per_class < 1 if not fraction else not 0 < per_class < 1):
        raise ValueError(f"per_class (training nodes per class) must be an int >= 1 or a fraction in (0, 1) of each "
                         f"class's nodes, got {per_class!r}")
    generator = torch.Generator().manual_seed(int(seed))
    y = y.cpu()
    train = []
    for c in range(int(y.max()) + 1):
        members = (y == c).nonzero().view(-1)
        if members.numel() == 0:
            raise ValueError(
                f"no node has the label {c}, but the labels run up to {int(y.max())}: relabel the classes to 0..C-1 "
                "without gaps, or give train/val/test masks with the graph (a fixed split)"
            )
        if members.numel() == 1:
            raise ValueError(
                f"class {c} has only 1 node, too few for a random split (it needs a training node and others for "
                "validation and test): drop that class's node or merge the class into another (and relabel to "
                "0..C-1), or give train/val/test masks with the graph (a fixed split)"
            )
        count = max(1, int(per_class * members.numel())) if fraction else per_class
        if members.numel() <= count:
            raise ValueError(
                f"class {c} has only {members.numel()} nodes, too few for {count} training nodes per class "
                f"(some must stay for validation and test); use per_class (--train-per-class) {members.numel() - 1} "
                "or less, or a split stored with the data (--split public/geom-gcn/fixed, or masks in your own graph)"
            )
        train.append(members[torch.randperm(members.numel(), generator=generator)[:count]])
    train_index = torch.cat(train)
    rest = torch.ones(y.numel(), dtype=torch.bool)
    rest[train_index] = False
    rest_index = rest.nonzero().view(-1)
    n_val = _count("num_val", num_val, rest_index.numel())
    n_test = max(1, rest_index.numel() - n_val) if num_test is None else _count("num_test", num_test, rest_index.numel())
    if rest_index.numel() < n_val + n_test:
        raise ValueError(
            f"only {rest_index.numel()} nodes remain after the training nodes, fewer than num_val + num_test = "
            f"{n_val + n_test}; lower them (--val-size, --test-size; a fraction such as 0.5 takes that share of the rest)"
        )
    rest_index = rest_index[torch.randperm(rest_index.numel(), generator=generator)]
    return Split("random", int(seed), train_index.sort().values, rest_index[:n_val].sort().values,
                 rest_index[n_val:n_val + n_test].sort().values)


def grand_split(y: torch.Tensor, seed: int, *, num_development: int | float = 1500, per_class: int = 20) -> Split:
    """GRAND's split of the N nodes of a connected graph with labels ``y`` [N]: a generator seeded
    with ``seed`` draws ``num_development`` development nodes uniformly (a count, or a fraction in
    (0, 1) of the N nodes), then ``per_class`` training nodes from each class's development nodes;
    the other development nodes are the validation nodes, all nodes outside the development set
    the test nodes. On Cora's largest connected component (N = 2,485): 140 / 1,360 / 985.

    The graph's connectivity is the caller's part (:func:`~diffusion_pde.data.largest_component`;
    ``make_split`` checks it). Raises ValueError naming ``num_development`` (--development-size)
    or ``per_class`` (--train-per-class) and the fix when the sizes do not fit: the development
    set must leave test nodes, hold ``per_class`` nodes of every class and more nodes than the
    training nodes (some must validate).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, numbers.Integral) or per_class < 1:
        raise ValueError(f"per_class (training nodes per class) of the grand split must be a count, an int >= 1 "
                         f"(GRAND's 20), got {per_class!r}")
    per_class = int(per_class)
    if y.dim() != 1:
        raise ValueError(f"the grand split needs one class label per node, y of shape [N], got {list(y.shape)} "
                         "(multi-label targets have no per-class training sets)")
    y = y.cpu()
    n = y.numel()
    if n < 3:
        raise ValueError(f"the grand split needs a graph (its largest connected component) of at least 3 nodes for "
                         f"training, validation and test nodes, got {n}; use a random split (--split random)")
    n_development = _count("num_development", num_development, n)
    if n_development >= n:
        raise ValueError(
            f"num_development = {n_development} development nodes leave no test node: the graph (its largest connected "
            f"component) has {n} nodes; use num_development (--development-size) {n - 1} or less, e.g. a fraction such "
            "as 0.6 of the nodes (the default, GRAND's 1500, needs more than 1500 nodes)")
    generator = torch.Generator().manual_seed(int(seed))
    development = torch.randperm(n, generator=generator)[:n_development]
    train = []
    for c in range(int(y.max()) + 1):
        members = development[y[development] == c]
        if members.numel() < per_class:
            total = int((y == c).sum())
            found = f"{members.numel()} of the {n_development} development nodes" if total >= per_class else \
                f"only {total} nodes in the graph (its largest connected component)"
            remedy = "raise num_development (--development-size)" if total >= per_class else \
                "use a random split (--split random)"
            raise ValueError(f"class {c} has {found}, too few for {per_class} training nodes per class: lower per_class "
                             f"(--train-per-class) or {remedy}")
        train.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    train_index = torch.cat(train)
    val = development[~torch.isin(development, train_index)]
    if val.numel() == 0:
        raise ValueError(f"all {n_development} development nodes are training nodes ({len(train)} classes x {per_class}), "
                         "none is left for validation: raise num_development (--development-size) or lower per_class "
                         "(--train-per-class)")
    test = torch.ones(n, dtype=torch.bool)
    test[development] = False
    return Split("grand", int(seed), train_index.sort().values, val.sort().values, test.nonzero().view(-1))


def mask_split(data: Data, kind: str, index: int) -> Split:
    """The split stored as masks on ``data``: [N] masks (``public``) or column ``index`` of [N, K]."""
    names = ("train_mask", "val_mask", "test_mask")
    missing = [name for name in names if getattr(data, name, None) is None]
    if missing:
        given = [name for name in names if name not in missing]
        raise ValueError(f"dataset {getattr(data, 'name', '?')!r} has no stored {kind} split ("
                         + (f"it has {', '.join(given)} but not {', '.join(missing)}" if given else "it has no masks")
                         + "): give all three masks (train_mask, val_mask, test_mask) with the graph, or use a random "
                         "split (split='random', --split random)")
    masks = []
    for name in names:
        mask = getattr(data, name)
        if mask.dim() == 2:
            if not 0 <= index < mask.shape[1]:
                raise ValueError(f"split index {index} out of range: the dataset has {mask.shape[1]} {kind} splits (0..{mask.shape[1] - 1})")
            mask = mask[:, index]
        elif index != 0:
            raise ValueError(f"the {kind} split is a single split; use split index 0 (--splits 1)")
        masks.append(mask.nonzero().view(-1))
    return Split(kind, index, *masks)
