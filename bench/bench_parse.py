"""Benchmark 5 -- parse cost: importing an example DAG in a fresh interpreter, against a DAG of
EmptyOperators with the same number of tasks.

It takes every ``example_dags/*.py`` (or, when there is none, ``bench/dags/standin_hitpaw_dag.py``),
runs :mod:`bench.parse_client` on it and on its EmptyOperator twin alternately in fresh interpreters
(timing the DAG file's import after ``airflow.sdk`` is loaded), and reports the median difference. ``python -X importtime`` then shows which heavy libraries the
DAG pulled in and through which provider module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULT_ENV, BenchResult, Row, median, run_json

FULL = {"runs": 15}
QUICK = {"runs": 6}
SMOKE = {"runs": 1}
TARGET_MS = 50.0
HEAVY_ROOTS = ("aiohttp", "requests", "urllib3", "tenacity", "PIL", "httpx")

EMPTY_DAG = '''
import pendulum
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="bench_empty", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
    for i in range({tasks}):
        EmptyOperator(task_id=f"empty_{{i}}")
'''


def dag_files() -> list[Path]:
    found = sorted(p for p in (REPO / "example_dags").glob("*.py") if not p.name.startswith("_"))
    return found or [REPO / "bench" / "dags" / "standin_hitpaw_dag.py"]


def importers_of_heavy(dag_file: Path) -> dict[str, str]:
    """For each heavy library the DAG file imports: the module that imported it first."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "bench.parse_client", str(dag_file)],
            cwd=REPO, env={**os.environ, RESULT_ENV: os.path.join(tmp, "r.json")},
            capture_output=True, text=True, timeout=300, check=True,
        )
    entries = []  # (depth, name, cumulative us), in the order importtime prints them (children first)
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            entries.append((len(match.group(3)), match.group(4), int(match.group(2))))
    found: dict[str, str] = {}
    for i, (depth, name, cumulative) in enumerate(entries):
        root = name.split(".")[0]
        if root not in HEAVY_ROOTS or root in found or name != root:
            continue
        parent = next((n for d, n, _ in entries[i + 1:] if d < depth), "?")
        # Climb to the first provider module on the import chain, if any.
        chain, level = [parent], depth
        for d, n, _ in entries[i + 1:]:
            if d < level:
                chain.append(n)
                level = d
        owner = next((n for n in chain if n.startswith("airflow_provider_hitpaw")), parent)
        found[root] = f"{owner} ({cumulative / 1000:.0f} ms)"
    return found


def run(runs: int, log: Any = print) -> BenchResult:
    result = BenchResult("parse")
    for dag_file in dag_files():
        probe = run_json("parse_client", str(dag_file))
        with tempfile.TemporaryDirectory(prefix="hitpaw-bench-parse-") as tmp:
            empty = Path(tmp) / "empty_dag.py"
            empty.write_text(EMPTY_DAG.format(tasks=max(1, probe["tasks"])), encoding="utf-8")
            run_json("parse_client", str(empty))  # warm the file cache the same way
            ours: list[float] = []
            base: list[float] = []
            for r in range(runs):
                pair = [(ours, dag_file), (base, empty)]
                for bucket, path in pair if r % 2 == 0 else reversed(pair):
                    bucket.append(run_json("parse_client", str(path))["seconds"] * 1000)
        diff = median(ours) - median(base)
        heavy = importers_of_heavy(dag_file)
        log(f"  parse {dag_file.name}: {median(ours):.0f} ms vs {median(base):.0f} ms empty "
            f"({probe['tasks']} tasks), heavy imports: {heavy or 'none'}")
        result.rows.append(
            Row("parse", f"{dag_file.name} ({probe['tasks']} tasks) minus EmptyOperator DAG",
                f"{diff:+.0f} ms", f"{median(base):.0f} ms (empty)", median(ours) / median(base),
                f"<= +{TARGET_MS:.0f} ms", diff <= TARGET_MS))
        result.notes.append(
            f"{dag_file.name}: {runs} fresh interpreters each, medians {median(ours):.0f} ms vs "
            f"{median(base):.0f} ms; heavy libraries imported at parse time (importer, cumulative "
            f"import time): {', '.join(f'{k} via {v}' for k, v in heavy.items()) or 'none'}.")
    return result
