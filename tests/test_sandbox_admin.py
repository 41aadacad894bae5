"""The sandbox's /admin/ endpoints over HTTP: stats, keys, faults, settings, resets, synthetic jobs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.sandbox.ledger import key_id

KEY = "test-key"


def admin(sb: Any, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, sb.url(path), json=body, timeout=10)


def api(sb: Any, path: str, body: Any, key: str = KEY) -> requests.Response:
    return requests.post(sb.url(path), json=body, headers={"Apikey": key}, timeout=10)


def photo(sb: Any, sample: str = "portrait.jpg") -> dict:
    return {"model_name": "face_2x", "img_url": sb.url(f"/samples/{sample}"), "extension": ".jpg"}


def test_stats_counts_submissions_requests_and_coins(sandbox: Any) -> None:
    job_ids = [api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox)).json()["data"]["job_id"] for _ in range(2)]
    api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, "landscape.png"))
    api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox), key="bad")
    api(sandbox, TASK_STATUS_PATH, {"job_id": job_ids[0]})
    reply = admin(sandbox, "GET", "/admin/stats")
    assert reply.status_code == 200
    stats = reply.json()
    kid = key_id(KEY)
    assert stats["submissions_by_key"] == {kid: 3}
    assert stats["submissions_by_img_url"] == {photo(sandbox)["img_url"]: 2, photo(sandbox, "landscape.png")["img_url"]: 1}
    assert stats["coins_charged_by_key"] == {kid: 30}
    assert stats["balances"] == {kid: 970}
    assert sum(stats["jobs_by_state"].values()) == 3
    assert stats["requests_by_endpoint"]["POST /api/photo-enhancer"] == 4
    assert stats["requests_by_endpoint"]["POST /api/task-status"] == 1
    assert stats["requests_by_status"]["400"] == 1
    records = stats["submissions"]
    assert [r["job_id"] for r in records][:2] == job_ids
    assert set(records[0]) == {"job_id", "key_id", "img_url", "model", "coins", "created_at", "reply_delivered"}
    assert all(r["reply_delivered"] and r["key_id"] == kid and r["model"] == "face_2x" for r in records)
    assert KEY not in reply.text  # keys only ever appear as key ids


def test_add_key_and_set_balance(sandbox: Any) -> None:
    reply = admin(sandbox, "POST", "/admin/keys", {"api_key": "new-key-123456", "coins": 10})
    assert reply.status_code == 200
    assert reply.json() == {"key_id": key_id("new-key-123456"), "balance": 10}
    assert "new-key-123456" not in reply.text
    assert api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox), key="new-key-123456").status_code == 200
    admin(sandbox, "POST", "/admin/keys", {"api_key": "new-key-123456", "coins": 0})
    assert api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox), key="new-key-123456").status_code == 402
    for bad in ({"api_key": "", "coins": 1}, {"api_key": "k", "coins": -1}, {"api_key": "k"}, [1]):
        reply = admin(sandbox, "POST", "/admin/keys", bad)
        assert reply.status_code == 400 and "error" in reply.json()


def test_faults_and_settings_round_trip(sandbox: Any) -> None:
    assert admin(sandbox, "GET", "/admin/faults").json()["drop"] == 0.0
    reply = admin(sandbox, "POST", "/admin/faults", {"rate_429": 1.0, "fault_endpoints": ["status"]})
    assert reply.json()["rate_429"] == 1.0 and reply.json()["fault_endpoints"] == ["status"]
    assert api(sandbox, TASK_STATUS_PATH, {"job_id": "x"}).status_code == 429
    assert admin(sandbox, "POST", "/admin/faults", {"rate_429": 2}).status_code == 400
    assert admin(sandbox, "POST", "/admin/settings", {"error_shape": "code_msg"}).json()["error_shape"] == "code_msg"
    assert admin(sandbox, "POST", "/admin/settings", {"error_shape": "xml"}).status_code == 400
    assert admin(sandbox, "GET", "/admin/settings").json() == {
        "error_shape": "code_msg",
        "job_seconds": 0.3,
        "result_seconds": 8 * 86400.0,
    }


def test_reset_restores_the_start(sandbox: Any) -> None:
    job_id = api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox)).json()["data"]["job_id"]
    admin(sandbox, "POST", "/admin/keys", {"api_key": KEY, "coins": 1})
    admin(sandbox, "POST", "/admin/faults", {"rate_429": 1.0})
    assert admin(sandbox, "POST", "/admin/reset").status_code == 200
    stats = admin(sandbox, "GET", "/admin/stats").json()
    assert stats["submissions"] == [] and stats["jobs_total"] == 0 and stats["faults_injected"] == {}
    assert stats["balances"] == {key_id(KEY): 1000}
    assert admin(sandbox, "GET", "/admin/faults").json()["rate_429"] == 0.0
    assert api(sandbox, TASK_STATUS_PATH, {"job_id": job_id}).json()["error_code"] == 110400002


def test_forget_jobs_keeps_the_ledger(sandbox: Any) -> None:
    job_id = api(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox)).json()["data"]["job_id"]
    assert admin(sandbox, "POST", "/admin/forget-jobs").status_code == 200
    assert api(sandbox, TASK_STATUS_PATH, {"job_id": job_id}).json()["error_code"] == 110400002
    stats = sandbox.stats()
    assert stats["balances"] == {key_id(KEY): 990} and len(stats["submissions"]) == 1


def test_synthetic_jobs_for_benchmarks(sandbox: Any) -> None:
    reply = admin(sandbox, "POST", "/admin/jobs",
                  # 2 s: creating 2,000 jobs and answering can take a good part of a second on a busy machine
                  {"api_key": KEY, "count": 2000, "complete_after_seconds": 2.0, "result_bytes": 300_000})
    job_ids = reply.json()["job_ids"]
    assert len(job_ids) == 2000 and len(set(job_ids)) == 2000
    assert api(sandbox, TASK_STATUS_PATH, {"job_id": job_ids[0]}).json()["data"]["res_url"] == ""
    time.sleep(2.05)
    data = api(sandbox, TASK_STATUS_PATH, {"job_id": job_ids[-1]}).json()["data"]
    assert data["status"] == "COMPLETED"
    blob = requests.get(data["res_url"], timeout=10)
    assert blob.headers["Content-Length"] == "300000"
    assert blob.content == (bytes(range(256)) * 1200)[:300_000]
    stats = sandbox.stats()
    assert stats["jobs_by_state"] == {"COMPLETED": 2000} and stats["coins_charged_by_key"] == {}


def test_synthetic_jobs_with_other_final_states(sandbox: Any) -> None:
    ids = sandbox.create_jobs(KEY, count=2, complete_after_seconds=[0, 60], status="NSFW")
    assert api(sandbox, TASK_STATUS_PATH, {"job_id": ids[0]}).json()["data"]["status"] == "NSFW"
    assert api(sandbox, TASK_STATUS_PATH, {"job_id": ids[1]}).json()["data"]["status"] == "WAITING"
    [done] = sandbox.create_jobs(KEY)
    data = api(sandbox, TASK_STATUS_PATH, {"job_id": done}).json()["data"]
    assert requests.get(data["res_url"], timeout=10).headers["Content-Type"] == "image/jpeg"
    for bad in ({"api_key": "nobody"}, {"api_key": KEY, "count": 0}, {"api_key": KEY, "status": "done"},
                {"api_key": KEY, "count": 2, "complete_after_seconds": [1]}, {"api_key": KEY, "extra": 1}):
        assert admin(sandbox, "POST", "/admin/jobs", bad).status_code == 400


def test_blob_streams_deterministic_bytes(sandbox: Any) -> None:
    size = 3 * 65536 + 17
    with requests.get(sandbox.url(f"/admin/blob?bytes={size}"), stream=True, timeout=10) as reply:
        assert reply.headers["Content-Length"] == str(size)
        body = b"".join(reply.iter_content(65536))
    assert body == (bytes(range(256)) * (size // 256 + 1))[:size]
    assert admin(sandbox, "GET", "/admin/blob?bytes=-1").status_code == 400
    assert admin(sandbox, "GET", "/admin/blob?bytes=x").status_code == 400


@pytest.mark.parametrize(("admin_flag", "served"), [(None, False), (True, True)])
def test_admin_only_on_loopback_unless_asked(admin_flag: bool | None, served: bool) -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox

    with start_sandbox(host="0.0.0.0", allow_remote=True, admin=admin_flag, api_keys=[KEY]) as sb:
        assert requests.get(sb.url("/healthz"), timeout=5).status_code == 200
        assert (requests.get(sb.url("/admin/stats"), timeout=5).status_code == 200) is served
        assert json.dumps(sb.stats())  # the Python handle works either way


def test_remote_host_needs_allow_remote() -> None:
    from airflow_provider_hitpaw.sandbox import SandboxConfig

    with pytest.raises(ValueError, match="allow_remote"):
        SandboxConfig(host="0.0.0.0")


def test_stats_report_the_peak_of_jobs_running_at_once_per_key(sandbox) -> None:  # type: ignore[no-untyped-def]
    from airflow_provider_hitpaw.contract.endpoints import API_KEY_HEADER
    from tests.support.connections import SANDBOX_API_KEY

    sandbox.configure(job_seconds=1.0)
    headers = {API_KEY_HEADER: SANDBOX_API_KEY}
    photo = sandbox.url("/samples/portrait.jpg")

    def submit() -> None:
        reply = requests.post(sandbox.url(PHOTO_ENHANCER_PATH), headers=headers, timeout=10,
                              json={"img_url": photo, "model_name": "face_2x", "extension": ".jpg"})
        assert reply.json()["code"] == 200

    for _ in range(3):
        submit()
    peak = sandbox.stats()["peak_in_flight_by_key"]
    assert list(peak.values()) == [3]
    time.sleep(1.6)  # all three have ended: a fourth runs alone
    submit()
    assert list(sandbox.stats()["peak_in_flight_by_key"].values()) == [3]
