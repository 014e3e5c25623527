"""``diffusion-pde check``: run the theory checks and print one line per statement.

Each line gives the status, the check's name and the number it measured (an order slope, a
max difference, the smallest energy decrease, the τ* range). Exits 1 when any check fails.
The ``theory_checks`` package is imported inside the command only (imports flow
``solvers`` ← ``diffusion_pde`` ← ``theory_checks``).
"""

from __future__ import annotations

import argparse
from typing import Any

from tqdm.auto import tqdm

from ._common import HelpFormatter, UsageError, print_json


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("check", help="run the executable checks of the theory (energy descent, "
                            "correspondences, structure, solver order)", description=__doc__,
                            formatter_class=HelpFormatter)
    p.add_argument("--thorough", action="store_true", help="many more hypothesis examples per property (slower)")
    p.add_argument("--select", default=None, metavar="TEXT",
                   help="run only the checks whose name contains TEXT, or whose section equals it (default: all)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--verbose", action="store_true", help="print the details (counterexamples, derivations) of each check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import theory_checks

    checks = theory_checks.load_checks()
    if args.list:
        for item in checks:
            print(f"{item.name:<44} [{item.section}] {item.statement}")
        return 0
    profile = theory_checks.Profile.thorough() if args.thorough else theory_checks.Profile.fast()
    selected = [c for c in checks if not args.select or args.select in c.name or args.select == c.section]
    if not selected:
        raise UsageError(f"--select {args.select!r} matches no check; see diffusion-pde check --list")
    with tqdm(total=len(selected), desc="checks", leave=False, disable=True if args.quiet else None) as bar:
        def progress(item: Any) -> None:
            bar.set_postfix_str(item.name)
            bar.update(1)
        results = theory_checks.run_checks(profile, args.select, progress=progress)
    failed = [r for r in results if not r.passed]
    if args.json:
        print_json({"profile": profile.name, "passed": len(results) - len(failed), "failed": len(failed),
                    "checks": [vars(r) for r in results]})
    else:
        print_report(results, profile.name, args.verbose)
    return 1 if failed else 0


def print_report(results: list, profile: str, verbose: bool) -> None:
    section = None
    for r in results:
        if r.section != section:
            section = r.section
            print(f"\n{section}")
        print(f"  {'PASS' if r.passed else 'FAIL'}  {r.name:<42} {r.measure}  ({r.seconds:.1f} s)")
        print(f"        {r.statement}")
        if verbose or not r.passed:
            for key, value in r.details.items():
                print(f"        {key}: {value}")
    failed = sum(not r.passed for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed ({profile} profile)")
