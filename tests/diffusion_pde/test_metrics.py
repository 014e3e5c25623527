"""Metrics: ROC-AUC against its pairwise definition (training by ROC-AUC: test_training.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffusion_pde.training.metrics import roc_auc

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def pairwise_auc(scores: list[float], labels: list[int]) -> float:
    """P(s_pos > s_neg) + ½ P(s_pos = s_neg) over all (positive, negative) pairs."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def as_logits(scores: torch.Tensor) -> torch.Tensor:
    """Two-column logits whose score logit_1 − logit_0 is ``scores`` (column 0 random integers, so
    the difference is exact and ties stay ties)."""
    base = torch.randint(-50, 50, (scores.numel(),)).double()
    return torch.stack([base, base + scores], dim=1)


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_is_the_pairwise_probability_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    n = 30 + 7 * seed
    scores = torch.randint(0, 5, (n,), generator=g).double()         # few values: many ties
    y = torch.randint(0, 2, (n,), generator=g)
    y[:2] = torch.tensor([0, 1])
    index = torch.randperm(n, generator=g)[: n - 3]
    expected = pairwise_auc(scores[index].tolist(), y[index].tolist())
    assert roc_auc(as_logits(scores), y, index) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_extremes():
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    index = torch.arange(6)
    assert roc_auc(as_logits(y.double()), y, index) == 1.0
    assert roc_auc(as_logits(-y.double()), y, index) == 0.0
    assert roc_auc(as_logits(torch.zeros(6, dtype=torch.float64)), y, index) == 0.5


def test_roc_auc_errors_name_the_problem():
    y = torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match="two-class"):
        roc_auc(torch.zeros(4, 3), y, torch.arange(4))
    with pytest.raises(ValueError, match="both classes among the val nodes"):
        roc_auc(torch.zeros(4, 2), y, torch.tensor([1, 2]), where="the val nodes")
