"""The ``diffusion-pde`` command line: one subcommand per module in this package."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import check, solve, sweep, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-pde",
        description="Energy-constrained diffusion (DIFFormer) as ODE integration: solve, train and check.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    solve.add_parser(commands)
    train.add_parser(commands)
    sweep.add_parser(commands)
    check.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError) as err:
        parser.exit(2, f"diffusion-pde {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")


if __name__ == "__main__":
    sys.exit(main())
