"""Shared test configuration: a deterministic hypothesis profile and the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI and the default run: derandomized, bounded, no deadline (machines here are noisy).
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """Test tensors are tiny: with two intra-op threads every small op waits for the second
    thread, which on a busy 2-core machine costs milliseconds per op (10x slower runs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _restore_method_registry():
    """Tests that register their own Butcher tableaux leave the registry as they found it, so
    messages that list the methods (and the error table that quotes them) do not depend on the
    order in which tests run."""
    from solvers import _tableau

    saved = dict(_tableau._TABLEAUX)
    yield
    _tableau._TABLEAUX.clear()
    _tableau._TABLEAUX.update(saved)
