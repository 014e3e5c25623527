"""Write docs/errors.md from the bad-input cases of tests/test_error_table.py.

Runs every case (each in a fresh temporary working folder, with the same checks as the test) and
writes the table of inputs, errors, messages and tests. Run it after adding a case or changing a
message; ``tests/test_error_table.py`` fails while the page is out of date.

    python tools/write_error_table.py
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from diffusion_pde.training.checkpoint import write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def load_table():
    spec = importlib.util.spec_from_file_location("error_table", REPO / "tests" / "test_error_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> int:
    table = load_table()
    rows = {}
    try:
        for case in table.CASES:
            with tempfile.TemporaryDirectory(prefix=f"{case.id}-") as folder:
                rows[case.id] = table.render_row(case, *table.run_case(case, Path(folder)))
    finally:
        if table._finished_run.cache_info().currsize:
            shutil.rmtree(table._finished_run().parent)
    path = REPO / "docs" / "errors.md"
    write_text_atomic(table.render_doc(rows), path)
    print(f"{path.relative_to(REPO)}: {len(table.API_CASES)} API rows, {len(table.CLI_CASES)} command-line rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
