"""The check registry: each check is one statement of the theory, verified numerically or
symbolically, reporting pass/fail and the number it measured.

A check is a function ``fn(profile) -> Outcome`` registered with :func:`check`. ``profile``
says how hard to try (hypothesis examples); the outcome carries the measured value (an order
slope, a max difference, the smallest energy decrease, ...) and, on failure, the evidence.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st


@dataclass(frozen=True)
class Profile:
    """How hard the checks try: ``examples`` hypothesis examples per property (derandomized)."""

    name: str = "fast"
    examples: int = 25

    @classmethod
    def fast(cls) -> "Profile":
        return cls("fast", 25)

    @classmethod
    def thorough(cls) -> "Profile":
        return cls("thorough", 300)


@dataclass
class Outcome:
    """What a check found: ``passed``, the measured ``value`` described by ``measure``
    (e.g. ``"slope 4.02"``), and ``details`` (counterexamples on failure)."""

    passed: bool
    measure: str
    value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    section: str
    statement: str
    run: Callable[[Profile], Outcome]


@dataclass
class Result:
    name: str
    section: str
    statement: str
    passed: bool
    measure: str
    value: float | None
    seconds: float
    details: dict[str, Any]


_CHECKS: dict[str, Check] = {}


def check(name: str, section: str, statement: str) -> Callable[[Callable[[Profile], Outcome]], Callable[[Profile], Outcome]]:
    """Decorator registering ``fn(profile) -> Outcome`` as the check ``name`` in ``section``."""

    def register(fn: Callable[[Profile], Outcome]) -> Callable[[Profile], Outcome]:
        if name in _CHECKS:
            raise ValueError(f"a check named {name!r} is already registered")
        _CHECKS[name] = Check(name, section, statement, fn)
        return fn

    return register


def registered_checks() -> tuple[Check, ...]:
    return tuple(_CHECKS.values())


def run_check(item: Check, profile: Profile) -> Result:
    """Run one check; an exception inside it is a failure with the traceback as evidence.

    Checks run with one intra-op thread: their tensors are tiny, and on a busy 2-core machine
    a second thread makes every small op wait (structure checks measured 8 s → 60 s beside two
    other runs). The previous setting is restored afterwards."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = item.run(profile)
    except Exception as err:  # a crashing check must be reported, not abort the report
        outcome = Outcome(False, f"error: {type(err).__name__}: {err}", None,
                          {"traceback": traceback.format_exc(limit=6)})
    finally:
        torch.set_num_threads(threads)
    return Result(item.name, item.section, item.statement, bool(outcome.passed), outcome.measure,
                  outcome.value, time.perf_counter() - start, outcome.details)


def for_all(strategy: st.SearchStrategy, prop: Callable[[Any], None], profile: Profile) -> dict[str, Any] | None:
    """Run ``prop(example)`` over ``profile.examples`` derandomized hypothesis examples.

    Returns None when every example passed, else ``{"counterexample": ..., "error": ...}`` for
    the shrunk failing example (``prop`` signals failure by raising AssertionError)."""
    failure: dict[str, Any] = {}

    @settings(max_examples=profile.examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink],
              report_multiple_bugs=False)
    @given(strategy)
    def run(example: Any) -> None:
        try:
            prop(example)
        except AssertionError as err:
            failure.update(counterexample=repr(example)[:2000], error=str(err)[:2000])
            raise

    try:
        run()
    except AssertionError:
        return failure
    return None
