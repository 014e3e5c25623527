"""Helpers shared by the subcommands: argument errors, devices, dtypes, progress bars, output.

A subcommand checks its arguments before it starts any work, inside :func:`usage_errors`; what
fails there (a bad value, a missing or unreadable file, a damaged checkpoint, an unavailable
device or dataset, a missing optional package) is a :class:`UsageError`, which ``main`` prints
as one line with exit code 2.
Errors raised once the work has started are not usage errors: they keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from tqdm.auto import tqdm

from ..training.outputs import check_output_file

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class UsageError(ValueError):
    """A bad argument, found before the command started any work; the message names the argument
    and the fix."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (exit code 2), like the commands' own usage errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and ends a flag's help with its default, unless the help
    already states it or there is none to state (None: the help says what decides; an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if "default" in text or not action.option_strings or any(default is nothing for nothing in (None, False, argparse.SUPPRESS)) \
                or default in ((), []):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})"


def count_or_fraction(text: str) -> int | float:
    """A size on the command line: a count (``500``) or a fraction (``0.5``)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Setting name (argparse ``dest``) → the command-line flag that sets it."""
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}


def _named_flags(message: str, flags: Mapping[str, str]) -> list[str]:
    """The flags whose setting ``message`` is about: a name at its start, written ``name=``, or
    (names with an underscore, which are no English words) anywhere; none when the message
    already names a flag itself."""
    if any(flag in message for flag in flags.values()):
        return []
    return [flag for dest, flag in flags.items() if re.search(
        rf"^{dest}\b|\b{dest}=" + (rf"|\b{dest}\b" if "_" in dest else ""), message)]


@contextmanager
def usage_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Checks before any work: a ValueError, TypeError, OSError (a file missing, unreadable or
    in the way) or ImportError (an optional package a dataset needs) raised inside is a bad
    argument and leaves as a :class:`UsageError` (the original is its ``__cause__``), its message
    completed with the command-line ``flags`` of the settings it names."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError, OSError, ImportError) as err:
        message = str(err) if not isinstance(err, OSError) or err.filename is None else \
            f"{err.filename}: {err.strerror or err}"
        named = _named_flags(message, flags or {})
        raise UsageError(f"{message} (set by {', '.join(named)})" if named else message) from err


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; anything but an available CPU or CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r} is not a device here; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); use one of them")
    return device


def check_figure_path(path: str, flag: str, overwrite: bool) -> Path:
    """A figure the command will write at the end: matplotlib must know the format its suffix
    names, and it must be a file we may write (:func:`~diffusion_pde.training.outputs.
    check_output_file`), so that a typo fails before the work, not after it."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if Path(path).suffix[1:].lower() not in formats:
        raise ValueError(f"{flag} {path}: the suffix must name an image format ({', '.join(sorted(formats))}), e.g. .png")
    return check_output_file(path, flag, overwrite)


def time_progress(total: float, description: str, quiet: bool) -> tqdm:
    """A progress bar over integration time [0, total] (hidden when stderr is not a terminal)."""
    return tqdm(total=total, desc=description, unit="t", leave=False, disable=True if quiet else None,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| t={n:.3g}/{total:.3g} [{elapsed}<{remaining}]")


def print_json(payload: dict[str, Any]) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])
