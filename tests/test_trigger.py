"""HitPawTaskStatusTrigger against a scripted server and the sandbox, over real HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_hitpaw.contract.endpoints import TASK_STATUS_PATH
from airflow_provider_hitpaw.events import MIN_POLL_INTERVAL_SECONDS
from airflow_provider_hitpaw.hooks.session import close_shared_session, get_shared_session
from airflow_provider_hitpaw.triggers import hitpaw as trigger_module
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection
from tests.support.scripted_server import Step, status_step

FAILURE_STATES = ["ERROR", "ERROR_INTERRUPTION", "TIMEOUT", "CANCEL", "REJECT", "NSFW"]
RESULT = "https://results.example/job-1/out.jpg"


@pytest.fixture(autouse=True)
async def _close_session():
    yield
    await close_shared_session()


@pytest.fixture(autouse=True)
def _fast_floor(request, monkeypatch):
    """Most tests here are about events and error counting, not pacing: they poll at 10 ms. The tests
    named ``*_floor*`` keep the real floor of MIN_POLL_INTERVAL_SECONDS."""
    if "floor" not in request.node.name:
        monkeypatch.setattr(trigger_module, "MIN_POLL_INTERVAL_SECONDS", 0.001)


def make_trigger(conn_id: str, *, deadline_in: float = 30, poll: float = 0.01, errors: int = 5,
                 job_id: str = "job-1") -> HitPawTaskStatusTrigger:
    return HitPawTaskStatusTrigger(
        job_id=job_id,
        deadline=time.time() + deadline_in,
        hitpaw_conn_id=conn_id,
        poll_interval=poll,
        max_consecutive_errors=errors,
    )


async def only_event(trigger: HitPawTaskStatusTrigger, limit: float = 20) -> dict:
    events = []

    async def collect() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    await asyncio.wait_for(collect(), limit)
    assert len(events) == 1, events
    return events[0]


async def test_success_after_intermediate_states(scripted, scripted_conn):
    scripted.script(
        TASK_STATUS_PATH,
        status_step("WAITING"),
        status_step("INPUT_PREPARING"),
        status_step("CONVERTING"),
        status_step("OUTPUT_SAVING"),
        status_step("COMPLETED", res_url=RESULT),
    )
    event = await only_event(make_trigger(scripted_conn))
    assert event == {
        "status": "success",
        "job_id": "job-1",
        "hitpaw_status": "COMPLETED",
        "res_url": RESULT,
        "original_url": "http://x/in.jpg",
    }
    assert scripted.count(TASK_STATUS_PATH) == 5


@pytest.mark.parametrize("state", FAILURE_STATES)
async def test_each_failure_state_is_an_error_event(scripted, scripted_conn, state):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"), status_step(state))
    event = await only_event(make_trigger(scripted_conn))
    assert event["status"] == "error"
    assert event["hitpaw_status"] == state
    assert event["job_id"] == "job-1"


async def test_unknown_status_keeps_polling(scripted, scripted_conn):
    scripted.script(
        TASK_STATUS_PATH,
        status_step("SOMETHING_NEW"),
        status_step("QUEUED_ON_GPU"),
        status_step("COMPLETED", res_url=RESULT),
    )
    event = await only_event(make_trigger(scripted_conn))
    assert event["status"] == "success"
    assert scripted.count(TASK_STATUS_PATH) == 3


async def test_deadline_gives_timeout(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"))
    started = time.monotonic()
    event = await only_event(make_trigger(scripted_conn, deadline_in=0.5, poll=0.1))
    assert event["status"] == "timeout"
    assert event["hitpaw_status"] == "CONVERTING"
    assert time.monotonic() - started < 3


async def test_transient_errors_then_success(scripted, scripted_conn):
    scripted.script(
        TASK_STATUS_PATH,
        Step(502, "<html>bad gateway</html>"),
        Step(429, {"code": 100429000, "message": "slow down"}),
        Step(503, b""),
        status_step("COMPLETED", res_url=RESULT),
    )
    event = await only_event(make_trigger(scripted_conn, errors=4))
    assert event["status"] == "success"
    assert scripted.count(TASK_STATUS_PATH) == 4


async def test_too_many_transient_errors_gives_error(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(502, "<html>bad gateway</html>"))
    event = await only_event(make_trigger(scripted_conn, errors=3))
    assert event["status"] == "error"
    assert event["error_class"] == "HitPawServerError"
    assert "hitpaw_status" not in event
    assert scripted.count(TASK_STATUS_PATH) == 3


async def test_a_refused_key_is_an_error_at_once(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(200, {"error_code": 110400000, "message": "api_key is not valid"}))
    event = await only_event(make_trigger(scripted_conn))
    assert event["status"] == "error"
    assert event["error_class"] == "HitPawAuthError"
    assert scripted.count(TASK_STATUS_PATH) == 1


def test_serialize_round_trip_builds_an_equal_trigger():
    trigger = HitPawTaskStatusTrigger("job-9", 1_900_000_000.5, "my_conn", 7.0, 3)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_hitpaw.triggers.hitpaw.HitPawTaskStatusTrigger"
    rebuilt = HitPawTaskStatusTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert "password" not in kwargs and "api_key" not in kwargs


async def test_cancelling_a_trigger_leaves_the_shared_session_usable(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(200, {"code": 200, "data": {}}, delay=5))
    slow = asyncio.ensure_future(only_event(make_trigger(scripted_conn, job_id="slow-job")))
    await asyncio.sleep(0.3)  # the slow request is in flight on the shared session
    session = await get_shared_session()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert not session.closed
    scripted.script(TASK_STATUS_PATH, status_step("COMPLETED", res_url=RESULT))
    event = await only_event(make_trigger(scripted_conn))
    assert event["status"] == "success"
    assert await get_shared_session() is session


async def test_against_the_sandbox(sandbox, monkeypatch):
    set_hitpaw_connection(monkeypatch, "hitpaw_sandbox", sandbox.base_url, SANDBOX_API_KEY)
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    job = await asyncio.to_thread(
        HitPawHook("hitpaw_sandbox").enhance_photo, sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg"
    )
    event = await only_event(make_trigger("hitpaw_sandbox", job_id=job.job_id, poll=0.1))
    assert event["status"] == "success"
    assert event["res_url"].startswith(sandbox.base_url)


async def test_a_zero_poll_interval_is_raised_to_the_floor(sandbox, monkeypatch):
    """A deferrable sensor with poke_interval=0 once sent 5,235 status requests for one 3-second job."""
    set_hitpaw_connection(monkeypatch, "hitpaw_sandbox", sandbox.base_url, SANDBOX_API_KEY)
    (job_id,) = sandbox.create_jobs(SANDBOX_API_KEY, complete_after_seconds=2.5)
    _, kwargs = HitPawTaskStatusTrigger(job_id, time.time() + 30, "hitpaw_sandbox", poll_interval=0).serialize()
    assert kwargs["poll_interval"] == MIN_POLL_INTERVAL_SECONDS
    event = await only_event(HitPawTaskStatusTrigger(**{**kwargs, "poll_interval": 0}))  # older kwargs
    assert event["status"] == "success"
    polls = sandbox.stats()["requests_by_endpoint"]["POST /api/task-status"]
    assert polls <= 2.5 / MIN_POLL_INTERVAL_SECONDS + 2, polls


def test_serialized_poll_intervals_below_the_floor_are_raised_to_it():
    for value in (0, 0.001, float("nan")):
        trigger = HitPawTaskStatusTrigger("job-1", time.time() + 60, poll_interval=value)
        assert trigger.serialize()[1]["poll_interval"] == MIN_POLL_INTERVAL_SECONDS
    assert HitPawTaskStatusTrigger("job-1", 1.0, poll_interval=7).poll_interval == 7


def test_every_event_the_trigger_builds_is_one_the_task_reads():
    """The protocol is one module: each builder's event reads back as the value or error it stands for."""
    from airflow_provider_hitpaw.api import JobStatus, TaskStatus
    from airflow_provider_hitpaw.errors import (
        HitPawJobFailedFailure,
        HitPawRateLimitError,
        HitPawWaitTimeoutError,
    )
    from airflow_provider_hitpaw.events import (
        CompletedJob,
        completed_job_from_event,
        job_failed_event,
        request_error_event,
        success_event,
        timeout_event,
    )

    done = TaskStatus("job-1", JobStatus.COMPLETED, "COMPLETED", "https://r.example/out.png", "https://p/in.jpg")
    completed = completed_job_from_event(success_event(done), job_id="job-1")
    assert completed == CompletedJob("job-1", "COMPLETED", "https://r.example/out.png", "https://p/in.jpg")
    assert completed.to_xcom() == {"job_id": "job-1", "status": "COMPLETED",
                                   "res_url": "https://r.example/out.png", "original_url": "https://p/in.jpg"}
    with pytest.raises(HitPawJobFailedFailure):
        completed_job_from_event(job_failed_event(TaskStatus("job-1", JobStatus.NSFW, "NSFW")), job_id="job-1")
    limited = HitPawRateLimitError("slow down", http_status=429, code=100429000, job_id="job-1")
    with pytest.raises(HitPawRateLimitError) as raised:
        completed_job_from_event(request_error_event("job-1", limited, " (5 in a row)"), job_id="job-1")
    assert (raised.value.code, raised.value.http_status) == (100429000, 429)
    with pytest.raises(HitPawWaitTimeoutError, match="CONVERTING"):
        completed_job_from_event(timeout_event("job-1", "CONVERTING"), job_id="job-1")
