"""Test-only DAG of ``tests/test_batch_crash.py``: one ``EnhancePhotoBatchOperator`` over many copies of the
sandbox's sample photo, deferrable, with retries, that the test kills (its worker, then the triggerer).

Set by the test in the deployment's environment, read when the file is parsed:
``HITPAW_BATCH_CRASH_OUTPUT`` (the output folder, also the task's asset) and ``HITPAW_BATCH_CRASH_PHOTOS``
(how many photos). The photos are ``<the connection's host>/samples/portrait.jpg?copy=N``, rendered in
the worker.

``on_unknown_outcome="resubmit"``: a worker killed between a submission's POST and the ledger's record
of its job id leaves an unknown outcome; the retry resubmits it (within a coin limit) so that the run
can still end with every photo enhanced. The test counts such items from the ledger.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator

DAG_ID = "hitpaw_batch_crash"
TASK_ID = "enhance_batch"
OUTPUT = os.environ.get("HITPAW_BATCH_CRASH_OUTPUT") or "/tmp/hitpaw-batch-crash/"
PHOTOS = int(os.environ.get("HITPAW_BATCH_CRASH_PHOTOS") or "40")
MAX_IN_FLIGHT = 16

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["test"],
) as dag:
    EnhancePhotoBatchOperator(
        task_id=TASK_ID,
        img_urls=[f"{{{{ conn.hitpaw_default.host }}}}/samples/portrait.jpg?copy={n}" for n in range(PHOTOS)],
        output_path=OUTPUT,
        model_name="face_2x",
        max_in_flight=MAX_IN_FLIGHT,
        submits_per_second=8,
        poll_interval=1,
        timeout=300,
        deferrable=True,
        on_unknown_outcome="resubmit",
        max_unknown_outcome_coins=10_000,
        retries=4,
        retry_delay=timedelta(seconds=1),
    )
