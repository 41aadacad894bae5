"""Fault injection as a client sees it: gateway pages, 429s, dropped connections, slow replies."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.sandbox.ledger import key_id

KEY = "test-key"
KEY_ID = key_id(KEY)


def post(sb: Any, path: str, body: Any, timeout: float = 10) -> requests.Response:
    return requests.post(sb.url(path), json=body, headers={"Apikey": KEY}, timeout=timeout)


def photo(sb: Any) -> dict:
    return {"model_name": "face_2x", "img_url": sb.url("/samples/portrait.jpg"), "extension": ".jpg"}


def submit(sb: Any) -> str:
    reply = post(sb, PHOTO_ENHANCER_PATH, photo(sb))
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]["job_id"]


def wait_status(sb: Any, job_id: str, deadline: float = 10) -> dict:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        data = post(sb, TASK_STATUS_PATH, {"job_id": job_id}).json()["data"]
        if data["status"] in ("COMPLETED", "ERROR"):
            return data
        time.sleep(0.02)
    raise AssertionError("job not final")


def charged(sb: Any) -> int:
    return sb.stats()["coins_charged_by_key"].get(KEY_ID, 0)


def test_error_5xx_is_an_html_gateway_page_and_not_processed(sandbox: Any) -> None:
    sandbox.set_faults(error_5xx=1.0)
    statuses = set()
    for _ in range(3):
        reply = post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox))
        assert reply.headers["Content-Type"].startswith("text/html")
        assert "<html>" in reply.text
        statuses.add(reply.status_code)
    assert statuses == {500, 502, 503}
    stats = sandbox.stats()
    assert stats["submissions"] == [] and charged(sandbox) == 0
    assert stats["faults_injected"] == {"error_5xx": 3}


def test_rate_429_has_retry_after_and_is_not_processed(sandbox: Any) -> None:
    sandbox.set_faults(rate_429=1.0)
    reply = post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox))
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    assert reply.json() == {"error_code": 100429000, "message": "Too many requests, please try again later"}
    assert charged(sandbox) == 0


def test_drop_closes_the_connection_without_processing(sandbox: Any) -> None:
    sandbox.set_faults(drop=1.0)
    with pytest.raises(requests.ConnectionError):
        post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox))
    stats = sandbox.stats()
    assert stats["submissions"] == [] and charged(sandbox) == 0
    assert stats["requests_by_status"] == {"dropped": 1}


def test_drop_after_charges_but_loses_the_reply(sandbox: Any) -> None:
    sandbox.set_faults(drop_after=1.0, fault_endpoints=["submit"])
    with pytest.raises(requests.ConnectionError):
        post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox))
    stats = sandbox.stats()
    assert charged(sandbox) == 10
    [record] = stats["submissions"]
    assert record["reply_delivered"] is False and record["key_id"] == KEY_ID
    # The job exists and completes: only the reply was lost.
    assert wait_status(sandbox, record["job_id"])["status"] == "COMPLETED"


def test_slow_reply_outlasts_a_short_read_timeout(sandbox: Any) -> None:
    sandbox.set_faults(slow=1.0, slow_seconds=1.5, fault_endpoints=["submit"])
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox), timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert charged(sandbox) == 10  # processed all the same
    deadline = time.monotonic() + 5
    while sandbox.stats()["submissions"][0]["reply_delivered"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox.stats()["submissions"][0]["reply_delivered"] is False


def test_slow_reply_arrives_late_for_a_patient_client(sandbox: Any) -> None:
    sandbox.set_faults(slow=1.0, slow_seconds=0.5)
    started = time.monotonic()
    reply = post(sandbox, TASK_STATUS_PATH, {"job_id": "nope"})
    assert reply.status_code == 400 and time.monotonic() - started >= 0.5


def test_fail_job_ends_in_error_and_is_charged(sandbox: Any) -> None:
    sandbox.set_faults(fail_job=1.0)
    job_id = submit(sandbox)
    data = wait_status(sandbox, job_id)
    assert data["status"] == "ERROR" and data["res_url"] == ""
    assert charged(sandbox) == 10 and sandbox.stats()["faults_injected"]["fail_job"] == 1


def test_faults_limited_to_some_endpoints(sandbox: Any) -> None:
    sandbox.set_faults(error_5xx=1.0, fault_endpoints=["status"])
    job_id = submit(sandbox)
    assert post(sandbox, TASK_STATUS_PATH, {"job_id": job_id}).status_code in (500, 502, 503)
    assert requests.get(sandbox.url("/healthz"), timeout=5).status_code == 200


def test_result_download_faults(sandbox: Any) -> None:
    data = wait_status(sandbox, submit(sandbox))
    sandbox.set_faults(drop=1.0, fault_endpoints=["result"])
    with pytest.raises(requests.ConnectionError):
        requests.get(data["res_url"], timeout=5)
    sandbox.set_faults(drop=0.0, drop_after=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.get(data["res_url"], timeout=5)
    sandbox.set_faults(drop_after=0.0)
    assert requests.get(data["res_url"], timeout=5).status_code == 200


def test_rate_limit_token_bucket(sandbox: Any) -> None:
    sandbox.set_faults(rate_limit_rps=2.0)
    replies = [post(sandbox, TASK_STATUS_PATH, {"job_id": "x"}) for _ in range(8)]
    limited = [r for r in replies if r.status_code == 429]
    assert len(limited) >= 4
    assert all(r.headers["Retry-After"] == "1" and r.json()["error_code"] == 100429000 for r in limited)
    assert sandbox.stats()["faults_injected"]["rate_limit"] == len(limited)
    assert requests.get(sandbox.url("/healthz"), timeout=5).status_code == 200  # only /api/* is limited
    time.sleep(0.6)
    assert post(sandbox, TASK_STATUS_PATH, {"job_id": "x"}).status_code == 400


def test_seeded_faults_are_reproducible(sandbox: Any) -> None:
    def outcomes() -> list[int]:
        return [post(sandbox, TASK_STATUS_PATH, {"job_id": "x"}).status_code for _ in range(20)]

    sandbox.set_faults(rate_429=0.5, seed=42)
    first = outcomes()
    sandbox.set_faults(seed=None)
    sandbox.set_faults(seed=42)
    assert outcomes() == first
    assert {400, 429} == set(first)


def test_invalid_fault_settings_are_refused(sandbox: Any) -> None:
    for bad in ({"drop": 1.5}, {"fault_endpoints": ["nope"]}, {"unknown": 1}, {"rate_limit_rps": 0}):
        with pytest.raises(ValueError):
            sandbox.set_faults(**bad)
    assert sandbox.faults()["drop"] == 0.0
