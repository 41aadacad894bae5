"""Enhance a batch of photos in parallel (dynamic task mapping), then add up the coins spent.

Runs unchanged against HitPaw or the local sandbox: the ``hitpaw_default`` connection decides.
Param ``img_urls``: your photos; empty uses three copies of the sandbox's sample portrait.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.models import PHOTO_MODELS
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["example", "hitpaw"]

#: The sample photo served next to the API of the ``hitpaw_default`` connection, used when the
#: ``img_urls`` param is empty. It exists on the local HitPaw sandbox only: against the real HitPaw, pass
#: your own public photo URLs as ``img_urls``.
SAMPLE_IMG_URL = "{{ conn.hitpaw_default.host }}/samples/portrait.jpg"
MODEL_PARAM = Param(
    "face_2x",
    enum=[model.name for model in PHOTO_MODELS],
    description="The HitPaw model.",
)

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
    def photo_urls(sample_url: str, params: dict[str, Any] | None = None) -> list[str]:
        requested = list((params or {}).get("img_urls") or [])
        return requested or [f"{sample_url}?copy={n}" for n in range(1, 4)]

    # [START howto_operator_hitpaw_batch]
    enhanced = EnhancePhotoOperator.partial(
        task_id="enhance_photo",
        model_name="{{ params.model_name }}",
        deferrable=True,  # a batch waits in the triggerer: N photos, no worker slot held
        poll_interval=2,
        timeout=30 * 60,
        map_index_template="{{ task.img_url }}",
    ).expand(img_url=photo_urls(sample_url=SAMPLE_IMG_URL))
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
