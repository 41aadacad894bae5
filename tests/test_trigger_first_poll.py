"""The trigger's first status request goes out as soon as it has the connection, not one interval later.

On a real deployment the first trigger after a triggerer starts waits for its connection: Airflow's
triggerer builds its in-process Execution API on the first connection lookup, which blocked it for 11
to 25 s on a loaded 2-core machine (its log: "Heartbeat recovered after 11.38 seconds"; the next
deferral's first poll came 38 ms after its start). The job may be done by then: the trigger must ask at
once. Real HTTP against the sandbox; only the connection lookup is slowed down.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

LOOKUP_SECONDS = 1.5
POLL_INTERVAL = 60.0


@pytest.fixture(autouse=True)
async def _close_session():
    yield
    await close_shared_session()


async def test_after_a_slow_connection_lookup_the_first_poll_is_at_once(sandbox, sandbox_conn, monkeypatch):
    hook = HitPawHook(sandbox_conn)
    job = hook.enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    hook.wait_for_completion(job.job_id, poll_interval=1, timeout=30)  # done before the trigger starts
    before = sandbox.stats()

    lookup = HitPawAsyncHook.aget_connection

    async def slow_lookup(conn_id: str):  # the triggerer's first lookup, compressed
        await asyncio.sleep(LOOKUP_SECONDS)
        return await lookup(conn_id)

    monkeypatch.setattr(HitPawAsyncHook, "aget_connection", staticmethod(slow_lookup))
    trigger = HitPawTaskStatusTrigger(
        job_id=job.job_id, deadline=time.time() + 300, hitpaw_conn_id=sandbox_conn, poll_interval=POLL_INTERVAL,
    )
    started = time.monotonic()
    events = [event.payload async for event in trigger.run()]
    took = time.monotonic() - started

    assert [e["status"] for e in events] == ["success"] and events[0]["job_id"] == job.job_id
    assert LOOKUP_SECONDS <= took < LOOKUP_SECONDS + 5, took  # not one poll interval (60 s) later
    assert _status_requests(sandbox.stats()) - _status_requests(before) == 1


def _status_requests(stats: dict) -> int:
    return sum(n for endpoint, n in stats["requests_by_endpoint"].items() if "task-status" in endpoint)
