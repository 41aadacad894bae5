"""A throw-away Airflow home for the test session, set up before anything imports Airflow.

Airflow reads ``AIRFLOW_HOME`` and its database URL once, when first imported, so this module must be
imported at the top of ``conftest.py``. The ``airflow_db`` fixture fills the DAGs folder (the example
DAGs and ``tests/dags``) and runs ``airflow db migrate`` once per session, for ``dag.test()``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DAG_SOURCES = (PROJECT / "example_dags", PROJECT / "tests" / "dags")

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="hitpaw-test-airflow-home-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)

os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"
# example_hitpaw_batch_folder's output folder, which is also its outlet asset: one for the whole session,
# since Airflow 3.1 registers a DAG's assets once, whichever test (or DAG-folder parse) sees it first.
BATCH_FOLDER_OUTPUT = AIRFLOW_HOME / "batch-folder" / "enhanced"
os.environ["HITPAW_BATCH_OUTPUT"] = f"{BATCH_FOLDER_OUTPUT}/"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:  # the folder itself goes at exit (atexit above)
    """The DAGs folder of an Airflow home whose SQLite database is migrated."""
    DAGS_FOLDER.mkdir(parents=True, exist_ok=True)
    for source in DAG_SOURCES:
        for dag_file in source.glob("*.py"):
            shutil.copy(dag_file, DAGS_FOLDER / dag_file.name)
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{(done.stdout + done.stderr)[-3000:]}")
    yield DAGS_FOLDER
