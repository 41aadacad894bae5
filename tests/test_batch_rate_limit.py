"""Batches under HitPaw's rate limit: the sandbox's limit on submissions only, and the batch trigger's
status polls under a limit of the whole API.

HitPaw publishes no numbers; over its limit it answers 429 with ``Retry-After``. The sandbox's
``rate_limit_rps`` is one token bucket over ``/api/*``, status requests included, unless
``rate_limit_status=False`` (what the batch benchmark uses to measure submissions against R a second).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
import requests

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.hooks.session import close_shared_session
from tests.support.connections import set_hitpaw_connection

KEY = "rate-limit-key"


def test_a_limit_on_submissions_only_lets_status_requests_through() -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox
    from airflow_provider_hitpaw.sandbox.config import FaultConfig

    faults = FaultConfig(rate_limit_rps=2, rate_limit_status=False)
    with start_sandbox(api_keys={KEY: 100_000}, faults=faults) as sandbox:
        (job_id,) = sandbox.create_jobs(KEY, 1, complete_after_seconds=60)
        with requests.Session() as http:
            statuses = [
                http.post(sandbox.url(TASK_STATUS_PATH), json={"job_id": job_id}, headers={"Apikey": KEY},
                          timeout=10).status_code
                for _ in range(10)
            ]
            body = {"model_name": "face_2x", "img_url": sandbox.url("/samples/portrait.jpg"), "extension": ".jpg"}
            submits = [
                http.post(sandbox.url(PHOTO_ENHANCER_PATH), json=body, headers={"Apikey": KEY}, timeout=10).status_code
                for _ in range(5)
            ]
        assert statuses == [200] * 10
        assert submits.count(429) >= 2 and submits[0] == 200, submits  # a burst of 2, then the limit
        assert sandbox.set_faults(rate_limit_status=True)["rate_limit_status"] is True
        with pytest.raises(ValueError, match="rate_limit_status"):
            FaultConfig(rate_limit_status="no")  # type: ignore[arg-type]


def test_the_submissions_only_limit_reaches_a_sandbox_process() -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox_process
    from airflow_provider_hitpaw.sandbox.config import FaultConfig

    with start_sandbox_process(api_keys={KEY: 10}, faults=FaultConfig(rate_limit_rps=1, rate_limit_status=False)) as sb:
        faults = sb.faults()
    assert faults["rate_limit_status"] is False and faults["rate_limit_rps"] == 1


def test_jobs_trigger_under_a_whole_api_rate_limit_slows_down_and_ends_every_job(monkeypatch: Any) -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox
    from airflow_provider_hitpaw.sandbox.config import FaultConfig
    from airflow_provider_hitpaw.triggers.jobs import HitPawJobsTrigger

    with start_sandbox(api_keys={KEY: 1000}, faults=FaultConfig(rate_limit_rps=4)) as sandbox:
        set_hitpaw_connection(monkeypatch, "hitpaw_rate_limited", sandbox.base_url, KEY)
        job_ids = sandbox.create_jobs(KEY, 24, complete_after_seconds=1.0)
        trigger = HitPawJobsTrigger(job_ids, time.time() + 60, fire_after=len(job_ids),
                                    hitpaw_conn_id="hitpaw_rate_limited", poll_interval=1)

        async def wait() -> dict[str, Any]:
            try:
                return await asyncio.wait_for(trigger.wait(), 70)
            finally:
                await close_shared_session()

        event = asyncio.run(wait())
        rejected = sandbox.stats()["requests_by_status"].get("429", 0)
    outcomes = Counter(ended["status"] for ended in event["ended"])
    # 24 polls a round against 4 a second: every job can be followed to its end in ~6 s a round.
    assert outcomes == {"success": len(job_ids)}, f"{dict(outcomes)} after {rejected} replies of 429"
