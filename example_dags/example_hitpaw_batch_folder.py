"""Every day, enhance the new photos of a folder in one task, within a budget; a second DAG runs on the
enhanced photos.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
``EnhancePhotoBatchOperator`` uploads each photo of ``input_path`` (free), enhances it, and streams the
result to ``output_path``. Its ledger there (``.hitpaw/``) makes reruns free: a photo already enhanced
with the same settings is skipped (``skip_existing``), and a changed photo is enhanced again.

Environment: ``HITPAW_BATCH_INPUT`` (default: the sandbox's sample photos, in the installed package)
and ``HITPAW_BATCH_OUTPUT`` (default ``/tmp/hitpaw-batch/enhanced/``). The output folder is fixed when
the DAG is parsed because it is also the asset the second DAG is scheduled on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

import airflow_provider_hitpaw
from airflow_provider_hitpaw.models import PHOTO_MODELS
from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator, output_asset

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["example", "hitpaw"]
SAMPLES = Path(airflow_provider_hitpaw.__file__).parent / "sandbox" / "samples"
INPUT_PATH = os.environ.get("HITPAW_BATCH_INPUT") or str(SAMPLES)
OUTPUT_PATH = os.environ.get("HITPAW_BATCH_OUTPUT") or "/tmp/hitpaw-batch/enhanced/"  # noqa: S108 - an example default
ENHANCED_PHOTOS = output_asset(OUTPUT_PATH)

with DAG(
    dag_id="example_hitpaw_batch_folder",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # runs sharing an output folder share its ledger: one at a time
    tags=TAGS,
    params={
        "model_name": Param("face_2x", enum=[model.name for model in PHOTO_MODELS], description="The HitPaw model."),
        "max_coins": Param(500, type="integer", minimum=0, description="The most this run may spend."),
    },
    doc_md=__doc__,
) as dag:
    # [START howto_operator_hitpaw_batch_folder]
    EnhancePhotoBatchOperator(
        task_id="enhance_new_photos",
        input_path=INPUT_PATH,  # a folder, a glob (/data/in/*.jpg) or a prefix (s3://bucket/in/)
        output_path=OUTPUT_PATH,  # results, the ledger and the manifests; also the task's outlet asset
        model_name="{{ params.model_name }}",
        max_coins="{{ params.max_coins }}",  # this run's budget, over every try
        max_in_flight=20,
        submits_per_second=2,
        skip_existing=True,  # a photo already enhanced with these settings costs nothing again
        deferrable=True,  # the worker slot is free while HitPaw works
        poll_interval=2,
        timeout=60 * 60,
    )
    # [END howto_operator_hitpaw_batch_folder]


with DAG(
    dag_id="example_hitpaw_batch_folder_consumer",
    schedule=[ENHANCED_PHOTOS],
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    doc_md="Runs whenever `example_hitpaw_batch_folder` has written enhanced photos; reads its counts.",
) as consumer:

    @task
    def report(triggering_asset_events: Any = None) -> dict[str, Any]:
        """The batch's counts, coins and manifest, from the asset event's extra."""
        extras = [event.extra for events in (triggering_asset_events or {}).values() for event in events]
        for extra in extras:
            print(f"enhanced photos: {extra.get('counts')}, {extra.get('coins')} coins; manifest {extra.get('manifest')}")
        return extras[-1] if extras else {}

    report()
