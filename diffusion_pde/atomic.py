"""Atomic writes: a file is either the old complete version or the new complete version.

:func:`replace_atomic` writes to a temporary file in the same folder, flushes it to disk and then
``os.replace``-s it over the target, so a kill at any moment (Ctrl-C, SIGKILL, power loss after
the fsync) never leaves a truncated file behind. Used for checkpoints and results
(:mod:`diffusion_pde.training.checkpoint`) and for generated data kept in the cache
(:mod:`diffusion_pde.data.sequences`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch


def replace_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    replace_atomic(Path(path), lambda handle: torch.save(obj, handle))
