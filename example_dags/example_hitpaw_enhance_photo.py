"""Enhance one photo with HitPaw, wait in the triggerer, copy the result to a folder.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Params: ``img_url`` (your photo; empty uses the sandbox's sample), ``model_name``, ``output_dir``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.models import PHOTO_MODELS
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["example", "hitpaw"]
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


def sample_photo_url(conn_id: str = "hitpaw_default") -> str:
    """The sample photo served next to the API of the connection, which only the HitPaw sandbox has.

    Built from the hook's base URL (the connection's host and port, normalized), not from the raw host
    field. The real HitPaw serves no sample: against it, this fails before any request is sent.
    """
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook  # at run time: DAG files parse light

    base_url = HitPawHook(conn_id).settings.base_url
    host = urlsplit(base_url).hostname or ""
    if host == "hitpaw.com" or host.endswith(".hitpaw.com"):
        raise HitPawValidationError(
            f"Connection {conn_id!r} points at HitPaw ({base_url}), which serves no sample photo: "
            "pass your own public photo URL as the 'img_url' param"
        )
    return f"{base_url}/samples/portrait.jpg"


with DAG(
    dag_id="example_hitpaw_enhance_photo",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    params={"img_url": IMG_URL_PARAM, "model_name": MODEL_PARAM, "output_dir": OUTPUT_DIR_PARAM},
    doc_md=__doc__,
) as dag:

    @task
    def photo_url(params: dict[str, Any] | None = None) -> str:
        """The ``img_url`` param, else the sandbox's sample photo."""
        return (params or {}).get("img_url") or sample_photo_url()

    # [START howto_operator_hitpaw_enhance_photo]
    enhance_photo = EnhancePhotoOperator(
        task_id="enhance_photo",
        img_url=photo_url(),
        model_name="{{ params.model_name }}",
        output_path="{{ params.output_dir }}/",
        deferrable=True,
        poll_interval=2,
        timeout=30 * 60,
    )
    # [END howto_operator_hitpaw_enhance_photo]
