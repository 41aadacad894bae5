"""Hostile replies at the byte level: a submission whose reply fails after the request was read is an
unknown outcome (never retried, never untyped); waits end by their deadline however bytes trickle;
gzip cannot inflate past the cap; bad connection settings are refused before any request.

The server is ``RawServer`` (tests/support/raw_server.py): a socket server of our own, plain or TLS with a
certificate made at test time, that reads the request in full and then misbehaves as scripted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import time

import pytest

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawConnectionError,
    HitPawError,
    HitPawResponseError,
    HitPawSubmitOutcomeUnknownError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.retries import RetryPolicy
from tests.support.connections import set_hitpaw_connection
from tests.support.raw_server import Behaviour, RawServer, http_reply, ok_status, ok_submit

FAST = RetryPolicy(max_attempts=4, max_retry_seconds=10, backoff_initial=0.01, backoff_max=0.01, jitter=0)
PHOTO = ("https://example.com/p.jpg", "face_2x", ".jpg")
KEY = "raw-key-0123456789"


@pytest.fixture
def raw():
    with RawServer() as server:
        yield server


@pytest.fixture
def raw_tls(monkeypatch):
    with RawServer(tls=True) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)
        import aiohttp.connector

        context = ssl.create_default_context(cafile=server.ca_file)
        monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", context)
        yield server


def _conn(monkeypatch, server: RawServer, conn_id: str = "raw", **extra: object) -> str:
    extra = {"connect_timeout": 1, "read_timeout": 0.5, **extra}
    set_hitpaw_connection(monkeypatch, conn_id, server.base_url, KEY, **extra)
    return conn_id


def _submit_sync(conn_id: str) -> None:
    HitPawHook(conn_id, retry_policy=FAST).enhance_photo(*PHOTO)


def _submit_async(conn_id: str) -> None:
    async def go() -> None:
        try:
            await HitPawAsyncHook(conn_id, retry_policy=FAST).enhance_photo(*PHOTO)
        finally:
            await close_shared_session()

    asyncio.run(go())


SUBMITTERS = {"sync": _submit_sync, "async": _submit_async}
OK = ok_submit()
CONTENT_START = OK.index(b"\r\n\r\n") + 4

# (name, behaviour) pairs where the reply fails after the request was read.
AFTER_REQUEST = [
    ("body stalls past the read timeout", Behaviour(reply=OK, cut_at=CONTENT_START + 5, then="stall")),
    ("body cut short", Behaviour(reply=OK, cut_at=CONTENT_START + 5, then="close")),
    ("body cut by a reset", Behaviour(reply=OK, cut_at=CONTENT_START + 5, then="reset")),
    ("broken gzip", Behaviour(reply=http_reply(200, b"\x1f\x8b\x08\x00garbage-not-deflate",
                                               {"Content-Encoding": "gzip"}))),
    ("gzip cut in its stream", Behaviour(reply=http_reply(
        200, gzip.compress(json.dumps({"code": 200, "data": {"job_id": "j", "consume_coins": 1}}).encode())[:20],
        {"Content-Encoding": "gzip"}))),
    ("nothing at all, then close", Behaviour(reply=None, then="close")),
    ("garbage instead of HTTP", Behaviour(reply=None, then="garbage")),
    ("headers, then stall", Behaviour(reply=OK, cut_at=CONTENT_START - 2, then="stall")),
    ("deeply nested JSON", Behaviour(reply=http_reply(200, "[" * 100_000 + "]" * 100_000))),
    ("a several-thousand-digit number", Behaviour(reply=http_reply(
        200, '{"code": 200, "data": {"job_id": "j-1", "consume_coins": ' + "9" * 5000 + "}}"))),
    ("a several-thousand-digit string number", Behaviour(reply=http_reply(
        200, {"code": 200, "data": {"job_id": "j-1", "consume_coins": "9" * 5000}}))),
    ("a several-thousand-digit code", Behaviour(reply=http_reply(200, {"code": "1" * 5000, "message": "x"}))),
]


@pytest.mark.parametrize("mode", SUBMITTERS)
@pytest.mark.parametrize(("name", "behaviour"), AFTER_REQUEST, ids=[n for n, _ in AFTER_REQUEST])
def test_submit_failing_after_the_request_is_unknown_and_sent_once(raw, monkeypatch, mode, name, behaviour):
    raw.play(behaviour)
    raw.default = Behaviour(reply=ok_submit("second-charge"))
    conn_id = _conn(monkeypatch, raw)
    with pytest.raises(HitPawSubmitOutcomeUnknownError):
        SUBMITTERS[mode](conn_id)
    assert raw.count(PHOTO_ENHANCER_PATH) == 1


@pytest.mark.parametrize("mode", SUBMITTERS)
@pytest.mark.parametrize("then", ["tls-break", "close", "reset", "garbage"])
def test_tls_stream_broken_after_the_request_is_unknown_and_sent_once(raw_tls, monkeypatch, mode, then):
    raw_tls.play(Behaviour(reply=OK, cut_at=CONTENT_START + 3, then=then))
    raw_tls.default = Behaviour(reply=ok_submit("second-charge"))
    conn_id = _conn(monkeypatch, raw_tls, "rawtls")
    with pytest.raises(HitPawSubmitOutcomeUnknownError):
        SUBMITTERS[mode](conn_id)
    assert raw_tls.count(PHOTO_ENHANCER_PATH) == 1


@pytest.mark.parametrize("mode", SUBMITTERS)
def test_tls_works_end_to_end(raw_tls, monkeypatch, mode):
    raw_tls.default = Behaviour(reply=ok_submit("tls-job"))
    conn_id = _conn(monkeypatch, raw_tls, "rawtls")
    if mode == "sync":
        job = HitPawHook(conn_id).enhance_photo(*PHOTO)
    else:
        async def go():
            try:
                return await HitPawAsyncHook(conn_id).enhance_photo(*PHOTO)
            finally:
                await close_shared_session()

        job = asyncio.run(go())
    assert job.job_id == "tls-job"
    assert raw_tls.received[0].headers["apikey"] == KEY


@pytest.mark.parametrize("mode", SUBMITTERS)
def test_untrusted_certificate_sends_nothing_and_is_retryable(monkeypatch, mode):
    """A broken handshake happens before the request: nothing can have been charged."""
    with RawServer(tls=True) as server:  # its certificate is not trusted here
        conn_id = _conn(monkeypatch, server, "untrusted")
        with pytest.raises(HitPawConnectionError, match="nothing was sent") as info:
            SUBMITTERS[mode](conn_id)
        assert not isinstance(info.value, HitPawSubmitOutcomeUnknownError)
        assert server.count() == 0


# --- connection settings: refused before any request ---------------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("read_timeout", "nan"), ("read_timeout", "inf"), ("read_timeout", "-inf"), ("read_timeout", 1e300),
    ("connect_timeout", "nan"), ("connect_timeout", "inf"), ("max_retry_seconds", "nan"),
    ("max_retry_seconds", "inf"), ("max_attempts", "nan"), ("max_attempts", "inf"), ("max_attempts", True),
    ("max_attempts", 2.7), ("max_attempts", "9" * 5000), ("read_timeout", True), ("download_timeout", "inf"),
])
def test_bad_connection_numbers_are_refused_before_any_request(raw, monkeypatch, key, value):
    raw.default = Behaviour(reply=ok_submit())
    conn_id = _conn(monkeypatch, raw, **{key: value})
    with pytest.raises(HitPawValidationError, match=key):
        _submit_sync(conn_id)
    with pytest.raises(HitPawValidationError, match=key):
        _submit_async(conn_id)
    assert raw.count() == 0


def test_api_key_that_cannot_travel_in_a_header_is_refused_before_any_request(raw, monkeypatch):
    set_hitpaw_connection(monkeypatch, "badkey", raw.base_url, "abc\x7fdef")
    with pytest.raises(HitPawError, match="API key"):
        _submit_sync("badkey")
    assert raw.count() == 0


# --- hard time limits ----------------------------------------------------------------------------


def test_trickled_headers_cannot_hold_a_sync_wait_past_its_deadline(raw, monkeypatch):
    raw.default = Behaviour(reply=ok_status(), trickle=0.2)  # each byte well inside the read timeout
    conn_id = _conn(monkeypatch, raw, read_timeout=30)
    started = time.monotonic()
    with pytest.raises((HitPawWaitTimeoutError, HitPawConnectionError)):
        HitPawHook(conn_id, retry_policy=FAST).wait_for_completion("job-1", poll_interval=1, timeout=3)
    assert time.monotonic() - started < 3 + 1.5


def test_trickled_headers_cannot_hold_a_submission(raw, monkeypatch):
    raw.play(Behaviour(reply=OK, trickle=0.2))
    conn_id = _conn(monkeypatch, raw, connect_timeout=1, read_timeout=2)
    started = time.monotonic()
    with pytest.raises(HitPawSubmitOutcomeUnknownError, match="time limit"):
        _submit_sync(conn_id)
    assert time.monotonic() - started < 3 + 1.5  # connect + read timeout, then cut
    assert raw.count(PHOTO_ENHANCER_PATH) == 1


def test_trickled_download_ends_by_download_timeout_and_leaves_no_file(raw, monkeypatch, tmp_path):
    body = b"x" * 500
    raw.default = Behaviour(reply=http_reply(200, body, {"Content-Type": "image/png"}), trickle=0.05)
    conn_id = _conn(monkeypatch, raw, read_timeout=5, download_timeout=2, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(HitPawConnectionError, match="time limit"):
        HitPawHook(conn_id).download_result(f"{raw.base_url}/r/result.png", tmp_path / "out.png")
    assert time.monotonic() - started < 2 + 1.5
    assert list(tmp_path.iterdir()) == []


# --- gzip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gzip_bomb_in_a_status_reply_stops_at_the_cap(raw, monkeypatch, mode):
    bomb = gzip.compress(b'{"code": 200, "data": {"status": "' + b"A" * (100 * 1024 * 1024) + b'"}}')
    assert len(bomb) < 200 * 1024
    raw.default = Behaviour(reply=http_reply(200, bomb, {"Content-Encoding": "gzip"}))
    conn_id = _conn(monkeypatch, raw)
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(HitPawResponseError, match="larger than"):
            if mode == "sync":
                HitPawHook(conn_id, retry_policy=FAST).get_task_status("job-1")
            else:
                async def go():
                    try:
                        await HitPawAsyncHook(conn_id, retry_policy=FAST).get_task_status("job-1")
                    finally:
                        await close_shared_session()

                asyncio.run(go())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while refusing a gzip bomb"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gzip_status_reply_is_read(raw, monkeypatch, mode):
    body = json.dumps({"code": 200, "data": {"job_id": "job-1", "status": "CONVERTING"}}).encode()
    raw.default = Behaviour(reply=http_reply(200, body, gzip_body=True))
    conn_id = _conn(monkeypatch, raw)
    if mode == "sync":
        status = HitPawHook(conn_id).get_task_status("job-1")
    else:
        async def go():
            try:
                return await HitPawAsyncHook(conn_id).get_task_status("job-1")
            finally:
                await close_shared_session()

        status = asyncio.run(go())
    assert status.raw_status == "CONVERTING"
    assert raw.received[0].headers["accept-encoding"] == "identity"


def test_gzip_encoded_result_downloads_whole(raw, monkeypatch, tmp_path):
    image = bytes(range(256)) * 400
    raw.default = Behaviour(reply=http_reply(200, image, {"Content-Type": "image/png"}, gzip_body=True))
    conn_id = _conn(monkeypatch, raw)
    written = HitPawHook(conn_id, retry_policy=FAST).download_result(f"{raw.base_url}/r/result.png",
                                                                     tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == image
    assert written == str(tmp_path / "out.png")
    assert raw.count() == 1


@pytest.mark.parametrize("gzip_body", [False, True])
def test_cut_download_leaves_no_file_in_place(raw, monkeypatch, tmp_path, gzip_body):
    image = bytes(range(256)) * 400
    reply = http_reply(200, image, {"Content-Type": "image/png"}, gzip_body=gzip_body)
    raw.default = Behaviour(reply=reply, cut_at=len(reply) - 100, then="close")
    conn_id = _conn(monkeypatch, raw)
    with pytest.raises(HitPawConnectionError):
        HitPawHook(conn_id, retry_policy=FAST).download_result(f"{raw.base_url}/r/result.png", tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []
    assert raw.count() == FAST.max_attempts


# --- status requests: any low-level failure is a typed, retryable error ---------------------------


@pytest.mark.parametrize(("name", "behaviour"), AFTER_REQUEST[:8], ids=[n for n, _ in AFTER_REQUEST[:8]])
def test_status_failing_below_http_is_a_typed_error(raw, monkeypatch, name, behaviour):
    raw.default = behaviour
    conn_id = _conn(monkeypatch, raw, max_attempts=2)
    with pytest.raises(HitPawError):
        HitPawHook(conn_id, retry_policy=RetryPolicy(max_attempts=2, backoff_initial=0, jitter=0)
                   ).get_task_status("job-1")
    assert raw.count(TASK_STATUS_PATH) in (1, 2)


# --- property: whatever the server does after reading the request ---------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from airflow_provider_hitpaw.api import SubmittedJob  # noqa: E402

_REPLIES = [
    ok_submit(),
    http_reply(200, {"code": 200, "data": {"job_id": "job-gz", "consume_coins": 3}}, gzip_body=True),
    http_reply(502, "<html><body>Bad gateway</body></html>", {"Content-Type": "text/html"}),
    http_reply(400, {"code": 110400005, "message": "The model is not supported"}),
    http_reply(200, {"code": 200, "data": {"job_id": "j", "consume_coins": 1}}, content_length=5000),
]


@st.composite
def _behaviours(draw: st.DrawFn) -> Behaviour:
    if draw(st.booleans()):
        reply = draw(st.sampled_from(_REPLIES))
    else:
        reply = draw(st.binary(min_size=0, max_size=300))
    cut = draw(st.one_of(st.none(), st.integers(0, len(reply))))
    then = draw(st.sampled_from(["done", "close", "reset", "stall", "garbage", "tls-break"]))
    return Behaviour(reply=reply, cut_at=cut, then=then)


def _property_server(request, monkeypatch) -> RawServer:
    server = RawServer(tls=request.param == "tls")
    request.addfinalizer(server.stop)
    if server.tls:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)
        import aiohttp.connector

        monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED",
                            ssl.create_default_context(cafile=server.ca_file))
    return server


@pytest.fixture(params=["plain", "tls"])
def any_server(request, monkeypatch):
    return _property_server(request, monkeypatch)


@pytest.mark.parametrize("mode", SUBMITTERS)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(behaviour=_behaviours())
def test_any_failure_after_the_request_is_typed_and_sent_once(any_server, monkeypatch, mode, behaviour):
    any_server.received.clear()
    any_server.play(behaviour)
    any_server.default = Behaviour(reply=ok_submit("second-charge"))
    conn_id = _conn(monkeypatch, any_server, "prop")
    try:
        if mode == "sync":
            outcome: object = HitPawHook(conn_id, retry_policy=FAST).enhance_photo(*PHOTO)
        else:
            async def go() -> SubmittedJob:
                try:
                    return await HitPawAsyncHook(conn_id, retry_policy=FAST).enhance_photo(*PHOTO)
                finally:
                    await close_shared_session()

            outcome = asyncio.run(go())
    except HitPawError as err:
        outcome = err
    except BaseException as err:  # anything else is the defect this test is for
        pytest.fail(f"{type(err).__name__} escaped the submit path: {err!r}")
    assert any_server.count(PHOTO_ENHANCER_PATH) == 1, outcome
    if isinstance(outcome, SubmittedJob):
        assert outcome.job_id != "second-charge"


def test_transport_errors_never_quote_a_url_query_string():
    """A presigned URL's signature must not reach a log through a transport error's text."""
    from airflow_provider_hitpaw.hooks.transport import brief

    urllib3_text = ("HTTPSConnectionPool(host='h', port=443): Max retries exceeded with url: "
                    "/oss/a.png?Expires=1&Signature=SECRETSIG (Caused by ReadTimeoutError())")
    assert "SECRETSIG" not in brief(ValueError(urllib3_text))
    assert "SECRETSIG" not in brief(ValueError("PUT https://h/oss/a.png?Signature=SECRETSIG failed"))
    assert "/oss/a.png" in brief(ValueError(urllib3_text))


def test_a_key_too_short_to_mask_leaves_the_reply_readable():
    from airflow_provider_hitpaw.api import Reply, read_status_reply

    body = json.dumps({"code": 200, "data": {"job_id": "job-1", "status": "CONVERTING"}}).encode()
    assert read_status_reply(Reply(200, body, {}), "job-1", "o").raw_status == "CONVERTING"
