"""The docs stand alone and match the code: their code comes from the example DAGs, their links lead
somewhere in the repository, and nothing in the project cites a file outside it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_code_blocks_of_the_docs_are_the_example_dags_own():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_docs.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_relative_link_leads_to_a_file_of_the_repository():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_nothing_cites_a_file_outside_the_repository():
    files = [*PAGES, *(ROOT / "airflow_provider_hitpaw").rglob("*.py"), *(ROOT / "example_dags").glob("*.py")]
    for path in files:
        text = path.read_text()
        for outside in ("../shared", "HITPAW-NOTES", "AIRFLOW-NOTES", "seeds/000_"):
            assert outside not in text, f"{path.relative_to(ROOT)} cites {outside}"


def test_every_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
