"""Atomic checkpoints: a file is either the old complete version or the new complete version.

:func:`save_atomic` and the writers here go through :func:`diffusion_pde.atomic.replace_atomic`
(a temporary file in the same folder, flushed to disk, then ``os.replace``-d over the target), so
a kill at any moment never leaves a truncated checkpoint behind. :func:`load_checkpoint` refuses a file
that is not a complete checkpoint with an error naming the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch

from ..atomic import replace_atomic, save_atomic

__all__ = ["load_checkpoint", "save_atomic", "save_figure_atomic", "write_json_atomic", "write_text_atomic"]


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """JSON (indented, UTF-8) written atomically."""
    replace_atomic(Path(path), lambda handle: handle.write((json.dumps(obj, indent=2) + "\n").encode()))


def write_text_atomic(text: str, path: str | Path) -> None:
    """UTF-8 text written atomically."""
    replace_atomic(Path(path), lambda handle: handle.write(text.encode()))


def save_figure_atomic(fig: Any, path: str | Path) -> None:
    """``fig.savefig(path)`` (matplotlib, 120 dpi, the format named by the suffix), atomically."""
    path = Path(path)
    replace_atomic(path, lambda handle: fig.savefig(handle, format=path.suffix[1:], dpi=120))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", *, keys: Iterable[str] = (),
                    remedy: str = "", weights_only: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (tensors mapped to ``device``;
    ``weights_only=True`` unpickles tensors and plain containers only, for files from elsewhere).

    A file that does not load, or is not a dict holding ``keys``, raises a ValueError naming the
    file, what is wrong and ``remedy`` (how to get past it); a missing or unreadable file its OSError."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=weights_only)
    except OSError:  # missing or unreadable: the file system's own error says which
        raise
    except Exception as err:  # a damaged file fails in zipfile, pickle or torch, with any of their errors
        raise ValueError(_not_a_checkpoint(path, f"it does not load: {type(err).__name__}", remedy)) from err
    missing = [key for key in keys if key not in ckpt] if isinstance(ckpt, dict) else list(keys)
    if missing:
        raise ValueError(_not_a_checkpoint(path, f"it lacks {', '.join(missing)}", remedy))
    return ckpt


def _not_a_checkpoint(path: Path, problem: str, remedy: str) -> str:
    return (f"{path} is not a complete checkpoint ({problem}); it is damaged or was not written by diffusion-pde"
            + (f": {remedy}" if remedy else ""))
