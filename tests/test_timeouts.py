"""No task hangs: a server that never answers, or trickles a byte at a time, fails the wait by its deadline.

Two bad servers: ``SilentServer`` accepts TCP connections and never reads or writes a byte; the scripted
server's ``trickle`` step sends a reply one byte a second (each read is fast, so only a bound on the
whole reply can stop it). Each is tried against the worker's wait (``HitPawHook``), the triggerer's
(``HitPawTaskStatusTrigger``), the operator in both modes, and the submission. The connection's read
timeout is deliberately long (30 s): the wait's own deadline must win.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawConnectionError,
    HitPawError,
    HitPawSubmitOutcomeUnknownError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.retries import RetryPolicy
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from airflow_provider_hitpaw.version_compat import TaskDeferred
from tests.support.connections import set_hitpaw_connection
from tests.support.operator_support import make_context
from tests.support.scripted_server import Step, ok

DEADLINE = 2.0
# What a wait may overrun its deadline by: one last status request cut at the deadline, and scheduling.
SLACK = 1.5
STATUS_JSON = {"code": 200, "message": "OK",
               "data": {"job_id": "job-1", "status": "CONVERTING", "res_url": "", "original_url": ""}}


class SilentServer:
    """Accepts connections and never answers (nor reads): a hung load balancer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
async def _close_session():
    yield
    await close_shared_session()


def bad_server(kind: str, request: pytest.FixtureRequest) -> str:
    """The base URL of a server of the given kind (status requests hang or trickle)."""
    if kind == "silent":
        return request.getfixturevalue("silent").base_url
    scripted = request.getfixturevalue("scripted")
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-1", "consume_coins": 10}))
    scripted.script(TASK_STATUS_PATH, Step(200, STATUS_JSON, trickle=1.0))
    return scripted.base_url


def connection(monkeypatch, base_url: str) -> str:
    set_hitpaw_connection(monkeypatch, "hitpaw_slow", base_url, "timeout-key",
                          connect_timeout=5, read_timeout=30, max_attempts=3)
    return "hitpaw_slow"


KINDS = ["silent", "trickle"]


@pytest.mark.parametrize("kind", KINDS)
def test_worker_wait_ends_by_its_deadline(monkeypatch, request, kind):
    conn_id = connection(monkeypatch, bad_server(kind, request))
    hook = HitPawHook(conn_id)
    started = time.monotonic()
    with pytest.raises(HitPawError) as caught:
        hook.wait_for_completion("job-1", poll_interval=0.2, timeout=DEADLINE)
    elapsed = time.monotonic() - started
    hook.close()
    assert elapsed < DEADLINE + SLACK, elapsed
    assert isinstance(caught.value, (HitPawConnectionError, HitPawWaitTimeoutError))
    assert "job-1" in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_trigger_wait_ends_by_its_deadline(monkeypatch, request, kind):
    conn_id = connection(monkeypatch, bad_server(kind, request))
    trigger = HitPawTaskStatusTrigger("job-1", time.time() + DEADLINE, conn_id, poll_interval=0.2)
    started = time.monotonic()
    events = [e.payload async for e in trigger.run()]
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + SLACK, elapsed
    assert len(events) == 1
    assert events[0]["status"] in ("timeout", "error"), events
    assert events[0]["job_id"] == "job-1" and events[0]["message"]


