"""System-test DAG: one ``EnhancePhotoBatchOperator`` over the photos of param ``img_urls``, results and
ledger in ``output_dir``; deferrable, with retries, as the system tests kill its worker, its triggerer
and the database under it.

``on_unknown_outcome="resubmit"``: a worker killed between a submission's POST and the ledger's record of
its job id leaves an unknown outcome, which a retry submits again (within a coin limit) so that the run
can end with every photo enhanced; the test counts such items from the ledger.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator

#: Jobs in flight at once, and how fast they are submitted.
MAX_IN_FLIGHT = 100
SUBMITS_PER_SECOND = 50

with DAG(
    dag_id="system_hitpaw_batch",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["test", "system"],
    params={
        "img_urls": Param([], type="array", items={"type": "string"}),
        "output_dir": Param("/tmp/hitpaw-system-batch", type="string"),
    },
) as dag:

    @task
    def photo_urls(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["img_urls"])

    EnhancePhotoBatchOperator(
        task_id="enhance_batch",
        img_urls=photo_urls(),
        output_path="{{ params.output_dir }}",
        model_name="face_2x",
        max_in_flight=MAX_IN_FLIGHT,
        submits_per_second=SUBMITS_PER_SECOND,
        poll_interval=1,
        timeout=600,
        deferrable=True,
        on_unknown_outcome="resubmit",
        max_unknown_outcome_coins=10_000,
        retries=4,
        retry_delay=timedelta(seconds=1),
    )
