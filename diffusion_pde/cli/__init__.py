"""The ``diffusion-pde`` command line: one subcommand per module in this package.

Exit codes: 0 success, 1 a failed check (``check``), 2 a usage error (a bad argument, found before
any work started) or a training run stopped by a NaN/Inf, each printed as one line; 130 Ctrl-C.
When the reader of the output goes away (``diffusion-pde train ... | head -1``), the command stops
quietly with exit code 141 (128 + SIGPIPE, as a shell reports a command killed by SIGPIPE).
Any other error is a failure of the work itself and keeps its traceback. Warnings (e.g. a class
without training nodes) are one line each, ``diffusion-pde COMMAND: warning: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from ..training import NonFiniteError
from . import check, predict, solve, sweep, train
from ._common import Parser, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="diffusion-pde",
        description="Energy-constrained diffusion (DIFFormer) as ODE integration: solve, train, predict and check.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    solve.add_parser(commands)
    train.add_parser(commands)
    predict.add_parser(commands)
    sweep.add_parser(commands)
    check.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Under torchrun every rank runs this; rank 0 alone speaks (the ranks meet the same warnings
    # and the same usage errors), the others still exit with the same code.
    quiet_rank = os.environ.get("RANK", "0") != "0"

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if not quiet_rank:
            print(f"diffusion-pde {args.command}: warning: {' '.join(str(message).splitlines())}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            if args.command != "train" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UsageError(f"only `train` runs in several processes; run `diffusion-pde {args.command}` without "
                                 "torchrun (one process)")
            return int(args.run(args) or 0)
    except (UsageError, NonFiniteError) as err:
        parser.exit(2, "" if quiet_rank else f"diffusion-pde {args.command}: error: {' '.join(str(err).splitlines())}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    except BrokenPipeError:
        # Python's documented way: point stdout at devnull so that the flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
