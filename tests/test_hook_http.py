"""HitPawHook over real HTTP against a scripted server: retries, money safety, timeouts, secrets."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from airflow_provider_hitpaw.api import JobStatus
from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawConnectionError,
    HitPawInsufficientCoinsError,
    HitPawInvalidRequestError,
    HitPawJobFailedError,
    HitPawRateLimitError,
    HitPawResponseError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.retries import RetryPolicy
from tests.support.connections import set_hitpaw_connection
from tests.support.scripted_server import Step, ok, status_step

FAST = RetryPolicy(max_attempts=4, max_retry_seconds=30, backoff_initial=0.01, backoff_max=0.05, jitter=0)
HTML_502 = Step(502, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
SUBMIT_OK = ok({"job_id": "job-1", "consume_coins": 10})
IMG = "https://example.com/photo.jpg"


@pytest.fixture
def hook(scripted_conn):
    h = HitPawHook(scripted_conn, retry_policy=FAST)
    yield h
    h.close()


def submit(hook):
    return hook.enhance_photo(IMG, "face_2x", ".jpg")


# --- status: what retries and what does not -----------------------------------------------------

def test_status_retries_5xx_html_then_succeeds(hook, scripted):
    scripted.script(TASK_STATUS_PATH, HTML_502, Step(503, b""), status_step("CONVERTING"))
    assert hook.get_task_status("job-1").status is JobStatus.CONVERTING
    assert scripted.count(TASK_STATUS_PATH) == 3


def test_status_gives_up_after_max_attempts(hook, scripted):
    scripted.script(TASK_STATUS_PATH, HTML_502)
    with pytest.raises(HitPawServerError):
        hook.get_task_status("job-1")
    assert scripted.count(TASK_STATUS_PATH) == FAST.max_attempts


def test_status_honours_retry_after(hook, scripted):
    scripted.script(TASK_STATUS_PATH, Step(429, {"error_code": 100429000}, {"Retry-After": "1"}),
                    status_step("WAITING"))
    hook.get_task_status("job-1")
    first, second = (r.at for r in scripted.requests)
    assert second - first >= 0.95


@pytest.mark.parametrize(("step", "error"), [
    (Step(400, {"error_code": 110400002, "message": "The task does not exist"}), HitPawTaskNotFoundError),
    (Step(400, {"code": 110400000, "msg": "api_key is not valid"}), HitPawAuthError),
    (Step(401, b""), HitPawAuthError),
    (Step(403, {"code": 100403002, "message": "no permission"}), HitPawAuthError),
    (Step(400, {"error_code": 100400002}), HitPawInvalidRequestError),
    (Step(200, b"<html>oops</html>"), HitPawResponseError),
])
def test_status_client_errors_are_never_retried(hook, scripted, step, error):
    scripted.script(TASK_STATUS_PATH, step)
    with pytest.raises(error):
        hook.get_task_status("job-1")
    assert scripted.count(TASK_STATUS_PATH) == 1


def test_status_dropped_connection_is_retried(hook, scripted):
    scripted.script(TASK_STATUS_PATH, Step(drop=True), status_step("COMPLETED", res_url="https://cdn/r.jpg"))
    assert hook.get_task_status("job-1").res_url == "https://cdn/r.jpg"
    assert scripted.count(TASK_STATUS_PATH) == 2


def test_status_trickling_reply_is_cut_at_connect_plus_read_timeout(monkeypatch, scripted):
    set_hitpaw_connection(monkeypatch, "trickle", scripted.base_url, "k-12345", connect_timeout=0.5,
                          read_timeout=0.5)
    scripted.script(TASK_STATUS_PATH, Step(200, b'{"code":200,"data":{"job_id":"job-1","status":"WAITING"}}',
                                           trickle=0.2))
    hook = HitPawHook("trickle", retry_policy=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    with pytest.raises(HitPawConnectionError):
        hook.get_task_status("job-1")
    assert time.monotonic() - started < 2.5


def test_status_huge_reply_is_refused(hook, scripted):
    scripted.script(TASK_STATUS_PATH, Step(200, b"{" + b" " * (2 * 1024 * 1024) + b"}"))
    with pytest.raises(HitPawResponseError, match="larger than"):
        hook.get_task_status("job-1")


# --- submit: never twice when the outcome is unknown --------------------------------------------

def test_submit_sends_the_contract(hook, scripted):
    scripted.script(PHOTO_ENHANCER_PATH, SUBMIT_OK)
    job = hook.enhance_photo(IMG, "face_2x", "JPG", exif=True, dpi=300)
    assert (job.job_id, job.consume_coins) == ("job-1", 10)
    (request,) = scripted.requests
    assert request.headers["Apikey"] == "scripted-key"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {"model_name": "face_2x", "img_url": IMG, "extension": ".jpg", "exif": True, "DPI": 300}


@pytest.mark.parametrize("step", [
    HTML_502,
    Step(500, {"error_code": 100500000, "message": "Internal error"}),
    Step(drop=True),
    Step(200, b"<html>not json</html>"),
    Step(200, {"code": 200, "data": {"consume_coins": 5}}),
])
def test_submit_with_unknown_outcome_is_sent_once(hook, scripted, step):
    scripted.script(PHOTO_ENHANCER_PATH, step, SUBMIT_OK)
    with pytest.raises(HitPawSubmitOutcomeUnknownError, match="may have created a job") as info:
        submit(hook)
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1
    assert info.value.img_url == IMG and info.value.model_name == "face_2x"


def test_submit_read_timeout_is_unknown_and_sent_once(monkeypatch, scripted):
    set_hitpaw_connection(monkeypatch, "slow", scripted.base_url, "k-12345", read_timeout=0.3)
    scripted.script(PHOTO_ENHANCER_PATH, Step(200, {"code": 200}, delay=1.5), SUBMIT_OK)
    with pytest.raises(HitPawSubmitOutcomeUnknownError, match="ReadTimeout"):
        HitPawHook("slow", retry_policy=FAST).enhance_photo(IMG, "face_2x", ".jpg")
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


def test_submit_retries_429_only(hook, scripted):
    scripted.script(PHOTO_ENHANCER_PATH, Step(429, {"error_code": 100429000}), Step(429, b""), SUBMIT_OK)
    assert submit(hook).job_id == "job-1"
    assert scripted.count(PHOTO_ENHANCER_PATH) == 3


def test_submit_429_exhausted_raises_rate_limit(hook, scripted):
    scripted.script(PHOTO_ENHANCER_PATH, Step(429, {"error_code": 100429000}))
    with pytest.raises(HitPawRateLimitError):
        submit(hook)
    assert scripted.count(PHOTO_ENHANCER_PATH) == FAST.max_attempts


@pytest.mark.parametrize(("step", "error"), [
    (Step(402, {"error_code": 110402000, "message": "The coins are not enough"}), HitPawInsufficientCoinsError),
    (Step(200, {"code": 110402004, "msg": "The Demo try times exceeded"}), HitPawInsufficientCoinsError),
    (Step(400, {"error_code": 110400005}), HitPawInvalidRequestError),
    (Step(400, {"error_code": 110400000}), HitPawAuthError),
    (Step(301, b"", {"Location": "https://elsewhere/api/photo-enhancer"}), HitPawResponseError),
])
def test_submit_refusals_are_raised_once(hook, scripted, step, error):
    scripted.script(PHOTO_ENHANCER_PATH, step, SUBMIT_OK)
    with pytest.raises(error):
        submit(hook)
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


def test_submit_retries_when_nothing_could_be_sent(monkeypatch):
    with socket.socket() as sock:  # a port with nobody listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    set_hitpaw_connection(monkeypatch, "refused", f"http://127.0.0.1:{port}", "k-12345")
    hook = HitPawHook("refused", retry_policy=FAST)
    attempts = []
    original = hook._submit_once
    monkeypatch.setattr(hook, "_submit_once", lambda *a: attempts.append(1) or original(*a))
    with pytest.raises(HitPawConnectionError, match="Could not connect"):
        submit(hook)
    assert len(attempts) == FAST.max_attempts


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model_name": "face2x"}, "Did you mean 'face_2x'"),
    ({"extension": ".gif"}, "not valid"),
    ({"img_url": "ftp://x/y.jpg"}, "http"),
    ({"dpi": "many"}, "dpi"),
    ({"exif": "yes"}, "exif"),
])
def test_bad_input_sends_nothing(hook, scripted, kwargs, match):
    args = {"img_url": IMG, "model_name": "face_2x", "extension": ".jpg"} | kwargs
    with pytest.raises(HitPawValidationError, match=match):
        hook.enhance_photo(**args)
    assert scripted.requests == []


# --- waiting -------------------------------------------------------------------------------------

def test_wait_for_completion_through_states(hook, scripted):
    scripted.script(TASK_STATUS_PATH, status_step("WAITING"), status_step("CONVERTING"),
                    status_step("QUANTUM_LEAP"), status_step("COMPLETED", res_url="https://cdn/r.jpg"))
    seen = []
    status = hook.wait_for_completion("job-1", poll_interval=0.01, timeout=10, on_status=seen.append)
    assert status.res_url == "https://cdn/r.jpg"
    assert [s.raw_status for s in seen] == ["WAITING", "CONVERTING", "QUANTUM_LEAP", "COMPLETED"]


@pytest.mark.parametrize("final", ["ERROR", "ERROR_INTERRUPTION", "TIMEOUT", "CANCEL", "REJECT", "NSFW"])
def test_wait_for_completion_raises_on_failure(hook, scripted, final):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"), status_step(final))
    with pytest.raises(HitPawJobFailedError) as info:
        hook.wait_for_completion("job-1", poll_interval=0.01, timeout=10)
    assert info.value.job_status == final and info.value.job_id == "job-1"


def test_wait_for_completion_has_a_deadline(hook, scripted):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"))
    started = time.monotonic()
    with pytest.raises(HitPawWaitTimeoutError, match="still CONVERTING"):
        hook.wait_for_completion("job-1", poll_interval=0.1, deadline=time.time() + 0.5)
    assert 0.4 < time.monotonic() - started < 2


def test_job_forgotten_by_the_server_fails_instead_of_polling_forever(hook, scripted):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"),
                    Step(400, {"error_code": 110400002, "message": "The task does not exist"}))
    with pytest.raises(HitPawTaskNotFoundError):
        hook.wait_for_completion("job-1", poll_interval=0.01, timeout=30)


# --- download and connection test ----------------------------------------------------------------

def test_download_never_sends_the_key_and_writes_atomically(hook, scripted, tmp_path):
    scripted.script("/r/result.png", Step(200, b"\x89PNG" + b"x" * 5000))
    path = hook.download_result(scripted.base_url + "/r/result.png", tmp_path)
    assert path == str(tmp_path / "result.png")
    assert (tmp_path / "result.png").read_bytes() == b"\x89PNG" + b"x" * 5000
    assert "Apikey" not in scripted.requests[0].headers
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_download_retries_5xx_and_names_files(hook, scripted, tmp_path):
    scripted.script("/r/a.jpg", HTML_502, Step(200, b"jpegdata"))
    target = tmp_path / "sub" / "mine.jpg"
    assert hook.download_result(scripted.base_url + "/r/a.jpg", target) == str(target)
    assert target.read_bytes() == b"jpegdata"
    assert scripted.count("/r/a.jpg") == 2


def test_download_404_is_not_retried(hook, scripted, tmp_path):
    scripted.script("/r/gone.jpg", Step(404, b"<html>gone</html>"))
    with pytest.raises(HitPawResponseError):
        hook.download_result(scripted.base_url + "/r/gone.jpg", tmp_path)
    assert scripted.count("/r/gone.jpg") == 1
    assert list(tmp_path.iterdir()) == []


def test_connection_test_spends_nothing(hook, scripted):
    scripted.script(TASK_STATUS_PATH, Step(400, {"error_code": 110400002, "message": "The task does not exist"}))
    assert hook.test_connection()[0] is True
    assert scripted.count(PHOTO_ENHANCER_PATH) == 0
    scripted.script(TASK_STATUS_PATH, Step(400, {"error_code": 110400000, "message": "api_key is not valid"}))
    ok_, message = hook.test_connection()
    assert not ok_ and "refused the API key" in message


# --- secrets --------------------------------------------------------------------------------------

def test_key_never_in_errors_or_logs(monkeypatch, scripted, caplog):
    canary = "CANARY-KEY-7f3a9c1e"
    set_hitpaw_connection(monkeypatch, "canary", scripted.base_url, canary)
    scripted.script(TASK_STATUS_PATH, HTML_502, Step(400, {"error_code": 110400000, "message": "api_key is not valid"}))
    scripted.script(PHOTO_ENHANCER_PATH, Step(drop=True))
    hook = HitPawHook("canary", retry_policy=FAST)
    texts = []
    with caplog.at_level(logging.DEBUG):
        for call in (lambda: hook.get_task_status("job-1"), lambda: submit(hook)):
            with pytest.raises(Exception) as info:
                call()
            texts += [str(info.value), repr(info.value), repr(hook.settings)]
    assert scripted.requests[0].headers["Apikey"] == canary
    assert canary not in caplog.text
    assert all(canary not in t for t in texts)


def test_a_silent_server_cannot_hold_a_wait_past_its_deadline(hook, scripted):
    scripted.script(TASK_STATUS_PATH, Step(200, {"code": 200}, delay=10))
    started = time.monotonic()
    with pytest.raises((HitPawConnectionError, HitPawWaitTimeoutError)):
        hook.wait_for_completion("job-1", poll_interval=0.1, deadline=time.time() + 0.8)
    assert time.monotonic() - started < 2.5


def test_downloaded_file_honours_the_umask(hook, scripted, tmp_path):
    import os

    scripted.script("/r/shared.jpg", Step(200, b"jpeg"))
    old = os.umask(0o022)
    try:
        path = hook.download_result(scripted.base_url + "/r/shared.jpg", tmp_path)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_submit_reuses_only_a_connection_that_just_answered(hook, scripted):
    scripted.script(TASK_STATUS_PATH, status_step("WAITING"))
    scripted.script(PHOTO_ENHANCER_PATH, SUBMIT_OK)
    hook.get_task_status("job-1")
    submit(hook)
    assert scripted.requests[0].peer == scripted.requests[1].peer  # answered just now: reused
    time.sleep(1.2)
    submit(hook)
    assert scripted.requests[2].peer != scripted.requests[1].peer  # idle: a fresh connection


@pytest.mark.parametrize("path", [TASK_STATUS_PATH, PHOTO_ENHANCER_PATH])
def test_a_key_quoted_back_by_the_server_is_masked_at_the_source(monkeypatch, scripted, path):
    """Not left to Airflow's log masking: the error's own text is clean, its cause too."""
    canary = "CANARY-ECHO-5e2b7d"
    set_hitpaw_connection(monkeypatch, "echo", scripted.base_url, canary)
    scripted.script(path, Step(500, {"error_code": 100500000, "message": f"bad key {canary}"}))
    hook = HitPawHook("echo", retry_policy=RetryPolicy(max_attempts=1))
    call = (lambda: hook.get_task_status("job-1")) if path == TASK_STATUS_PATH else (lambda: submit(hook))
    with pytest.raises((HitPawServerError, HitPawSubmitOutcomeUnknownError)) as info:
        call()
    chain = [info.value, info.value.__cause__]
    assert all(canary not in str(e) and canary not in repr(e.args) for e in chain if e is not None)
    assert "***" in str(info.value)
