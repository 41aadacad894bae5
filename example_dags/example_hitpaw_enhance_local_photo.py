"""Enhance a private photo with HitPaw: upload it first (free), then enhance it like a public one.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Params: ``photo_path`` (a local path, ``file:`` URI or object-storage URL such as ``s3://bucket/a.jpg``
of a .jpg, .jpeg, .png, .gif, .webp or .bmp photo; empty copies the sandbox's sample portrait to a
local file first), ``model_name``, ``output_dir``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.models import PHOTO_MODELS
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["example", "hitpaw"]
PHOTO_PATH_PARAM = Param(
    None,
    type=["null", "string"],
    description="Local path or object-storage URL of the photo. Empty: a local copy of the sandbox's sample.",
)
MODEL_PARAM = Param("face_2x", enum=[model.name for model in PHOTO_MODELS], description="The HitPaw model.")
OUTPUT_DIR_PARAM = Param(
    "/tmp/hitpaw-results",  # noqa: S108 - an example default; pass your own folder or s3:// URL
    type="string",
    description="Folder (local path or object-storage URL) the enhanced photo is copied to.",
)


def local_copy_of_the_sample(conn_id: str = "hitpaw_default") -> str:
    """The sandbox's sample photo, copied to a local file (only the sandbox serves a sample).

    The real HitPaw serves none: against it, this fails before any request is sent.
    """
    import requests  # at run time: DAG files parse light

    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    base_url = HitPawHook(conn_id).settings.base_url
    host = urlsplit(base_url).hostname or ""
    if host == "hitpaw.com" or host.endswith(".hitpaw.com"):
        raise HitPawValidationError(
            f"Connection {conn_id!r} points at HitPaw ({base_url}), which serves no sample photo: "
            "pass your own photo as the 'photo_path' param"
        )
    reply = requests.get(f"{base_url}/samples/portrait.jpg", timeout=30)
    reply.raise_for_status()
    path = Path(tempfile.mkdtemp(prefix="hitpaw-example-")) / "portrait.jpg"
    path.write_bytes(reply.content)
    return str(path)


with DAG(
    dag_id="example_hitpaw_enhance_local_photo",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    params={"photo_path": PHOTO_PATH_PARAM, "model_name": MODEL_PARAM, "output_dir": OUTPUT_DIR_PARAM},
    doc_md=__doc__,
) as dag:

    @task
    def photo_path(params: dict[str, Any] | None = None) -> str:
        """The ``photo_path`` param, else a local copy of the sandbox's sample photo."""
        return (params or {}).get("photo_path") or local_copy_of_the_sample()

    # [START howto_operator_hitpaw_img_path]
    enhance_local_photo = EnhancePhotoOperator(
        task_id="enhance_local_photo",
        img_path=photo_path(),  # uploaded to HitPaw first; its access_url is submitted
        model_name="{{ params.model_name }}",
        output_path="{{ params.output_dir }}/",
        deferrable=True,
        poll_interval=2,
        timeout=30 * 60,
    )
    # [END howto_operator_hitpaw_img_path]
