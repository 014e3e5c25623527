"""The paper's statements as executable checks (sympy derivations and hypothesis properties).

Each module registers its checks with :func:`check`; :func:`run_checks` runs them all (or a
selection) and returns one :class:`Result` per statement with the number it measured. The
command ``diffusion-pde check`` prints the report. Imports flow one way:
``solvers`` ← ``diffusion_pde`` ← ``theory_checks``.
"""

from __future__ import annotations

from ._registry import Check, Outcome, Profile, Result, check, for_all, registered_checks, run_check

CHECK_MODULES = ("energy_descent", "correspondences", "structure", "solver_theory", "sequence_diffusion")


def load_checks() -> tuple[Check, ...]:
    """Import every check module (registering its checks) and return the registry."""
    import importlib

    for module in CHECK_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return registered_checks()


def run_checks(profile: Profile | None = None, select: str | None = None, progress=None) -> list[Result]:
    """Run the registered checks whose name contains ``select`` (all when None).

    ``progress(check)`` is called before each check (the CLI drives its progress bar with it)."""
    profile = profile or Profile.fast()
    results = []
    for item in load_checks():
        if select and select not in item.name and select != item.section:
            continue
        if progress is not None:
            progress(item)
        results.append(run_check(item, profile))
    return results


__all__ = ["Check", "Outcome", "Profile", "Result", "check", "for_all", "load_checks", "registered_checks", "run_check", "run_checks"]
