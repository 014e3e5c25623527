"""Helpers shared by the subcommands: devices, dtypes, progress bars, output."""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from tqdm.auto import tqdm

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA request is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available; use --device cpu")
    return device


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
