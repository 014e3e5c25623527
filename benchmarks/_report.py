"""Write a benchmark's markdown section into docs/benchmarks.md (between its own markers)."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure here was produced by the command shown with it; machines are noisy, so\ncompare ratios taken in one run rather than absolute times across runs.\n"


def write_section(key: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the block ``<!-- key:start --> ... <!-- key:end -->`` in ``path``."""
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- {key}:start -->\n{markdown.rstrip()}\n<!-- {key}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)
