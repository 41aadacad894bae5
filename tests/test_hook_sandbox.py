"""Both hooks end to end against the sandbox over real HTTP: submit, poll, complete, download."""

from __future__ import annotations

import pytest
from PIL import Image

from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawInsufficientCoinsError,
    HitPawInvalidRequestError,
    HitPawJobFailedError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
)
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.retries import RetryPolicy
from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05, jitter=0)


@pytest.fixture
def hook(sandbox_conn):
    h = HitPawHook(sandbox_conn, retry_policy=FAST)
    yield h
    h.close()


def submissions(sandbox) -> int:
    return sum(sandbox.stats()["submissions_by_key"].values())


@pytest.mark.parametrize(("model", "scale", "ext", "fmt"), [("face_2x", 2, ".jpg", "JPEG"),
                                                           ("general_4x", 4, ".png", "PNG")])
def test_enhance_wait_download(hook, sandbox, tmp_path, model, scale, ext, fmt):
    img_url = sandbox.url("/samples/portrait.jpg")
    job = hook.enhance_photo(img_url, model, ext, dpi=300)
    assert job.consume_coins > 0
    seen = []
    status = hook.wait_for_completion(job.job_id, poll_interval=0.05, timeout=60, on_status=seen.append)
    assert status.is_success and status.original_url == img_url
    assert len({s.raw_status for s in seen}) >= 2, "expected intermediate states before COMPLETED"
    path = hook.download_result(status.res_url, tmp_path, job_id=job.job_id, source_url=img_url)
    assert path == str(tmp_path / f"portrait-{job.job_id}{ext}")  # not the sandbox's result{ext}
    with Image.open(path) as image:
        assert image.size == (512 * scale, 600 * scale)
        assert image.format == fmt
        assert round(image.info["dpi"][0]) == 300
    stats = sandbox.stats()
    assert stats["submissions_by_img_url"][img_url] == 1
    assert stats["coins_charged_by_key"] and sum(stats["coins_charged_by_key"].values()) == job.consume_coins


async def test_async_hook_polls_the_same_job(hook, sandbox, sandbox_conn):
    job = hook.enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    async_hook = HitPawAsyncHook(sandbox_conn, retry_policy=FAST)
    import asyncio

    try:
        states = []
        for _ in range(200):
            status = await async_hook.get_task_status(job.job_id)
            states.append(status.raw_status)
            if status.is_terminal:
                break
            await asyncio.sleep(0.05)
        assert status.is_success and status.res_url
        assert states[0] != "COMPLETED"
        submitted = await async_hook.enhance_photo(sandbox.url("/samples/portrait.jpg?again"), "face_4x", ".png")
        assert submitted.job_id != job.job_id
    finally:
        await close_shared_session()


def test_bad_key_is_a_typed_auth_error(monkeypatch, sandbox):
    set_hitpaw_connection(monkeypatch, "wrong_key", sandbox.base_url, "not-a-real-key")
    hook = HitPawHook("wrong_key", retry_policy=FAST)
    with pytest.raises(HitPawAuthError, match="api_key is not valid"):
        hook.enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    assert hook.test_connection()[0] is False
    assert submissions(sandbox) == 0


def test_connection_test_passes_with_the_right_key(hook, sandbox):
    ok, message = hook.test_connection()
    assert ok, message
    assert submissions(sandbox) == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model_name": "face_2k"}, "Did you mean 'face_2x'"),
    ({"extension": ".gif"}, "Extension '.gif' is not valid"),
])
def test_typo_and_bad_extension_send_no_request(hook, sandbox, kwargs, match):
    args = {"img_url": sandbox.url("/samples/portrait.jpg"), "model_name": "face_2x", "extension": ".jpg"} | kwargs
    with pytest.raises(HitPawValidationError, match=match):
        hook.enhance_photo(**args)
    assert sandbox.stats()["requests_by_endpoint"] == {}


def test_unknown_model_allowed_reaches_the_api_and_is_refused_there(hook, sandbox):
    with pytest.raises(HitPawInvalidRequestError) as info:
        hook.enhance_photo(sandbox.url("/samples/portrait.jpg"), "enhanced_v1", ".jpg", allow_unknown_model=True)
    assert info.value.code == 110400005


def test_input_over_the_resolution_limit(hook, sandbox):
    with pytest.raises(HitPawInvalidRequestError) as info:
        hook.enhance_photo(sandbox.url("/samples/huge.png"), "face_2x", ".png")
    assert info.value.code == 110400009


def test_coins_run_out(hook, sandbox):
    sandbox.add_key(SANDBOX_API_KEY, 15)
    hook.enhance_photo(sandbox.url("/samples/portrait.jpg?1"), "face_2x", ".jpg")  # 10 coins
    with pytest.raises(HitPawInsufficientCoinsError):
        hook.enhance_photo(sandbox.url("/samples/portrait.jpg?2"), "face_2x", ".jpg")
    assert submissions(sandbox) == 1


def test_failed_job_raises_job_failed(hook, sandbox):
    sandbox.set_faults(fail_job=1.0)
    job = hook.enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    with pytest.raises(HitPawJobFailedError) as info:
        hook.wait_for_completion(job.job_id, poll_interval=0.05, timeout=30)
    assert info.value.job_status == "ERROR" and info.value.job_id == job.job_id


def test_forgotten_job_is_task_not_found(hook, sandbox):
    job = hook.enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    sandbox.forget_jobs()
    with pytest.raises(HitPawTaskNotFoundError):
        hook.wait_for_completion(job.job_id, poll_interval=0.05, timeout=30)


def test_download_large_result_in_constant_memory(hook, sandbox, tmp_path):
    """50 MB through the hook; the file is whole and Python's heap does not grow with it."""
    import tracemalloc

    (job_id,) = sandbox.create_jobs(SANDBOX_API_KEY, count=1, result_bytes=50 * 1024 * 1024)
    status = hook.get_task_status(job_id)
    tracemalloc.start()
    path = hook.download_result(status.res_url, tmp_path / "big.bin")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    data = open(path, "rb").read(1024)
    assert data == bytes(i % 256 for i in range(1024))
    assert (tmp_path / "big.bin").stat().st_size == 50 * 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes"
