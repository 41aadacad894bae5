"""Enhance one photo with HitPaw, wait in the triggerer, copy the result to a folder.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Params: ``img_url`` (your photo; empty uses the sandbox's sample), ``model_name``, ``output_dir``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_hitpaw.models import PHOTO_MODELS
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

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
    dag_id="example_hitpaw_enhance_photo",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    params={"img_url": IMG_URL_PARAM, "model_name": MODEL_PARAM, "output_dir": OUTPUT_DIR_PARAM},
    doc_md=__doc__,
) as dag:
    # [START howto_operator_hitpaw_enhance_photo]
    enhance_photo = EnhancePhotoOperator(
        task_id="enhance_photo",
        img_url=IMG_URL,
        model_name="{{ params.model_name }}",
        output_path="{{ params.output_dir }}/",
        deferrable=True,
        poll_interval=2,
        timeout=30 * 60,
    )
    # [END howto_operator_hitpaw_enhance_photo]
