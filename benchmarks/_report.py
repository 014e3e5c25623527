"""Write a benchmark's markdown section into docs/benchmarks.md (between its own markers)."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure here was produced by the command shown with it; machines are noisy, so\ncompare ratios taken in one run rather than absolute times across runs.\n"


def write_section(key: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the block ``<!-- key:start --> ... <!-- key:end -->`` in ``path``."""
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- {key}:start -->\n{markdown.rstrip()}\n<!-- {key}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)


@contextmanager
def baseline_tree(commit: str, root: Path) -> Iterator[tuple[Path, str]]:
    """(folder, short hash) of a temporary ``git worktree`` of ``commit`` of the repository at
    ``root``, removed afterwards: a benchmark measures the old code in the same run by running its
    child in that folder (:func:`run_in_child` with ``cwd``)."""
    tree = Path(tempfile.mkdtemp(prefix="baseline-")) / "tree"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), commit], check=True,
                   capture_output=True)
    try:
        short = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True,
                               capture_output=True, text=True).stdout.strip()
        yield tree, short
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tree.parent, ignore_errors=True)


def run_in_child(module: str, call: str, env: dict[str, str] | None = None, cwd: Path | str | None = None) -> Any:
    """``call`` (e.g. ``"measure(1000, 5)"``) evaluated by ``module`` of benchmarks/ in a fresh
    Python process (so that its peak memory is its own), in the folder ``cwd`` (default: this
    one's; the child imports packages from there first); the JSON it returns."""
    folder = str(Path(__file__).resolve().parent)
    code = f"import json, sys; sys.path.insert(0, {folder!r}); from {module} import *; print(json.dumps({call}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_seconds(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """The median wall time of ``repeats`` calls of ``fn`` (after one unmeasured call with ``warm_up``)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
