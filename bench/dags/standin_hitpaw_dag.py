"""A stand-in DAG using ``EnhancePhotoOperator``, parsed when ``example_dags/`` has no DAG file."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

with DAG(dag_id="bench_standin_hitpaw", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
    EnhancePhotoOperator(
        task_id="enhance_photo",
        img_url="https://example.com/photo.jpg",
        model_name="face_2x",
        deferrable=True,
    )
