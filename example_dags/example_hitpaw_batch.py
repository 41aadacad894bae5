"""Enhance a batch of photos in parallel (dynamic task mapping), then add up the coins spent.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Param ``img_urls``: your photos; empty uses three copies of the sandbox's sample portrait.
Each mapped task is labelled with its photo's file name (``task.photo_label``): short, and without the
URL's query string, which for a presigned URL is a signature (and can be hundreds of characters).
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
MODEL_PARAM = Param(
    "face_2x",
    enum=[model.name for model in PHOTO_MODELS],
    description="The HitPaw model.",
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
            "pass your own public photo URLs as the 'img_urls' param"
        )
    return f"{base_url}/samples/portrait.jpg"


with DAG(
    dag_id="example_hitpaw_batch",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=TAGS,
    params={
        "img_urls": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Public http(s) URLs of the photos. Empty: three copies of the sandbox's sample.",
        ),
        "model_name": MODEL_PARAM,
    },
    doc_md=__doc__,
) as dag:

    @task
    def photo_urls(params: dict[str, Any] | None = None) -> list[str]:
        """The ``img_urls`` param, else three copies of the sandbox's sample photo."""
        requested = list((params or {}).get("img_urls") or [])
        return requested or [f"{sample_photo_url()}?copy={n}" for n in range(1, 4)]

    # [START howto_operator_hitpaw_batch]
    enhanced = EnhancePhotoOperator.partial(
        task_id="enhance_photo",
        model_name="{{ params.model_name }}",
        deferrable=True,  # a batch waits in the triggerer: N photos, no worker slot held
        poll_interval=2,
        timeout=30 * 60,
        # The photo's file name: never the URL itself, whose query string may be a signature and whose
        # length may pass the 250 characters Airflow's database keeps for a label.
        map_index_template="{{ task.photo_label }}",
    ).expand(img_url=photo_urls())
    # [END howto_operator_hitpaw_batch]

    @task
    def report(results: list[dict[str, Any]]) -> dict[str, Any]:
        results = list(results)
        coins = sum(result["consume_coins"] or 0 for result in results)
        for result in results:
            print(f"job {result['job_id']}: {result['status']} -> {result['res_url']}")
        print(f"{len(results)} photos enhanced for {coins} coins")
        return {"photos": len(results), "coins": coins, "res_urls": [r["res_url"] for r in results]}

    report(enhanced.output)
