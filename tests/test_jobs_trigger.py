"""HitPawJobsTrigger against the sandbox: one event for many jobs, thresholds, deadline, errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import requests

from airflow_provider_hitpaw.contract.endpoints import API_KEY_HEADER, PHOTO_ENHANCER_PATH
from airflow_provider_hitpaw.errors import HitPawJobFailedError, HitPawTaskNotFoundError
from airflow_provider_hitpaw.events import CompletedJob, ended_jobs_from_event
from airflow_provider_hitpaw.triggers.jobs import HitPawJobsTrigger
from tests.support.connections import SANDBOX_API_KEY


def submit(sandbox: Any, n: int) -> list[str]:
    job_ids = []
    for i in range(n):
        reply = requests.post(sandbox.url(PHOTO_ENHANCER_PATH), headers={API_KEY_HEADER: SANDBOX_API_KEY}, timeout=10,
                              json={"img_url": sandbox.url(f"/samples/portrait.jpg?copy={i}"),
                                    "model_name": "face_2x", "extension": ".jpg"})
        job_ids.append(reply.json()["data"]["job_id"])
    return job_ids


def run(trigger: HitPawJobsTrigger) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload  # type: ignore[no-any-return]
        raise AssertionError("no event")

    return asyncio.run(first_event())


def test_it_serializes_to_what_it_was_built_from() -> None:
    trigger = HitPawJobsTrigger(job_ids=["a", "b"], deadline=123.0, fire_after=2, hitpaw_conn_id="c",
                                poll_interval=0.1)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_hitpaw.triggers.jobs.HitPawJobsTrigger"
    assert kwargs["poll_interval"] == 1.0  # the floor
    assert HitPawJobsTrigger(**kwargs).serialize() == (path, kwargs)
    assert "key" not in str(kwargs).lower()


def test_all_jobs_end_in_one_event(sandbox, sandbox_conn) -> None:
    job_ids = submit(sandbox, 5)
    event = run(HitPawJobsTrigger(job_ids, time.time() + 60, fire_after=5, hitpaw_conn_id=sandbox_conn,
                                  poll_interval=1))
    ended = dict(ended_jobs_from_event(event))
    assert sorted(ended) == sorted(job_ids) and not event["timed_out"]
    assert all(isinstance(result, CompletedJob) and result.res_url for result in ended.values())


def test_it_fires_once_enough_jobs_ended_and_leaves_the_others_out(sandbox, sandbox_conn) -> None:
    sandbox.configure(job_seconds=0.5)
    quick = submit(sandbox, 2)
    sandbox.configure(job_seconds=30)
    slow = submit(sandbox, 3)
    started = time.monotonic()
    event = run(HitPawJobsTrigger(quick + slow, time.time() + 60, fire_after=2, hitpaw_conn_id=sandbox_conn,
                                  poll_interval=1))
    assert time.monotonic() - started < 10
    assert sorted(job_id for job_id, _ in ended_jobs_from_event(event)) == sorted(quick)


def test_the_deadline_ends_the_wait_with_what_ended_so_far(sandbox, sandbox_conn) -> None:
    sandbox.configure(job_seconds=30)
    job_ids = submit(sandbox, 2)
    started = time.monotonic()
    event = run(HitPawJobsTrigger(job_ids, time.time() + 2, fire_after=1, hitpaw_conn_id=sandbox_conn,
                                  poll_interval=1))
    assert event["timed_out"] and event["ended"] == []
    assert 1.5 < time.monotonic() - started < 5


def test_failed_and_unknown_jobs_end_with_their_errors(sandbox, sandbox_conn) -> None:
    sandbox.set_faults(fail_job=1.0)
    failed = submit(sandbox, 1)
    sandbox.set_faults(fail_job=0.0)
    missing = "00000000-0000-4000-8000-000000000000"
    event = run(HitPawJobsTrigger([*failed, missing], time.time() + 30, fire_after=2, hitpaw_conn_id=sandbox_conn,
                                  poll_interval=1))
    ended = dict(ended_jobs_from_event(event))
    assert isinstance(ended[failed[0]], HitPawJobFailedError)
    assert isinstance(ended[missing], HitPawTaskNotFoundError)


def test_transient_errors_back_off_and_the_jobs_still_end(sandbox, sandbox_conn) -> None:
    job_ids = submit(sandbox, 3)
    sandbox.set_faults(error_5xx=0.3, rate_429=0.2, fault_endpoints=["status"], seed=5)
    event = run(HitPawJobsTrigger(job_ids, time.time() + 120, fire_after=3, hitpaw_conn_id=sandbox_conn,
                                  poll_interval=1, max_consecutive_errors=20))
    assert all(isinstance(result, CompletedJob) for _, result in ended_jobs_from_event(event))
    assert sum(sandbox.stats()["faults_injected"].values()) >= 1
