r"""Evaluation metrics of node classification.

* ``accuracy``: the share of nodes whose arg-max class is the label.
* ``roc_auc`` (two-class tasks, the standard metric of the imbalanced minesweeper and tolokers
  graphs): the area under the ROC curve of the score s_i = logit_i1 − logit_i0 (monotone in
  p(class 1)), computed from ranks as the Mann–Whitney statistic

  $$ \mathrm{AUC} = \frac{\sum_{i \in P} r_i - |P|(|P| + 1)/2}{|P|\,|N|}, $$

  with r_i the rank of s_i among all scored nodes (ties get their average rank), P the positive
  and N the negative nodes. It equals P(s_pos > s_neg) + ½ P(s_pos = s_neg) over all pairs.
"""

from __future__ import annotations

import torch

METRICS = ("accuracy", "roc_auc")
METRIC_LABELS = {"accuracy": "accuracy", "roc_auc": "ROC-AUC"}
_KEY_SUFFIXES = {"accuracy": "acc", "roc_auc": "roc_auc"}


def score_key(metric: str, part: str) -> str:
    """The key of ``metric`` on node set ``part`` (train, val, test) in the per-epoch metrics."""
    return f"{part}_{_KEY_SUFFIXES[metric]}"


def accuracy(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> float:
    return float((logits[index].argmax(dim=-1) == y[index]).float().mean())


def roc_auc(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor, *, where: str = "the nodes") -> float:
    """ROC-AUC of class 1 against class 0 on the nodes ``index`` (``logits`` has two columns)."""
    if logits.shape[-1] != 2:
        raise ValueError(f"roc_auc needs a two-class task, got {logits.shape[-1]} classes; use metric='accuracy'")
    scores = (logits[index, 1] - logits[index, 0]).double()
    positive = y[index] == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes among {where}, got {n_pos} positive and {n_neg} negative nodes")
    order = torch.argsort(scores)
    _, group, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()                     # 1-based rank of each tie group's last node
    mean_rank = last_rank - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank[group]
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
