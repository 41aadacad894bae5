"""Submit a photo without waiting, wait for it with a deferrable sensor, then use its result.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Splitting submission and wait lets the (paid) submission succeed once even if the wait is retried.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.models import PHOTO_MODELS
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.sensors.hitpaw import TaskStatusSensor

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["example", "hitpaw"]

#: The photo to enhance: the ``img_url`` param when given, else the sample photo served next to the API
#: of the ``hitpaw_default`` connection. That sample exists on the local HitPaw sandbox only: against
#: the real HitPaw, pass your own public photo URL as ``img_url``.
IMG_URL = "{{ params.img_url or (conn.hitpaw_default.host ~ '/samples/portrait.jpg') }}"
IMG_URL_PARAM = Param(
    None,
    type=["null", "string"],
    description="Public http(s) URL of the photo. Empty: the HitPaw sandbox's sample portrait.",
)
MODEL_PARAM = Param(
    "face_2x",
    enum=[model.name for model in PHOTO_MODELS],
    description="The HitPaw model.",
)
OUTPUT_DIR_PARAM = Param(
    "/tmp/hitpaw-results",  # noqa: S108 - an example default; pass your own folder or s3:// URL
    type="string",
    description="Folder (local path or object-storage URL) the enhanced photo is copied to.",
)

with DAG(
    dag_id="example_hitpaw_submit_then_sense",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    params={"img_url": IMG_URL_PARAM, "model_name": MODEL_PARAM, "output_dir": OUTPUT_DIR_PARAM},
    doc_md=__doc__,
) as dag:
    # [START howto_sensor_hitpaw_task_status]
    submit = EnhancePhotoOperator(
        task_id="submit",
        img_url=IMG_URL,
        model_name="{{ params.model_name }}",
        wait_for_completion=False,
    )
    wait_for_result = TaskStatusSensor(
        task_id="wait_for_result",
        job_id="{{ ti.xcom_pull(task_ids='submit', key='job_id') }}",
        deferrable=True,
        poke_interval=2,
        timeout=30 * 60,
    )
    # [END howto_sensor_hitpaw_task_status]

    @task
    def keep_result(status: dict[str, Any], params: dict[str, Any] | None = None) -> str:
        """Copy the result named by the sensor's ``res_url`` to the output folder."""
        output_dir = (params or {}).get("output_dir") or "/tmp/hitpaw-results"  # noqa: S108
        return HitPawHook().download_result(status["res_url"], f"{output_dir}/")

    submit >> wait_for_result
    keep_result(wait_for_result.output)
