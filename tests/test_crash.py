"""Crashes and restarts: a killed worker, a triggerer that goes away, a sandbox that forgets its jobs.

- The worker process is killed with SIGKILL mid-wait, after the submission; the retry, in a new process,
  reconnects to the same job through ``task_state_store`` (Airflow 3.3+): one submission, one charge.
- The triggerer process is killed mid-wait and the trigger is rebuilt from its serialized kwargs: one
  event, and the same deadline (an outage does not extend it).
- The sandbox restarts (a new process on the same port) or forgets its jobs: the worker's wait, the
  trigger and the operator fail with "task does not exist" at once instead of polling until the deadline.

The child processes are ``tests/support/crash_child.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[1]
CRASH_KEY = "crash-test-key"


# --- tests ----------------------------------------------------------------------------------------

from airflow_provider_hitpaw.errors import HitPawTaskNotFoundError  # noqa: E402
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook  # noqa: E402
from airflow_provider_hitpaw.hooks.session import close_shared_session  # noqa: E402
from airflow_provider_hitpaw.retries import RetryPolicy  # noqa: E402
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger  # noqa: E402
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS  # noqa: E402
from tests.support.connections import set_hitpaw_connection  # noqa: E402

FAST = RetryPolicy(max_attempts=4, max_retry_seconds=10, backoff_initial=0.05, backoff_max=0.2, jitter=0)


@pytest.fixture(autouse=True)
async def _close_session():
    yield
    await close_shared_session()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.crash_child", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=dict(os.environ), start_new_session=True, cwd=PROJECT,
    )


def wait_until(predicate: Any, timeout: float, what: str, process: subprocess.Popen[str] | None = None) -> None:
    limit = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the child exited with {process.returncode} before {what}:\n"
                                 f"{process.stdout.read()[-3000:]}")
        if time.monotonic() > limit:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def status_requests(sandbox: Any) -> int:
    return sandbox.stats()["requests_by_endpoint"].get("POST /api/task-status", 0)


def kill(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had already ended
        pass
    process.wait(10)


@pytest.mark.dagtest
@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS,
                    reason="task_state_store (keeping the job id across tries) needs Airflow 3.3+; before it a "
                           "retry after a crash submits again")
def test_worker_killed_mid_wait_the_retry_reconnects_to_the_same_job(airflow_db, monkeypatch):
    from airflow_provider_hitpaw.sandbox import start_sandbox

    with start_sandbox(api_keys={CRASH_KEY: 1000}, job_seconds=6.0) as sandbox:
        set_hitpaw_connection(monkeypatch, "hitpaw_crash", sandbox.base_url, CRASH_KEY)
        first = spawn("first", str(airflow_db))
        try:
            wait_until(lambda: len(sandbox.stats()["submissions"]) == 1, 60, "the first try's submission", first)
            polls = status_requests(sandbox)
            wait_until(lambda: status_requests(sandbox) > polls, 10, "the first try to be waiting", first)
        finally:
            kill(first)
        assert first.returncode == -signal.SIGKILL
        (submitted,) = sandbox.stats()["submissions"]
        assert sandbox.stats()["jobs_by_state"].get("COMPLETED", 0) == 0  # killed mid-wait indeed

        retry = spawn("retry", str(airflow_db))
        output, _ = retry.communicate(timeout=120)
        line = next((x for x in output.splitlines() if x.startswith("CRASH-RESULT ")), None)
        assert line is not None, output[-3000:]
        outcome = json.loads(line.split(" ", 1)[1])
        assert outcome["state"] == "success", output[-3000:]
        assert outcome["try_number"] == 2
        assert f"Reconnecting to HitPaw job {submitted['job_id']}" in output, output[-3000:]
        stats = sandbox.stats()
        assert len(stats["submissions"]) == 1, stats["submissions"]  # one submission, one charge
        assert sum(stats["coins_charged_by_key"].values()) == submitted["coins"]


def test_triggerer_killed_mid_wait_comes_back_with_one_event_and_the_same_deadline(monkeypatch):
    from airflow_provider_hitpaw.sandbox import start_sandbox

    # Long enough for a child started on a busy machine to poll twice (1 s apart) before the job ends.
    with start_sandbox(api_keys={CRASH_KEY: 1000}, job_seconds=8.0) as sandbox:
        set_hitpaw_connection(monkeypatch, "hitpaw_crash", sandbox.base_url, CRASH_KEY)
        job = HitPawHook("hitpaw_crash").enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
        deadline = time.time() + 60
        _, kwargs = HitPawTaskStatusTrigger(job.job_id, deadline, "hitpaw_crash", poll_interval=1).serialize()
        stored = json.dumps(kwargs)  # what the trigger row keeps in the metadata DB

        child = spawn("trigger", stored)
        try:
            wait_until(lambda: status_requests(sandbox) >= 2, 30, "the triggerer to poll", child)
        finally:
            kill(child)
        assert "EVENT" not in child.stdout.read()  # it went away before the job ended

        rebuilt = HitPawTaskStatusTrigger(**json.loads(stored))
        assert rebuilt.deadline == deadline  # the clock is not restarted
        events = asyncio.run(_events(rebuilt))
        assert len(events) == 1 and events[0]["status"] == "success", events
        assert events[0]["job_id"] == job.job_id
        assert len(sandbox.stats()["submissions"]) == 1


def test_a_trigger_rebuilt_after_its_deadline_passed_times_out_at_once(monkeypatch, sandbox):
    set_hitpaw_connection(monkeypatch, "hitpaw_crash", sandbox.base_url, "test-key")
    (job_id,) = sandbox.create_jobs("test-key", complete_after_seconds=3600)
    _, kwargs = HitPawTaskStatusTrigger(job_id, time.time() + 0.5, "hitpaw_crash").serialize()
    time.sleep(0.6)  # the triggerer was away past the deadline
    started = time.monotonic()
    events = asyncio.run(_events(HitPawTaskStatusTrigger(**json.loads(json.dumps(kwargs)))))
    assert time.monotonic() - started < 1
    assert [e["status"] for e in events] == ["timeout"]


async def test_a_cancelled_trigger_rebuilt_from_serialize_yields_one_event(monkeypatch, sandbox):
    """The in-process form of a triggerer restart: run() cancelled mid-wait, then rebuilt and run again."""
    set_hitpaw_connection(monkeypatch, "hitpaw_crash", sandbox.base_url, "test-key")
    (job_id,) = sandbox.create_jobs("test-key", complete_after_seconds=1.0)
    trigger = HitPawTaskStatusTrigger(job_id, time.time() + 30, "hitpaw_crash", poll_interval=0.1)
    first = asyncio.ensure_future(_events_async(trigger))
    await asyncio.sleep(0.3)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_hitpaw.triggers.hitpaw.HitPawTaskStatusTrigger"
    events = await _events_async(HitPawTaskStatusTrigger(**kwargs))
    assert [e["status"] for e in events] == ["success"]


# --- the sandbox restarts and forgets its jobs ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sandbox_restart_fails_worker_wait_and_trigger_with_task_not_found(monkeypatch):
    """A real restart: the sandbox process stops and a new one starts on the same port, without the job."""
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    port = free_port()
    first = start_sandbox_process(api_keys={CRASH_KEY: 1000}, job_seconds=30.0, port=port)
    try:
        set_hitpaw_connection(monkeypatch, "hitpaw_crash", first.base_url, CRASH_KEY,
                              connect_timeout=1, read_timeout=2)
        job = HitPawHook("hitpaw_crash").enhance_photo(first.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    finally:
        first.stop()
    second = start_sandbox_process(api_keys={CRASH_KEY: 1000}, job_seconds=30.0, port=port)
    try:
        hook = HitPawHook("hitpaw_crash", retry_policy=FAST)
        started = time.monotonic()
        with pytest.raises(HitPawTaskNotFoundError, match="does not exist"):
            hook.wait_for_completion(job.job_id, poll_interval=0.1, timeout=60)
        assert time.monotonic() - started < 5

        trigger = HitPawTaskStatusTrigger(job.job_id, time.time() + 60, "hitpaw_crash", poll_interval=0.1)
        started = time.monotonic()
        (event,) = asyncio.run(_events(trigger))
        assert time.monotonic() - started < 5
        assert event["status"] == "error" and event["error_class"] == "HitPawTaskNotFoundError", event
        assert "does not exist" in event["message"]
    finally:
        second.stop()


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_sandbox_forgetting_jobs_mid_wait_fails_the_operator_with_task_not_found(monkeypatch, sandbox, deferrable):
    from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
    from airflow_provider_hitpaw.version_compat import TaskDeferred
    from tests.support.operator_support import make_context

    sandbox.configure(job_seconds=30)
    set_hitpaw_connection(monkeypatch, "hitpaw_crash", sandbox.base_url, "test-key")
    op = EnhancePhotoOperator(task_id="enhance", img_url=sandbox.url("/samples/portrait.jpg"), model_name="face_2x",
                              hitpaw_conn_id="hitpaw_crash", deferrable=deferrable, poll_interval=1, timeout=60)
    context = make_context()
    forget = threading.Timer(1.0, sandbox.forget_jobs)
    forget.start()
    started = time.monotonic()
    try:
        with pytest.raises(HitPawTaskNotFoundError, match="does not exist"):
            try:
                op.execute(context)
            except TaskDeferred as deferred:
                (event,) = asyncio.run(_events(deferred.trigger))
                op.execute_complete(context, event=event, **(deferred.kwargs or {}))
    finally:
        forget.cancel()
    assert time.monotonic() - started < 6
    assert len(sandbox.stats()["submissions"]) == 1


async def _events_async(trigger: HitPawTaskStatusTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


async def _events(trigger: HitPawTaskStatusTrigger) -> list[dict[str, Any]]:
    try:
        return await asyncio.wait_for(_events_async(trigger), 60)
    finally:
        await close_shared_session()
