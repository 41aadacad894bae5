"""Bad replies, property-based, over real HTTP: whatever HitPaw (or a gateway) answers, never a false success.

Random JSON shapes, wrong types, missing fields, unknown statuses, huge bodies, non-UTF-8, HTML and
random HTTP statuses are served by the scripted server to the sync hook, the async hook and the trigger.
Each must end in a value that matches the reply, or in a ``HitPawError`` (the malformed-response error
for what cannot be read) -- never a ``KeyError``/``TypeError``, never success for a reply that is not
a COMPLETED job with an http(s) result URL. An undocumented status keeps the wait going. A submission
whose reply cannot be read is never sent twice, unless the reply was a rate limit (nothing created).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw.api import JobStatus
from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawError,
    HitPawRateLimitError,
    HitPawResponseError,
    HitPawSubmitOutcomeUnknownError,
)
from airflow_provider_hitpaw.events import completed_job_from_event
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.hooks.transport import MAX_REPLY_BYTES
from airflow_provider_hitpaw.retries import RetryPolicy
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from tests.support.connections import set_hitpaw_connection
from tests.support.scripted_server import Step

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ONE_TRY = RetryPolicy(max_attempts=1)
FAST = RetryPolicy(max_attempts=3, max_retry_seconds=5, backoff_initial=0.001, backoff_max=0.002, jitter=0)
KNOWN = [s.value for s in JobStatus if s is not JobStatus.UNKNOWN]

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
statuses = st.sampled_from(KNOWN) | st.sampled_from(["completed", " COMPLETED ", "DONE", "SUCCESS", "", "null"]) \
    | st.text(max_size=12) | json_values
urls = st.sampled_from(["https://r.example/job-1/out.jpg", "http://r.example/o.png", "ftp://r.example/o.jpg",
                        "javascript:alert(1)", "", "/relative.jpg"]) | json_values
job_ids = st.sampled_from(["job-1", "job-2", "", None]) | json_values
codes = st.sampled_from([200, 0, "200", 110400002, 100429000, 100500000, 110402000, -1, None]) | json_values
status_data = st.fixed_dictionaries({}, optional={"job_id": job_ids, "status": statuses, "res_url": urls,
                                                  "original_url": urls})
submit_data = st.fixed_dictionaries({}, optional={
    "job_id": st.sampled_from(["job-1", "", "../x", "a" * 200]) | json_values,
    "consume_coins": st.sampled_from([10, 0, -5, "10", "ten", 1.5, True]) | json_values,
})


def envelopes(data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries({"data": data}, optional={"code": codes, "message": json_values, "msg": json_values}),
        st.fixed_dictionaries({}, optional={"error_code": codes, "code": codes, "message": json_values,
                                            "data": json_values | data}),
        json_values,
    )


def bodies(data: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        envelopes(data).map(lambda v: json.dumps(v).encode()),
        st.sampled_from([
            b"", b"null", b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"\xff\xfe\x00garbage",
            b'{"code": 200, "data": {"status": "COMPLETED", "res_url": "https://r.example/\xff.jpg"}}',
            b'{"code": 200, "data": ', b"[1, 2", b"1e999999",
            b'{"code": 200, "data": {"job_id": "job-1", "status": "COMPLETED", "res_url": "https://r.example/o.jpg"}}',
        ]),
        st.binary(max_size=64),
        st.just(b'{"code": 200, "data": {"status": "COMPLETED", "pad": "' + b"x" * (MAX_REPLY_BYTES + 16) + b'"}}'),
    )


http_statuses = st.sampled_from([200, 200, 200, 201, 202, 204, 301, 400, 401, 402, 404, 418, 429, 500, 502, 503])


def is_really_completed(status_code: int, body: bytes) -> bool:
    """An independent reading of the contract: the only replies that may count as success."""
    if not 200 <= status_code < 300 or len(body) > MAX_REPLY_BYTES:
        return False
    try:
        payload = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return False
    # A code that is not a whole number (say ``true``) says nothing and is ignored; "error_code" first.
    codes = [_whole(payload.get(k)) for k in ("error_code", "code")]
    code = next((c for c in codes if c is not None), None)
    if code not in (None, 200, 0):
        return False
    data = payload["data"]
    status, res_url = data.get("status"), data.get("res_url")
    return (isinstance(status, str) and status.strip().upper() == "COMPLETED"
            and isinstance(res_url, str) and res_url.startswith(("http://", "https://"))
            and data.get("job_id", "job-1") in (None, "", "job-1"))


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _setup(monkeypatch: Any, scripted: Any) -> str:
    set_hitpaw_connection(monkeypatch, "hitpaw_fuzz", scripted.base_url, "fuzz-key", read_timeout=3,
                          connect_timeout=2)
    return "hitpaw_fuzz"


@FUZZ
@given(status_code=http_statuses, body=bodies(status_data))
def test_sync_status_replies(monkeypatch, scripted, status_code, body):
    hook = HitPawHook(_setup(monkeypatch, scripted), retry_policy=ONE_TRY)
    scripted.script(TASK_STATUS_PATH, Step(status_code, body))
    try:
        status = hook.get_task_status("job-1")
    except HitPawError:
        return
    finally:
        hook.close()
    assert status.is_success == is_really_completed(status_code, body)
    if status.status is JobStatus.UNKNOWN:
        assert not status.is_terminal  # an undocumented status keeps the wait going


@FUZZ
@given(status_code=http_statuses, body=bodies(status_data))
def test_async_status_replies(monkeypatch, scripted, status_code, body):
    conn_id = _setup(monkeypatch, scripted)
    scripted.script(TASK_STATUS_PATH, Step(status_code, body))

    async def ask() -> Any:
        try:
            return await HitPawAsyncHook(conn_id, retry_policy=ONE_TRY).get_task_status("job-1")
        except HitPawError:
            return None
        finally:
            await close_shared_session()

    status = asyncio.run(ask())
    if status is not None:
        assert status.is_success == is_really_completed(status_code, body)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(status_code=http_statuses, body=bodies(status_data))
def test_trigger_status_replies(monkeypatch, scripted, status_code, body):
    conn_id = _setup(monkeypatch, scripted)
    scripted.script(TASK_STATUS_PATH, Step(status_code, body))
    trigger = HitPawTaskStatusTrigger("job-1", time.time() + 0.25, conn_id, poll_interval=0.05,
                                      max_consecutive_errors=2)

    async def run() -> list[dict[str, Any]]:
        try:
            return [e.payload async for e in trigger.run()]
        finally:
            await close_shared_session()

    events = asyncio.run(asyncio.wait_for(run(), 10))
    assert len(events) == 1
    event = events[0]
    assert event["status"] in ("success", "error", "timeout")
    assert (event["status"] == "success") == is_really_completed(status_code, body)
    try:
        completed = completed_job_from_event(json.loads(json.dumps(event)), job_id="job-1")
    except HitPawError:
        assert event["status"] != "success"
    else:
        assert completed.res_url.startswith(("http://", "https://"))


@FUZZ
@given(status_code=http_statuses, body=bodies(submit_data))
def test_submit_replies(monkeypatch, scripted, status_code, body):
    hook = HitPawHook(_setup(monkeypatch, scripted), retry_policy=FAST)
    before = scripted.count(PHOTO_ENHANCER_PATH)
    scripted.script(PHOTO_ENHANCER_PATH, Step(status_code, body))
    try:
        job = hook.enhance_photo("https://photos.example/a.jpg", "face_2x", ".jpg")
    except HitPawRateLimitError:
        return  # nothing was created: retried up to the policy's attempts
    except HitPawError as err:
        sent = scripted.count(PHOTO_ENHANCER_PATH) - before
        assert sent == 1, f"{type(err).__name__} after {sent} submissions"
        if 200 <= status_code < 300 and isinstance(err, HitPawResponseError):
            raise AssertionError("an unreadable 2xx submit reply must be an unknown outcome") from err
        if status_code >= 500:
            assert isinstance(err, HitPawSubmitOutcomeUnknownError)
        return
    finally:
        hook.close()
    assert scripted.count(PHOTO_ENHANCER_PATH) - before == 1
    payload = json.loads(body.decode("utf-8"))
    assert 200 <= status_code < 300 and payload["data"]["job_id"] == job.job_id
    assert isinstance(job.consume_coins, int) and job.consume_coins >= 0


def test_a_server_error_code_in_a_200_submit_reply_is_an_unknown_outcome_sent_once(monkeypatch, scripted):
    """Found by the fuzzing above: ``{"code": 100500000}`` with HTTP 200 was retried as a plain server
    error, so one submission could be sent (and charged) up to max_attempts times."""
    hook = HitPawHook(_setup(monkeypatch, scripted), retry_policy=FAST)
    for code in (100500000, 100500007):
        before = scripted.count(PHOTO_ENHANCER_PATH)
        scripted.script(PHOTO_ENHANCER_PATH, Step(200, {"code": code, "message": "Operation timeout"}))
        try:
            hook.enhance_photo("https://photos.example/a.jpg", "face_2x", ".jpg")
        except HitPawSubmitOutcomeUnknownError as err:
            assert err.img_url == "https://photos.example/a.jpg" and err.model_name == "face_2x"
        else:
            raise AssertionError("no error")
        assert scripted.count(PHOTO_ENHANCER_PATH) - before == 1
    hook.close()


def test_a_server_error_code_in_a_200_submit_reply_is_sent_once_by_the_async_hook(monkeypatch, scripted):
    conn_id = _setup(monkeypatch, scripted)
    scripted.script(PHOTO_ENHANCER_PATH, Step(200, {"error_code": 100500000, "message": "Internal error"}))

    async def submit() -> None:
        try:
            await HitPawAsyncHook(conn_id, retry_policy=FAST).enhance_photo("https://photos.example/a.jpg",
                                                                            "face_2x", ".jpg")
        finally:
            await close_shared_session()

    try:
        asyncio.run(submit())
    except HitPawSubmitOutcomeUnknownError:
        pass
    else:
        raise AssertionError("no error")
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(status=st.text(min_size=1, max_size=16).filter(lambda s: s.strip() and s.strip().upper() not in KNOWN))
def test_trigger_keeps_polling_an_undocumented_status(monkeypatch, scripted, status):
    conn_id = _setup(monkeypatch, scripted)
    scripted.script(TASK_STATUS_PATH, Step(200, {"code": 200, "data": {
        "job_id": "job-1", "status": status, "res_url": "https://r.example/job-1/out.jpg"}}))
    before = scripted.count(TASK_STATUS_PATH)
    # Below the provider's 1 s floor, so that this check of statuses stays fast.
    monkeypatch.setattr("airflow_provider_hitpaw.triggers.hitpaw.MIN_POLL_INTERVAL_SECONDS", 0.05)
    trigger = HitPawTaskStatusTrigger("job-1", time.time() + 0.3, conn_id, poll_interval=0.05)

    async def run() -> list[dict[str, Any]]:
        try:
            return [e.payload async for e in trigger.run()]
        finally:
            await close_shared_session()

    (event,) = asyncio.run(asyncio.wait_for(run(), 10))
    assert event["status"] == "timeout", event  # never success, never a failure: it kept asking
    assert scripted.count(TASK_STATUS_PATH) - before >= 2
