"""Fill the code blocks of the docs from the example DAGs, so the docs never drift from code that runs.

A block in a Markdown file::

    <!-- example: example_dags/example_hitpaw_batch.py howto_operator_hitpaw_batch -->
    ```python
    ...
    ```

gets the lines between ``# [START howto_operator_hitpaw_batch]`` and ``# [END ...]`` of that file,
dedented. ``python scripts/sync_docs.py`` rewrites the files; ``--check`` only reports (exit 1) when a
block differs, which the test suite runs.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- example: (\S+) (\S+) -->\n```python\n)(.*?)(```)", re.S)


def snippet(path: str, marker: str) -> str:
    lines = (ROOT / path).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"# [START {marker}]")
    end = next(i for i, line in enumerate(lines) if line.strip() == f"# [END {marker}]")
    return textwrap.dedent("\n".join(lines[start + 1 : end])).strip("\n") + "\n"


def synced(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + snippet(m.group(2), m.group(3)) + m.group(5), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks, change nothing")
    args = parser.parse_args(argv)
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        new = synced(text)
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("stale example blocks (run python scripts/sync_docs.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
