"""Atomic checkpoints: a file is either the old complete version or the new complete version.

:func:`save_atomic` writes to a temporary file in the same folder, flushes it to disk and then
``os.replace``-s it over the target, so a kill at any moment (Ctrl-C, SIGKILL, power loss
after the fsync) never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _replace_atomic(path: Path, write) -> None:
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
    _replace_atomic(Path(path), lambda handle: torch.save(obj, handle))


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """JSON (indented, UTF-8) written atomically."""
    _replace_atomic(Path(path), lambda handle: handle.write((json.dumps(obj, indent=2) + "\n").encode()))


def write_text_atomic(text: str, path: str | Path) -> None:
    _replace_atomic(Path(path), lambda handle: handle.write(text.encode()))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (tensors mapped to ``device``)."""
    return torch.load(Path(path), map_location=device, weights_only=False)
