"""Crash test DAG: one photo waited for in the worker, with a retry. ``tests/test_crash.py`` kills the
process running its first try (SIGKILL, mid-wait) and then runs the retry in a new process."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

with DAG(
    dag_id="chaos_crash_retry",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test", "chaos"],
) as dag:
    EnhancePhotoOperator(
        task_id="enhance_photo",
        img_url="{{ conn.hitpaw_crash.host }}/samples/portrait.jpg",
        model_name="face_2x",
        hitpaw_conn_id="hitpaw_crash",
        deferrable=False,
        poll_interval=1,
        timeout=120,
        retries=1,
        retry_delay=timedelta(0),
    )
