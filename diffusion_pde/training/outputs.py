"""Results folders and output files that never cost a user a file of theirs.

Every results folder diffusion-pde creates (an experiment's ``--out``, its ``split{s}`` and
``split{s}/run{r}`` folders, a sweep's folder) holds the marker file :data:`MARKER`. An existing,
non-empty ``out`` without it is refused whatever the flags: it holds files that are not ours.
``overwrite`` deletes only what diffusion-pde writes (files named as in :data:`RESULT_FILES` and
the temporary files of interrupted atomic writes) in the marked folder and in its marked
``split{s}/run{r}`` folders (:data:`EXPERIMENT_LAYOUT`), never in any other folder (a copy such as
``backup_of_split0`` stays whole, marker and all), never the folder itself, and never the current
folder, the home folder or a folder above the current one. A single output file (predictions, a
figure) is replaced only when asked (``--overwrite``), and a predictions file only if its first
line is one diffusion-pde writes. Everything is checked before any work starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from .checkpoint import write_text_atomic

MARKER = ".diffusion-pde-run"
RESULT_FILES = frozenset({
    "results.json", "results.csv", "curves.png", "attention.png",     # an experiment
    "forecast.png",                                                  # a forecasting experiment
    "history.csv", "last.pt", "best.pt", "result.json",              # a (split, run)
    "sweep.json", "sweep.png",                                      # a sweep
})
EXPERIMENT_LAYOUT = (re.compile(r"split\d+"), re.compile(r"run\d+"))  # the folders of an experiment, level by level
SWEEP_LAYOUT = (re.compile(r"L\d+-tau[0-9.e+-]+-mu[0-9.e+-]+"), *EXPERIMENT_LAYOUT)  # a sweep: an experiment per point
_TEMPORARY = re.compile(r"\.(?P<name>[^/]+)\.[^./]+\.tmp")  # what training.checkpoint leaves when killed mid-write
_MARKER_TEXT = ("This folder holds results written by diffusion-pde. --overwrite deletes only the files diffusion-pde "
                "writes here (results, checkpoints, histories, plots); anything else stays.\n")


def _protected(folder: Path) -> str | None:
    """Why ``folder`` may never be emptied (the current folder, home, a folder above the current
    one), or None."""
    resolved, cwd = folder.resolve(), Path.cwd().resolve()
    if resolved == cwd:
        return "is the current folder"
    if resolved == Path.home().resolve():
        return "is the home folder"
    if resolved in cwd.parents:
        return "holds the current folder"
    return None


def _writable_parent(given: Path, path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` (``given``, with ``~`` expanded) must be a folder
    we can write into."""
    parent = next(p for p in path.parents if p.exists())  # "." or "/" at the latest
    if not parent.is_dir():
        raise ValueError(f"{flag} {given}: {parent} is a file, so no folder can be made below it; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {given}: the folder {parent} is not writable; choose a path you can write to")


def results_path(out: str | Path) -> Path:
    """The folder ``out`` names, as it is checked and written: ``~`` expanded and ``..`` resolved
    lexically, so that ``new/..`` is the folder it ends in, not a folder made on the way."""
    return Path(os.path.normpath(Path(out).expanduser()))


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """``out`` must be new, empty or a results folder of ours; holding results it needs ``resume``
    (continue) or ``overwrite`` (start over), not both, and ``overwrite`` never empties a protected
    folder. Raises ValueError (PermissionError: not writable) naming ``--out`` and the fix."""
    if resume and overwrite:
        raise ValueError("resume (--resume) continues the results in out, overwrite (--overwrite) deletes them: "
                         "pass one of them, not both")
    path = results_path(out)  # messages show ``out`` as given
    if not path.exists():
        _writable_parent(out, path, "out (--out)")
        return
    if not path.is_dir():
        raise ValueError(f"out (--out) {out} is a file, not a folder; choose a folder for the results")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"out (--out) {out} is not writable; choose a folder you can write to")
    reason = _protected(path) if overwrite else None
    if reason is not None:
        raise ValueError(f"out (--out) {out} {reason}, which overwrite (--overwrite) never empties; choose a folder "
                         "of its own for the results")
    if not any(path.iterdir()):
        return
    if not (path / MARKER).is_file():
        raise ValueError(f"out (--out) {out} holds files that diffusion-pde did not write (it has no {MARKER} marker), "
                         "so nothing there is touched: choose a new or empty folder for the results")
    if not (resume or overwrite):
        raise ValueError(f"out (--out) {out} already holds results: pass resume=True (--resume) to continue them or "
                         "overwrite=True (--overwrite) to start over")


def make_results_folder(folder: Path) -> Path:
    """Create ``folder`` (and missing parents) and mark it as ours, unless it already holds
    files that are not marked (a folder of the user's, which stays unmarked)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER).exists() and not any(folder.iterdir()):
        write_text_atomic(_MARKER_TEXT, folder / MARKER)
    return folder


def _ours(name: str) -> bool:
    temporary = _TEMPORARY.fullmatch(name)
    return name in RESULT_FILES or (temporary is not None and temporary["name"] in RESULT_FILES | {MARKER})


def remove_results(folder: Path, layout: tuple[re.Pattern[str], ...] = EXPERIMENT_LAYOUT) -> None:
    """Delete what diffusion-pde wrote in ``folder`` if it is marked as ours: its result files,
    and below it only in the marked folders whose names ``layout`` gives level by level
    (``split{s}``, then ``run{r}``), which go entirely when nothing else is left in them. Files of
    other names, folders of other names (a user's copy of a split, even with its marker) and
    links stay; ``folder`` itself and its marker stay."""
    if not (folder / MARKER).is_file():
        return
    for path in folder.iterdir():
        if path.is_symlink():
            continue
        if path.is_dir():
            if not layout or not layout[0].fullmatch(path.name):
                continue
            remove_results(path, layout[1:])
            if [p.name for p in path.iterdir()] == [MARKER]:
                (path / MARKER).unlink()
                path.rmdir()
        elif path.is_file() and _ours(path.name):
            path.unlink()


def check_output_file(path: str | Path, flag: str, overwrite: bool, *,
                      ours: tuple[str, Callable[[str], bool]] | None = None) -> Path:
    """A file the command writes at the end: its folder must exist and be writable, it must not
    be a folder, and an existing file is replaced only with ``overwrite`` — and, when ``ours`` =
    (what such files are, a test of their whole first line) is given, only if its first line
    passes."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name such as {target / 'out'}")
    if not target.parent.is_dir():
        raise ValueError(f"{flag} {path}: there is no folder {target.parent}; create it or choose another path")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: the folder {target.parent} is not writable; choose another path")
    if target.exists() and not overwrite:
        raise ValueError(f"{flag} {path} exists; pass --overwrite to replace it, or choose another name")
    if target.exists() and ours is not None and not ours[1](_first_line(target)):
        raise ValueError(f"{flag} {path} exists and was not written by diffusion-pde (its first line is not that of "
                         f"{ours[0]}), so it is not replaced even with --overwrite; choose another name")
    return target


def _first_line(path: Path, limit: int = 1 << 20) -> str:
    """The first line of ``path`` (at most ``limit`` bytes; undecodable bytes replaced)."""
    with path.open("rb") as handle:
        return handle.readline(limit).decode("utf-8", errors="replace").rstrip("\r\n")
