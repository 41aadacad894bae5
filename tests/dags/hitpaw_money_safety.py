"""Test-only DAGs for what a retry may cost: each task has retries, and the sandbox counts what was paid.

- ``hitpaw_timeout_during_submit``: ``execution_timeout`` fires while the submission's reply is slow.
- ``hitpaw_final_failure_sync`` / ``_deferrable``: the job ends in a state a retry would buy again (NSFW).
- ``hitpaw_store_refuses_writes``: a try whose ``task_state_store`` cannot keep the job.

All use the ``hitpaw_default`` connection (the tests point it at a sandbox) and retry at once.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

PHOTO = "{{ conn.hitpaw_default.host }}/samples/portrait.jpg"


def money_dag(dag_id: str, **operator_kwargs: object) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        tags=["test"],
    ) as dag:
        EnhancePhotoOperator(
            task_id="enhance_photo",
            img_url=PHOTO,
            model_name="face_2x",
            poll_interval=1,
            timeout=120,
            retries=2,
            retry_delay=timedelta(0),
            **operator_kwargs,  # type: ignore[arg-type]
        )
    return dag


timeout_during_submit = money_dag("hitpaw_timeout_during_submit", execution_timeout=timedelta(seconds=2))
final_failure_sync = money_dag("hitpaw_final_failure_sync", deferrable=False)
final_failure_deferrable = money_dag("hitpaw_final_failure_deferrable", deferrable=True)
store_refuses_writes = money_dag("hitpaw_store_refuses_writes", deferrable=False)
