"""Enhance one video with HitPaw, wait in the triggerer, copy the result to a folder.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Params: ``video_url`` (your video; empty uses the sandbox's sample clip, 160x120, 3 s), ``model_name``,
``resolution`` (the result's ``[width, height]``) and ``output_dir``.

HitPaw bills a video per second of its result, by the result's resolution and frame rate: the
operator reads the video's duration and frame rate from its header first (the ``video`` extra, PyAV),
logs HitPaw's price, and refuses a job over ``max_coins`` (here 100 coins) before paying.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.contract.catalog import VIDEO_MODELS
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.operators.video import EnhanceVideoOperator

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["example", "hitpaw"]
VIDEO_URL_PARAM = Param(
    None,
    type=["null", "string"],
    description="Public http(s) URL of the video. Empty: the HitPaw sandbox's sample clip.",
)
MODEL_PARAM = Param(
    "general_restore_2x",
    enum=[model.name for model in VIDEO_MODELS],
    description="The HitPaw video model.",
)
RESOLUTION_PARAM = Param(
    [320, 240],
    type="array",
    items={"type": "integer", "minimum": 1},
    minItems=2,
    maxItems=2,
    description="The result's [width, height], at most 36 MP (the sample clip is 160x120).",
)
OUTPUT_DIR_PARAM = Param(
    "/tmp/hitpaw-results",  # noqa: S108 - an example default; pass your own folder or s3:// URL
    type="string",
    description="Folder (local path or object-storage URL) the enhanced video is copied to.",
)


def sample_video_url(conn_id: str = "hitpaw_default") -> str:
    """The sample clip served next to the API of the connection, which only the HitPaw sandbox has.

    The real HitPaw serves no sample: against it, this fails before any request is sent.
    """
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook  # at run time: DAG files parse light

    base_url = HitPawHook(conn_id).settings.base_url
    host = urlsplit(base_url).hostname or ""
    if host == "hitpaw.com" or host.endswith(".hitpaw.com"):
        raise HitPawValidationError(
            f"Connection {conn_id!r} points at HitPaw ({base_url}), which serves no sample clip: "
            "pass your own public video URL as the 'video_url' param"
        )
    return f"{base_url}/samples/clip.mp4"


with DAG(
    dag_id="example_hitpaw_enhance_video",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    params={
        "video_url": VIDEO_URL_PARAM,
        "model_name": MODEL_PARAM,
        "resolution": RESOLUTION_PARAM,
        "output_dir": OUTPUT_DIR_PARAM,
    },
    doc_md=__doc__,
) as dag:

    @task
    def video_url(params: dict[str, Any] | None = None) -> str:
        """The ``video_url`` param, else the sandbox's sample clip."""
        return (params or {}).get("video_url") or sample_video_url()

    # [START howto_operator_hitpaw_enhance_video]
    enhance_video = EnhanceVideoOperator(
        task_id="enhance_video",
        video_url=video_url(),
        model_name="{{ params.model_name }}",
        resolution="{{ params.resolution }}",
        extension=".mp4",
        max_coins=100,
        output_path="{{ params.output_dir }}/",
        deferrable=True,
        poll_interval=10,
        timeout=6 * 3600,
    )
    # [END howto_operator_hitpaw_enhance_video]
