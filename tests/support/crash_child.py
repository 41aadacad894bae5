"""The child processes of ``tests/test_crash.py``: ``python -m tests.support.crash_child first|retry|trigger ARG``.

Each does what a worker or a triggerer would, so that the test can kill it with SIGKILL mid-wait.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from tests.support.dag_files import load_dag

CRASH_DAG_ID = "chaos_crash_retry"


def _load_dag(dags_folder: str) -> Any:
    return load_dag(dags_folder, f"{CRASH_DAG_ID}.py", CRASH_DAG_ID)


def _child_first_try(dags_folder: str) -> None:
    """Run the crash DAG with dag.test(); the parent kills this process mid-wait."""
    _load_dag(dags_folder).test()


def _child_retry(dags_folder: str) -> None:
    """Do what the scheduler does for a task whose worker died, then run the retry in the same dag run."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == CRASH_DAG_ID).order_by(DagRun.id.desc()))
        (ti,) = run.get_task_instances(session=session)
        assert ti.state == TaskInstanceState.RUNNING, ti.state  # the killed try never got to say anything
        # The scheduler finds the task without heartbeat; the failure callback puts it up for retry.
        ti.prepare_db_for_next_try(session)
        ti.state = TaskInstanceState.UP_FOR_RETRY
        run_id = run.run_id

    def same_run(**kwargs: Any) -> Any:  # dag.test() would delete the run (and its task_state_store)
        session = kwargs["session"]
        existing = session.scalar(select(DagRun).where(DagRun.dag_id == CRASH_DAG_ID, DagRun.run_id == run_id))
        existing.dag = kwargs["dag"]
        return existing

    dagrun_module.get_or_create_dagrun = same_run
    _load_dag(dags_folder).test()
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == run_id))
        (ti,) = run.get_task_instances(session=session)
        print("CRASH-RESULT " + json.dumps({"state": str(run.state), "try_number": ti.try_number}), flush=True)


def _child_trigger(serialized: str) -> None:
    """Run one trigger (rebuilt from its kwargs) like a triggerer; the parent kills this process."""
    from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

    trigger = HitPawTaskStatusTrigger(**json.loads(serialized))

    async def run() -> None:
        async for event in trigger.run():
            print("EVENT " + json.dumps(event.payload), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    {"first": _child_first_try, "retry": _child_retry, "trigger": _child_trigger}[sys.argv[1]](sys.argv[2])
    sys.exit(0)


