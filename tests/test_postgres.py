"""The batch example in a real Airflow deployment whose metadata database is PostgreSQL.

PostgreSQL, unlike SQLite, enforces the length of ``VARCHAR`` columns. A mapped task's label
(``map_index_template``, stored in ``task_instance.rendered_map_index``, ``VARCHAR(250)``) rendered
from a long presigned photo URL was refused when the task reported its end: the task failed after
HitPaw was paid and the job completed.

One private PostgreSQL cluster (``tests/postgres.py``: ``initdb`` in a temporary folder, a free port)
and one deployment (``tests/deployment.py``: scheduler, triggerer, DAG processor, API server) on it:

1. the batch example over two 700-character URLs succeeds, each task labelled ``portrait.jpg``;
2. a mapped task whose own ``map_index_template`` renders the whole 700-character URL fails before
   paying anything, and its failure is recorded (with a label cut to the column's length).

Marked ``deployment`` and ``postgres`` (``-m "not postgres"`` deselects it). Without the PostgreSQL
server binaries (Debian's ``postgresql`` package, which ``.ci/run`` installs) or ``psycopg2`` it is
skipped, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.deployment import EXAMPLE_DAGS, Deployment
from tests.support.postgres import PostgresCluster, find_bin_dir

DEADLINE_SECONDS = 330

pytestmark = [pytest.mark.deployment, pytest.mark.postgres, pytest.mark.timeout(DEADLINE_SECONDS + 60)]

API_KEY = "postgres-key"
BATCH = "example_hitpaw_batch"
LONG_LABEL = "hitpaw_postgres_long_label"
URL_LENGTH = 700
RUN_TIMEOUT = 150
LONG_LABEL_SOURCE = """
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

with DAG("hitpaw_postgres_long_label", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
         params={"img_urls": Param([], type="array")}) as dag:
    EnhancePhotoOperator.partial(
        task_id="enhance_photo", model_name="face_2x", poll_interval=1, retries=2, retry_delay=timedelta(0),
        map_index_template="{{ task.img_url }}",  # a user's own label: the whole URL
    ).expand(img_url=["__URLS__"])
"""


def _missing() -> str | None:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[test]')"
    if find_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    return None


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL test: {missing}")
        pytest.skip(missing)
    with PostgresCluster() as cluster:
        yield cluster


def presigned_url(sandbox: Any, tag: str) -> str:
    """A URL of the sandbox's sample photo, :data:`URL_LENGTH` characters long, like a presigned one."""
    url = sandbox.url(f"/samples/portrait.jpg?case={tag}&X-Amz-Credential=AKIA%2F20250101&X-Amz-Signature=")
    return url + "0123456789abcdef" * ((URL_LENGTH - len(url)) // 16 + 1)


def test_long_photo_urls_on_postgres_the_batch_succeeds_and_an_overlong_label_fails_before_paying(
    postgres: PostgresCluster,
):
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    started = time.monotonic()
    sandbox = start_sandbox_process(api_keys={API_KEY: 100_000}, job_seconds=2)
    try:
        batch_urls = [presigned_url(sandbox, f"batch-{n}")[:URL_LENGTH] for n in (1, 2)]
        overlong_url = presigned_url(sandbox, "own-label")[:URL_LENGTH]
        assert all(len(url) == URL_LENGTH for url in [*batch_urls, overlong_url])
        env = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.sqlalchemy_url,
            "AIRFLOW_CONN_HITPAW_DEFAULT": json.dumps(
                {"conn_type": "hitpaw", "host": sandbox.base_url, "password": API_KEY}
            ),
        }
        sources = {"hitpaw_postgres_long_label.py": LONG_LABEL_SOURCE.replace('"__URLS__"', repr(overlong_url))}
        with Deployment(
            dag_files=[EXAMPLE_DAGS / "example_hitpaw_batch.py"], dag_sources=sources, env=env,
            parallelism=4, deadline_seconds=DEADLINE_SECONDS,
        ) as deployment:
            # The deployment's metadata really is in this PostgreSQL cluster.
            assert postgres.query("SELECT count(*) FROM alembic_version")[0][0] == 1
            deployment.wait_for_dags([BATCH, LONG_LABEL])
            deployment.unpause(BATCH)
            deployment.unpause(LONG_LABEL)
            runs = [deployment.trigger(BATCH, {"img_urls": batch_urls}), deployment.trigger(LONG_LABEL)]
            deployment.wait_for_runs(runs, RUN_TIMEOUT)
            batch_run, long_run = runs
            tis = {(ti["task_id"], ti.get("map_index", -1)): ti for ti in batch_run.task_instances}
            assert batch_run.state == "success", (batch_run.task_states, deployment.logs_report())
            assert tis[("report", -1)]["state"] == "success"
            assert {i: tis[("enhance_photo", i)]["try_number"] for i in (0, 1)} == {0: 1, 1: 1}
            assert long_run.state == "failed", long_run.task_states
            labels: dict[Any, Any] = dict(postgres.query(  # type: ignore[arg-type]
                "SELECT dag_id || '[' || map_index || ']', rendered_map_index FROM task_instance "
                "WHERE task_id = 'enhance_photo' AND map_index >= 0"
            ))
            long_states: dict[Any, Any] = dict(postgres.query(  # type: ignore[arg-type]
                "SELECT map_index, state || ' in try ' || try_number FROM task_instance "
                "WHERE dag_id = %s AND task_id = 'enhance_photo'",
                LONG_LABEL,
            ))
    finally:
        submissions = sandbox.stats()["submissions"]
        sandbox.stop()

    # 1. Each batch task labelled with the photo's file name: short, no signature.
    assert labels[f"{BATCH}[0]"] == labels[f"{BATCH}[1]"] == "portrait.jpg", labels
    # 2. The task whose own label is too long failed in its first try, its failure recorded in
    # PostgreSQL with the label cut to the column; nothing was submitted for it.
    assert long_states == {0: "failed in try 1"}, long_states
    assert 0 < len(labels[f"{LONG_LABEL}[0]"] or "") <= 250, labels
    assert sorted(s["img_url"] for s in submissions) == sorted(batch_urls), [s["img_url"][:80] for s in submissions]
    print(f"PostgreSQL deployment test: {time.monotonic() - started:.0f} s")
