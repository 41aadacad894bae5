"""HitPawAsyncHook over real HTTP: the shared session, error mapping and async retries."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_hitpaw.api import JobStatus
from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawConnectionError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
)
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook
from airflow_provider_hitpaw.hooks.session import close_shared_session, get_shared_session
from airflow_provider_hitpaw.retries import RetryPolicy
from tests.support.scripted_server import Step, ok, status_step

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0)


@pytest.fixture(autouse=True)
async def _close_session():
    yield
    await close_shared_session()


async def test_status_through_the_shared_session(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"))
    one, two = HitPawAsyncHook(scripted_conn), HitPawAsyncHook(scripted_conn)
    assert (await one.get_task_status("job-1")).status is JobStatus.CONVERTING
    assert (await two.get_task_status("job-1")).status is JobStatus.CONVERTING
    assert await get_shared_session() is await get_shared_session()
    assert scripted.requests[0].headers["Apikey"] == "scripted-key"


async def test_connection_is_read_once(scripted, scripted_conn, monkeypatch):
    scripted.script(TASK_STATUS_PATH, status_step("WAITING"))
    hook = HitPawAsyncHook(scripted_conn)
    lookups = []
    original = hook.aget_connection

    async def counting(conn_id):
        lookups.append(conn_id)
        return await original(conn_id)

    monkeypatch.setattr(hook, "aget_connection", counting)
    for _ in range(3):
        await hook.get_task_status("job-1")
    assert lookups == [scripted_conn]


async def test_async_retries_then_succeeds(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(503, b"<html>busy</html>"), Step(drop=True),
                    status_step("COMPLETED", res_url="https://cdn/x.png"))
    status = await HitPawAsyncHook(scripted_conn, retry_policy=FAST).get_task_status("job-1")
    assert status.res_url == "https://cdn/x.png"
    assert scripted.count(TASK_STATUS_PATH) == 3


async def test_async_gives_up_with_the_typed_error(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(500, {"error_code": 100500001, "message": "Database error"}))
    with pytest.raises(HitPawServerError, match="Database error"):
        await HitPawAsyncHook(scripted_conn, retry_policy=FAST).get_task_status("job-1")
    assert scripted.count(TASK_STATUS_PATH) == 3


@pytest.mark.parametrize(("step", "error"), [
    (Step(400, {"error_code": 110400002}), HitPawTaskNotFoundError),
    (Step(400, {"code": 110400000, "msg": "api_key is not valid"}), HitPawAuthError),
])
async def test_async_client_errors_once(scripted, scripted_conn, step, error):
    scripted.script(TASK_STATUS_PATH, step)
    with pytest.raises(error):
        await HitPawAsyncHook(scripted_conn, retry_policy=FAST).get_task_status("job-1")
    assert scripted.count(TASK_STATUS_PATH) == 1


async def test_async_read_timeout_is_a_connection_error(monkeypatch, scripted):
    from tests.support.connections import set_hitpaw_connection

    set_hitpaw_connection(monkeypatch, "slowasync", scripted.base_url, "k-12345", read_timeout=0.3,
                          connect_timeout=0.3)
    scripted.script(TASK_STATUS_PATH, Step(200, b'{"code":200,"data":{"status":"WAITING"}}', trickle=0.1))
    with pytest.raises(HitPawConnectionError):
        await HitPawAsyncHook("slowasync", retry_policy=RetryPolicy(max_attempts=1)).get_task_status("job-1")


async def test_async_submit_unknown_outcome_sent_once(scripted, scripted_conn):
    scripted.script(PHOTO_ENHANCER_PATH, Step(502, b"<html>bad gateway</html>"),
                    ok({"job_id": "j", "consume_coins": 1}))
    with pytest.raises(HitPawSubmitOutcomeUnknownError):
        await HitPawAsyncHook(scripted_conn, retry_policy=FAST).enhance_photo(
            "https://e.com/a.jpg", "face_2x", ".jpg")
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


async def test_async_submit_429_then_ok(scripted, scripted_conn):
    scripted.script(PHOTO_ENHANCER_PATH, Step(429, {"error_code": 100429000}), ok({"job_id": "j", "consume_coins": 3}))
    job = await HitPawAsyncHook(scripted_conn, retry_policy=FAST).enhance_photo(
        "https://e.com/a.jpg", "face_2x", ".jpg")
    assert (job.job_id, job.consume_coins) == ("j", 3)


async def test_async_bad_input_sends_nothing(scripted, scripted_conn):
    with pytest.raises(HitPawValidationError):
        await HitPawAsyncHook(scripted_conn).enhance_photo("https://e.com/a.jpg", "face_3x", ".jpg")
    assert scripted.requests == []


async def test_session_survives_a_cancelled_request(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(200, {"code": 200, "data": {"status": "WAITING"}}, delay=2),
                    status_step("CONVERTING"))
    hook = HitPawAsyncHook(scripted_conn)
    task = asyncio.ensure_future(hook.get_task_status("job-1"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    session = await get_shared_session()
    assert not session.closed
    assert (await hook.get_task_status("job-1")).status is JobStatus.CONVERTING


def test_one_session_per_event_loop():
    async def grab():
        session = await get_shared_session()
        await close_shared_session()
        return session

    first = asyncio.run(grab())
    second = asyncio.run(grab())
    assert first is not second and first.closed and second.closed


def test_shared_session_closes_with_its_loop():
    """dag.test() runs triggers in a loop of their own: the session must not outlive it unclosed."""

    async def grab():
        return await get_shared_session()

    assert asyncio.run(grab()).closed