@pytest.mark.parametrize("kind", KINDS)
async def test_async_status_request_is_bounded_by_connect_plus_read(monkeypatch, request, kind):
    conn_id = connection(monkeypatch, bad_server(kind, request))
    set_hitpaw_connection(monkeypatch, conn_id, bad_server(kind, request), "timeout-key",
                          connect_timeout=0.5, read_timeout=1.5)
    hook = HitPawAsyncHook(conn_id, retry_policy=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    with pytest.raises(HitPawConnectionError):
        await hook.get_task_status("job-1")
    assert time.monotonic() - started < 2.0 + SLACK


def test_submission_to_a_silent_server_is_an_unknown_outcome_in_bounded_time(monkeypatch, silent):
    set_hitpaw_connection(monkeypatch, "hitpaw_silent", silent.base_url, "timeout-key",
                          connect_timeout=1, read_timeout=1.5)
    hook = HitPawHook("hitpaw_silent")
    started = time.monotonic()
    with pytest.raises(HitPawSubmitOutcomeUnknownError):
        hook.enhance_photo("https://photos.example/a.jpg", "face_2x", ".jpg")
    assert time.monotonic() - started < 2.5 + SLACK
    assert len(silent.accepted) == 1  # sent once: no retry of a request that may have been received
    hook.close()


def test_trickled_submission_reply_is_cut_and_sent_once(monkeypatch, scripted):
    scripted.script(PHOTO_ENHANCER_PATH,
                    Step(200, {"code": 200, "data": {"job_id": "job-1", "consume_coins": 10}}, trickle=1.0))
    set_hitpaw_connection(monkeypatch, "hitpaw_trickle", scripted.base_url, "timeout-key",
                          connect_timeout=1, read_timeout=1.5)
    hook = HitPawHook("hitpaw_trickle")
    started = time.monotonic()
    with pytest.raises(HitPawSubmitOutcomeUnknownError):
        hook.enhance_photo("https://photos.example/a.jpg", "face_2x", ".jpg")
    assert time.monotonic() - started < 2.5 + SLACK
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1
    hook.close()


def _operator(conn_id: str, deferrable: bool) -> EnhancePhotoOperator:
    return EnhancePhotoOperator(task_id="enhance", img_url="https://photos.example/a.jpg", model_name="face_2x",
                                hitpaw_conn_id=conn_id, deferrable=deferrable, poll_interval=1,
                                timeout=DEADLINE)


def test_operator_waiting_in_the_worker_fails_by_its_deadline(monkeypatch, scripted):
    conn_id = connection(monkeypatch, bad_server("trickle", pytest_request_stub(scripted)))
    op = _operator(conn_id, deferrable=False)
    started = time.monotonic()
    with pytest.raises(HitPawError) as caught:
        op.execute(make_context())
    assert time.monotonic() - started < DEADLINE + SLACK + 1.0  # + the submission
    assert isinstance(caught.value, (HitPawConnectionError, HitPawWaitTimeoutError))


async def test_operator_deferred_fails_by_its_deadline(monkeypatch, scripted):
    conn_id = connection(monkeypatch, bad_server("trickle", pytest_request_stub(scripted)))
    op = _operator(conn_id, deferrable=True)
    context = make_context()
    started = time.monotonic()
    with pytest.raises(TaskDeferred) as deferred:
        await asyncio.to_thread(op.execute, context)
    events = [e.payload async for e in deferred.value.trigger.run()]
    with pytest.raises(HitPawError) as caught:
        op.execute_complete(context, event=events[0], **deferred.value.kwargs)
    assert time.monotonic() - started < DEADLINE + SLACK + 1.0
    assert isinstance(caught.value, (HitPawConnectionError, HitPawWaitTimeoutError))
    assert caught.value.job_id == "job-1"


class pytest_request_stub:
    def __init__(self, scripted: Any) -> None:
        self.scripted = scripted

    def getfixturevalue(self, name: str) -> Any:
        assert name == "scripted"
        return self.scripted


# --- a wait that could never end is refused up front ------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("setting", [{"timeout": float("nan")}, {"timeout": float("inf")},
                                     {"deadline": float("nan")}, {"poll_interval": float("nan")}])
def test_worker_wait_refuses_a_timeout_that_never_comes(monkeypatch, scripted, setting):
    """NaN compares false with everything: ``remaining <= 0`` never held and the wait polled forever."""
    scripted.script(TASK_STATUS_PATH, Step(200, STATUS_JSON))
    set_hitpaw_connection(monkeypatch, "hitpaw_nan", scripted.base_url, "timeout-key")
    kwargs = {"poll_interval": 0.01, "timeout": 5, **setting}
    with pytest.raises(HitPawValidationError):
        HitPawHook("hitpaw_nan").wait_for_completion("job-1", **kwargs)
    assert scripted.count(TASK_STATUS_PATH) == 0


@pytest.mark.parametrize("setting", [{"timeout": float("nan")}, {"timeout": float("inf")},
                                     {"poll_interval": float("nan")}, {"poll_interval": float("inf")}])
def test_operator_refuses_a_timeout_that_never_comes_at_parse_time(setting):
    """Accepted, NaN made the worker's wait endless; infinity broke ``defer()`` after the coins were spent."""
    with pytest.raises(HitPawValidationError):
        EnhancePhotoOperator(task_id="enhance", img_url="https://photos.example/a.jpg", model_name="face_2x",
                             **setting)
