"""Test-only DAGs: the first try dies right after the submission was made and remembered.

A real worker crash cannot happen inside ``dag.test()``; raising a non-HitPaw error at the point where
the worker would have died (the start of the wait) has the same effect on the next try: the job id is
in ``task_state_store`` and nothing else of the first try survives.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator


class SimulatedWorkerCrash(RuntimeError):
    """Stands for the worker dying: not a HitPaw error, so Airflow retries the task."""


class _HookThatCrashesWhenWaiting(HitPawHook):
    def wait_for_completion(self, *args: Any, **kwargs: Any) -> Any:
        raise SimulatedWorkerCrash("worker lost right after the submission (test)")


class CrashOnFirstTryOperator(EnhancePhotoOperator):
    """Dies where the first try would start waiting, in the worker or by deferring."""

    def execute(self, context: Any) -> Any:
        first_try = context["ti"].try_number == 1
        self.__dict__.pop("hook", None)
        if first_try:
            self.__dict__["hook"] = _HookThatCrashesWhenWaiting(self.hitpaw_conn_id)
        self._crash_instead_of_deferring = first_try
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._crash_instead_of_deferring:
            raise SimulatedWorkerCrash("deferral lost right after the submission (test)")
        return super().defer(**kwargs)


def retry_dag(mode: str) -> DAG:
    with DAG(
        dag_id=f"hitpaw_retry_after_submit_{mode}",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        tags=["test"],
    ) as dag:
        CrashOnFirstTryOperator(
            task_id="enhance_photo",
            img_url="{{ conn.hitpaw_default.host }}/samples/portrait.jpg",
            model_name="face_2x",
            deferrable=mode == "deferrable",
            poll_interval=1,
            timeout=120,
            retries=1,
            retry_delay=timedelta(0),
        )
    return dag


retry_sync = retry_dag("sync")
retry_deferrable = retry_dag("deferrable")
