"""The production-shaped deployment of the system tests, as one object: :func:`celery_stack`.

On loopback, each a process (or process group) of its own:

- PostgreSQL: a private cluster (``tests/support/postgres.py``: ``initdb`` in a temporary folder, a
  free port), Airflow's metadata database and Celery's result backend;
- Redis (``tests/support/redis_server.py``, Debian's ``redis-server``, a free port): the Celery broker;
- the HitPaw sandbox (``start_sandbox_process``), whose ledger the scenarios read;
- Airflow with CeleryExecutor (``tests/support/deployment.py``): scheduler, DAG processor, API server,
  two triggerers and two Celery workers of four slots each.

Heartbeats and take-over thresholds are set low (:data:`TAKEOVER_SETTINGS`), so that the triggers of a
dead triggerer move within seconds and a task whose worker died is failed (and retried) within seconds.
Without PostgreSQL's server binaries, ``redis-server`` or the Celery provider the tests are skipped,
except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import EXAMPLE_DAGS, PROJECT, Deployment
from tests.support.postgres import PostgresCluster, find_bin_dir
from tests.support.redis_server import RedisServer, find_redis_server

API_KEY = "system-key"
COINS = 10_000_000
SYSTEM_DAGS = Path(__file__).parent / "dags"
FLEET = "system_hitpaw_fleet"
#: Scenario 5's DAG (``dags/system_hitpaw_batch.py``), deployed when ``EnhancePhotoBatchOperator`` exists.
BATCH_DAG = "system_hitpaw_batch"
HAS_BATCH_OPERATOR = importlib.util.find_spec("airflow_provider_hitpaw.operators.batch") is not None
DAG_IDS = (
    "example_hitpaw_enhance_photo",
    "example_hitpaw_batch",
    "example_hitpaw_submit_then_sense",
    "example_hitpaw_enhance_local_photo",
    FLEET,
    *((BATCH_DAG,) if HAS_BATCH_OPERATOR else ()),
)
EXAMPLE_DAG_FILES = (
    "example_hitpaw_enhance_photo.py",
    "example_hitpaw_batch.py",
    "example_hitpaw_submit_then_sense.py",
    "example_hitpaw_enhance_local_photo.py",
)
#: Slots per Celery worker; [core] parallelism covers both workers.
WORKER_SLOTS = 4
CELERY_WORKERS = 2
TRIGGERERS = 2

#: Take-overs in seconds rather than minutes (Airflow's defaults: 30 s and 300 s).
TAKEOVER_SETTINGS = {
    # A triggerer whose heartbeat is older than this is dead: its triggers go to a live one.
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    # A running task whose heartbeat is older than this is failed by the scheduler (then retried).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    "AIRFLOW__CORE__PARALLELISM": str(WORKER_SLOTS * CELERY_WORKERS * 2),
}


def missing_requirements() -> str | None:
    """What the system tests need and this machine lacks, or None."""
    if find_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if find_redis_server() is None:
        return "redis-server not found: apt-get install redis-server"
    try:
        import airflow.providers.celery  # noqa: F401
        import psycopg2  # noqa: F401
        import redis  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed: pip install -e '.[test,system]' (make system-deps)"
    return None


def require_system_stack() -> None:
    missing = missing_requirements()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the system tests: {missing}")
        pytest.skip(missing)


@dataclass
class CeleryStack:
    postgres: PostgresCluster
    redis: RedisServer
    sandbox: Any
    deployment: Deployment
    #: a folder for the scenarios' output folders, deleted at the end
    scratch: Path
    #: what each scenario measured, printed at the end of the session
    figures: dict[str, Any] = field(default_factory=dict)

    def photo(self, scenario: str, n: int) -> str:
        """A distinct URL of the sandbox's sample portrait, so charges can be told apart per photo."""
        return self.sandbox.url(f"/samples/portrait.jpg?scenario={scenario}&n={n}")

    def folder(self, name: str) -> Path:
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mark(self) -> int:
        """A mark in the sandbox's ledger: submissions after it are :meth:`charges_since` it."""
        return len(self.sandbox.stats()["submissions"])

    def charges_since(self, mark: int) -> list[dict[str, Any]]:
        return list(self.sandbox.stats()["submissions"][mark:])


def assert_one_charge_per_photo(charges: list[dict[str, Any]], photos: list[str]) -> None:
    """The ledger's charges after a mark are exactly one per photo, each a paid job."""
    per_photo = Counter(c["img_url"] for c in charges)
    assert per_photo == Counter(photos), {
        "charged more than once": {u: n for u, n in per_photo.items() if n > 1},
        "never charged": sorted(set(photos) - set(per_photo)),
        "not ours": sorted(set(per_photo) - set(photos)),
    }
    assert all(c["coins"] > 0 for c in charges), charges


def assert_results_in_folder(folder: Path, job_ids: list[str]) -> None:
    """The folder holds one result per job, each named after its job id (and nothing else)."""
    names = sorted(p.name for p in folder.iterdir())
    for job_id in job_ids:
        tag = job_id.replace(":", "~")
        found = [n for n in names if tag in n]
        assert len(found) == 1, f"job {job_id}: {found} in {folder} ({len(names)} files)"
        assert (folder / found[0]).stat().st_size > 0, found[0]
    assert len(names) == len(job_ids), f"{len(names)} files for {len(job_ids)} jobs in {folder}"


def write_figures(figures: dict[str, Any]) -> Path:
    """Print the scenarios' figures and keep them in ``test-artifacts/system/`` (``HITPAW_SYSTEM_ARTIFACTS``
    moves it), one file per Airflow version, for RELIABILITY.md and CI's artifacts."""
    from airflow import __version__ as airflow_version

    folder = Path(os.environ.get("HITPAW_SYSTEM_ARTIFACTS") or PROJECT / "test-artifacts" / "system")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"celery-figures-airflow-{airflow_version}.json"
    path.write_text(json.dumps({"airflow": airflow_version, **figures}, indent=2) + "\n", encoding="utf-8")
    print(f"\nsystem figures ({path}): {json.dumps(figures)}")
    return path


@contextlib.contextmanager
def celery_deployment(
    env: dict[str, str], *, worker_slots: int = WORKER_SLOTS, deadline_seconds: float = 660.0, **options: Any,
) -> Iterator[tuple[PostgresCluster, RedisServer, Deployment]]:
    """PostgreSQL, Redis and Airflow with CeleryExecutor on them (two workers of ``worker_slots`` slots,
    two triggerers); for the system tests and the benchmarks (``bench/celery_worker_slots.py``).

    :param env: the deployment's environment on top of the database URL (connections, settings).
    :param worker_slots: slots per Celery worker.
    :param deadline_seconds: the deployment's overall budget.
    :param options: more :class:`Deployment` arguments (``dag_files``, ``dag_sources``...).
    """
    with PostgresCluster() as postgres, RedisServer() as redis:
        full_env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.sqlalchemy_url, **env}
        with Deployment(
            env=full_env, parallelism=worker_slots, deadline_seconds=deadline_seconds, triggerers=TRIGGERERS,
            celery_workers=CELERY_WORKERS, broker_url=redis.url, start_timeout=240, **options,
        ) as deployment:
            yield postgres, redis, deployment


@pytest.fixture(scope="module")
def celery_stack() -> Iterator[CeleryStack]:
    """PostgreSQL, Redis, the sandbox and Airflow with CeleryExecutor; shared by a module's scenarios."""
    require_system_stack()
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    scratch = Path(tempfile.mkdtemp(prefix="hitpaw-system-"))
    sandbox = start_sandbox_process(api_keys={API_KEY: COINS}, job_seconds=5)
    try:
        env = {
            "AIRFLOW_CONN_HITPAW_DEFAULT": json.dumps(
                {"conn_type": "hitpaw", "host": sandbox.base_url, "password": API_KEY}
            ),
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            **TAKEOVER_SETTINGS,
        }
        dag_files = [
            *(EXAMPLE_DAGS / name for name in EXAMPLE_DAG_FILES),
            *(path for path in sorted(SYSTEM_DAGS.glob("*.py")) if path.stem in DAG_IDS),
        ]
        with celery_deployment(env, dag_files=dag_files, deadline_seconds=STACK_DEADLINE) as (
            postgres, redis, deployment,
        ):
            deployment.wait_for_dags(DAG_IDS)
            for dag_id in DAG_IDS:
                deployment.unpause(dag_id)
            stack = CeleryStack(postgres, redis, sandbox, deployment, scratch)
            stack.figures["startup_seconds"] = round(deployment.elapsed, 1)
            yield stack
            write_figures(stack.figures)
    finally:
        sandbox.stop()
        shutil.rmtree(scratch, ignore_errors=True)


#: The whole module's budget, start-up included; every wait is bounded by it.
STACK_DEADLINE = 660
