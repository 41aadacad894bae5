"""EnhancePhotoOperator: checks, submission, waiting (worker and deferred), reconnection, events."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawError,
    HitPawJobFailedError,
    HitPawResponseError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.events import DEFERRAL_GRACE_SECONDS, MIN_POLL_INTERVAL_SECONDS
from airflow_provider_hitpaw.lineage import dataset_identity
from airflow_provider_hitpaw.operators.hitpaw import (
    EnhancePhotoOperator,
    HitPawJobFailedFailure,
    HitPawSubmitOutcomeUnknownFailure,
)
from airflow_provider_hitpaw.resume import STATE_KEY, StoredJob, SubmissionIntent, submission_fingerprint
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS, AirflowFailException, TaskDeferred
from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection
from tests.support.dag_files import load_dag
from tests.support.operator_support import (
    FakeTaskInstance,
    FakeTaskStateStore,
    RefusingTaskStateStore,
    make_context,
    task_instances,
    xcom_value,
)
from tests.support.scripted_server import Step, ok, status_step

CANARY_KEY = "canary-KEY-7f3a9c1e-never-log-me"
PHOTO = "https://photos.example/portrait.jpg"


def operator(**kwargs) -> EnhancePhotoOperator:
    kwargs.setdefault("task_id", "enhance")
    kwargs.setdefault("img_url", PHOTO)
    kwargs.setdefault("model_name", "face_2x")
    return EnhancePhotoOperator(**kwargs)


@pytest.fixture
def canary_conn(monkeypatch, scripted) -> str:
    set_hitpaw_connection(monkeypatch, "hitpaw_canary", scripted.base_url, CANARY_KEY,
                          read_timeout=2, connect_timeout=2)
    return "hitpaw_canary"


def sample(sandbox) -> str:
    return sandbox.url("/samples/portrait.jpg")


# --- checks at parse time and at execute time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"img_url": "ftp://photos.example/a.jpg"}, "http:// or https://"),
        ({"img_url": "not a url"}, "white space"),
        ({"img_url": "https://photos.example/a.heif"}, "pass extension="),
        ({"img_url": "https://photos.example/a"}, "pass extension="),
        ({"model_name": "face_3x"}, "Did you mean 'face_4x'"),
        ({"model_name": "general_restore_2x"}, "video model"),
        ({"extension": ".gif"}, "not valid"),
        ({"dpi": 0}, "between 1 and 10000"),
        ({"dpi": "lots"}, "whole number"),
        ({"exif": "yes"}, "True or False"),
        ({"poll_interval": 0}, "positive"),
        ({"poll_interval": 0.001}, "at least 1 s"),
        ({"poll_interval": 0.5}, "at least 1 s"),
        ({"timeout": -1}, "positive"),
        ({"timeout": 1e14}, "at most 2592000 s"),
        ({"timeout": 30 * 24 * 3600 + 1}, "at most 2592000 s"),
        ({"new_job": "perhaps"}, "true or false"),
    ],
)
def test_bad_literal_values_fail_at_parse_time(scripted, canary_conn, kwargs, fragment):
    with pytest.raises(HitPawValidationError, match=fragment):
        operator(hitpaw_conn_id=canary_conn, **kwargs)
    assert scripted.requests == []


def test_parse_time_checks_never_read_the_connection():
    # The connection does not exist: only a lookup would fail.
    op = operator(hitpaw_conn_id="no_such_connection", dpi="300", extension="png")
    assert "hook" not in op.__dict__


def test_heif_photo_with_an_output_extension_is_fine():
    operator(img_url="https://photos.example/a.heif", extension=".png")


def test_templated_values_are_not_checked_at_parse_time():
    operator(img_url="{{ params.url }}", model_name="{{ params.model }}", dpi="{{ params.dpi }}",
             extension="{{ params.ext }}")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"url": "ftp://x/a.jpg", "model": "face_2x", "dpi": 300}, "http:// or https://"),
        ({"url": "https://x/a.heif", "model": "face_2x", "dpi": 300}, "pass extension="),
        ({"url": "https://x/a.jpg", "model": "face_9x", "dpi": 300}, "Unknown HitPaw model"),
        ({"url": "https://x/a.jpg", "model": "face_2x", "dpi": 99999}, "between 1 and 10000"),
    ],
)
def test_bad_rendered_values_fail_before_any_request(scripted, canary_conn, params, fragment):
    op = operator(img_url="{{ params.url }}", model_name="{{ params.model }}", dpi="{{ params.dpi }}",
                  hitpaw_conn_id=canary_conn)
    context = make_context(params=params)
    op.render_template_fields(context)
    with pytest.raises(HitPawValidationError, match=fragment):
        op.execute(context)
    assert scripted.requests == []


# --- submission and deferral ------------------------------------------------------------------------


def test_defers_with_the_right_trigger_and_an_absolute_deadline(scripted, canary_conn, caplog):
    caplog.set_level(logging.DEBUG)
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-42", "consume_coins": 10}))
    op = operator(hitpaw_conn_id=canary_conn, deferrable=True, poll_interval=3, timeout=600)
    store = FakeTaskStateStore()
    context = make_context(store=store)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    after = time.time()

    trigger = deferred.value.trigger
    assert isinstance(trigger, HitPawTaskStatusTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {"job_id": "job-42", "consume_coins": 10}
    assert deferred.value.timeout == timedelta(seconds=600 + DEFERRAL_GRACE_SECONDS)
    _classpath, kwargs = trigger.serialize()
    assert kwargs["job_id"] == "job-42"
    assert kwargs["hitpaw_conn_id"] == canary_conn
    assert kwargs["poll_interval"] == 3
    assert before + 600 <= kwargs["deadline"] <= after + 600
    # Pushed before the wait, and remembered for a retry.
    assert context["ti"].xcoms["job_id"] == "job-42"
    assert context["ti"].xcoms["consume_coins"] == 10
    assert StoredJob.from_stored(store.values[STATE_KEY]).job_id == "job-42"
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1
    assert scripted.requests[0].headers["Apikey"] == CANARY_KEY  # the key was used...
    # ...but never shows in the trigger's kwargs, the XComs, the store or the logs.
    for text in (json.dumps(kwargs), json.dumps(context["ti"].xcoms), json.dumps(store.values),
                 caplog.text, repr(trigger)):
        assert CANARY_KEY not in text


def test_no_wait_returns_right_after_the_submission(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-7", "consume_coins": 4}))
    result = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False).execute(make_context())
    assert result["job_id"] == "job-7" and result["consume_coins"] == 4
    assert result["status"] is None
    assert scripted.count(TASK_STATUS_PATH) == 0


def test_unknown_submit_outcome_fails_without_retries(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, Step(502, b"<html>bad gateway</html>"))
    with pytest.raises(HitPawSubmitOutcomeUnknownFailure) as failed:
        operator(hitpaw_conn_id=canary_conn).execute(make_context(store=FakeTaskStateStore()))
    assert isinstance(failed.value, HitPawSubmitOutcomeUnknownError)
    assert isinstance(failed.value, AirflowFailException)  # Airflow does not retry it
    assert "usage" in str(failed.value) and "new_job=True" in str(failed.value)
    assert CANARY_KEY not in str(failed.value)
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


def test_sync_wait_against_the_sandbox_copies_the_result(sandbox, sandbox_conn, tmp_path):
    op = operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, poll_interval=1,
                  output_path=f"{tmp_path}/out/")
    context = make_context(store=FakeTaskStateStore())
    result = op.execute(context)
    assert result["status"] == "COMPLETED"
    assert result["res_url"].startswith(sandbox.base_url)
    assert result["consume_coins"] > 0
    assert result["output_path"].startswith(str(tmp_path / "out"))
    assert (tmp_path / "out").iterdir().__next__().stat().st_size > 0
    assert context["ti"].xcoms["res_url"] == result["res_url"]
    assert sandbox.stats()["jobs_total"] == 1


def test_sync_wait_on_a_failed_job_raises_and_forgets_it(sandbox, sandbox_conn):
    sandbox.set_faults(fail_job=1.0)
    store = FakeTaskStateStore()
    with pytest.raises(HitPawJobFailedError, match="ERROR"):
        operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, poll_interval=1).execute(
            make_context(store=store)
        )
    assert STATE_KEY not in store.values  # a retry submits anew


# --- reconnecting on a retry ------------------------------------------------------------------------


def _stored(op: EnhancePhotoOperator, job_id: str, coins: int = 10) -> FakeTaskStateStore:
    store = FakeTaskStateStore()
    store.set(STATE_KEY, {"job_id": job_id, "consume_coins": coins,
                          "fingerprint": submission_fingerprint(op._submission_payload())})
    return store


def test_retry_reconnects_to_a_running_job(scripted, canary_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING", job_id="job-1"))
    op = operator(hitpaw_conn_id=canary_conn, deferrable=True)
    context = make_context(store=_stored(op, "job-1"))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert deferred.value.trigger.job_id == "job-1"
    assert scripted.count(PHOTO_ENHANCER_PATH) == 0
    assert context["ti"].xcoms["job_id"] == "job-1"


def test_retry_after_the_job_completed_only_finishes(scripted, canary_conn):
    scripted.script(TASK_STATUS_PATH, status_step("COMPLETED", job_id="job-1", res_url="https://r.example/o.jpg"))
    op = operator(hitpaw_conn_id=canary_conn)
    result = op.execute(make_context(store=_stored(op, "job-1", coins=12)))
    assert result["res_url"] == "https://r.example/o.jpg" and result["consume_coins"] == 12
    assert scripted.count(PHOTO_ENHANCER_PATH) == 0


@pytest.mark.parametrize(
    "status_reply",
    [
        status_step("ERROR", job_id="job-1"),
        status_step("ERROR_INTERRUPTION", job_id="job-1"),
        status_step("TIMEOUT", job_id="job-1"),
        Step(200, {"error_code": 110400002, "message": "The task does not exist"}),
        # HitPaw's "The task failed, please try again", answered to the status request itself.
        Step(200, {"error_code": 110400003, "message": "The task failed, please try again"}),
    ],
    ids=["failed", "interrupted", "timed-out", "forgotten", "task-failed-code"],
)
def test_retry_after_a_failed_or_forgotten_job_submits_anew(scripted, canary_conn, status_reply):
    scripted.script(TASK_STATUS_PATH, status_reply)
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-2", "consume_coins": 10}))
    op = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False)
    store = _stored(op, "job-1")
    assert op.execute(make_context(store=store))["job_id"] == "job-2"
    assert store.values[STATE_KEY]["job_id"] == "job-2"
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


def test_a_stored_job_of_another_submission_is_not_reused(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-2", "consume_coins": 10}))
    op = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False)
    store = FakeTaskStateStore()
    store.set(STATE_KEY, {"job_id": "job-1", "consume_coins": 10, "fingerprint": "another-photo"})
    assert op.execute(make_context(store=store))["job_id"] == "job-2"
    assert scripted.count(TASK_STATUS_PATH) == 0


def test_without_a_task_state_store_every_try_submits(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-3", "consume_coins": 10}))
    op = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False)
    op.execute(make_context())
    op.execute(make_context())
    assert scripted.count(PHOTO_ENHANCER_PATH) == 2


# --- resuming after the trigger ---------------------------------------------------------------------

SUCCESS = {"status": "success", "job_id": "job-1", "hitpaw_status": "COMPLETED",
           "res_url": "https://r.example/job-1/out.jpg", "original_url": "https://photos.example/p.jpg"}


def test_execute_complete_success():
    context = make_context(store=FakeTaskStateStore())
    result = operator().execute_complete(context, dict(SUCCESS), job_id="job-1", consume_coins=10)
    assert result == {
        "job_id": "job-1",
        "status": "COMPLETED",
        "res_url": SUCCESS["res_url"],
        "original_url": SUCCESS["original_url"],
        "consume_coins": 10,
        "output_path": None,
    }
    assert context["ti"].xcoms["res_url"] == SUCCESS["res_url"]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"status": "error", "job_id": "job-1", "hitpaw_status": "NSFW", "message": "ended in NSFW"},
         HitPawJobFailedFailure),
        ({"status": "error", "job_id": "job-1", "hitpaw_status": "ERROR", "message": "ended in ERROR"},
         HitPawJobFailedError),
        ({"status": "error", "job_id": "job-1", "error_class": "HitPawAuthError", "message": "bad key",
          "error_code": 110400000, "http_status": 200}, HitPawAuthError),
        ({"status": "error", "job_id": "job-1", "error_class": "HitPawServerError", "message": "5xx"},
         HitPawServerError),
        ({"status": "error", "job_id": "job-1", "error_class": "KeyError", "message": "a bug"}, HitPawError),
        ({"status": "error", "job_id": "job-1", "error_class": "os.system", "message": "x"}, HitPawError),
        ({"status": "timeout", "job_id": "job-1", "hitpaw_status": "CONVERTING", "message": "late"},
         HitPawWaitTimeoutError),
        ({"status": "succeeded", "job_id": "job-1", "res_url": "https://r.example/x.jpg"}, HitPawResponseError),
        ({"job_id": "job-1"}, HitPawResponseError),
        ({"status": "success", "job_id": "job-1", "res_url": ""}, HitPawResponseError),
        ({**SUCCESS, "job_id": "job-other"}, HitPawResponseError),
        (None, HitPawResponseError),
        ("success", HitPawResponseError),
    ],
    ids=["job-failed-final", "job-failed", "auth", "server", "non-hitpaw-class", "dotted-name", "timeout", "unknown-status",
         "no-status", "no-res-url", "other-job", "none", "not-a-dict"],
)
def test_execute_complete_raises_the_typed_error(event, error):
    with pytest.raises(error) as raised:
        operator().execute_complete(make_context(), event, job_id="job-1", consume_coins=10)
    assert type(raised.value) is error


def test_execute_complete_forgets_a_failed_job_but_keeps_a_late_one():
    op = operator()
    store = _stored(op, "job-1")
    with pytest.raises(HitPawWaitTimeoutError):
        op.execute_complete(make_context(store=store), {"status": "timeout", "job_id": "job-1"}, job_id="job-1")
    assert STATE_KEY in store.values  # a retry reconnects to the job, which may still finish
    with pytest.raises(HitPawJobFailedError):
        op.execute_complete(make_context(store=store), {"status": "error", "job_id": "job-1",
                                                        "hitpaw_status": "ERROR"}, job_id="job-1")
    assert STATE_KEY not in store.values  # a retry submits anew


def test_deferred_round_trip_against_the_sandbox(sandbox, sandbox_conn, tmp_path):
    """Defer, run the trigger from its serialized kwargs, resume: as the triggerer would."""
    import asyncio

    from airflow_provider_hitpaw.hooks.session import close_shared_session

    op = operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, deferrable=True, poll_interval=1,
                  output_path=str(tmp_path / "result.jpg"))
    context = make_context(store=FakeTaskStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    _classpath, kwargs = deferred.value.trigger.serialize()

    async def run_trigger() -> dict:
        try:
            async for event in HitPawTaskStatusTrigger(**kwargs).run():
                return event.payload
        finally:
            await close_shared_session()
        raise AssertionError("no event")

    event = asyncio.run(run_trigger())
    result = op.execute_complete(context, event, **deferred.value.kwargs)
    assert result["status"] == "COMPLETED"
    assert result["output_path"] == str(tmp_path / "result.jpg")
    assert (tmp_path / "result.jpg").stat().st_size > 0
    assert sandbox.stats()["jobs_total"] == 1


# --- lineage and link ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "identity"),
    [
        ("https://photos.example/a/b.jpg", ("https://photos.example", "/a/b.jpg")),
        ("https://cdn.example:8443/r.png?X-Signature=secret", ("https://cdn.example:8443", "/r.png")),
        ("s3://bucket/photos/r.png", ("s3://bucket", "photos/r.png")),
        ("/data/out/r.png", ("file", "/data/out/r.png")),
        ("file:///data/out/r.png", ("file", "/data/out/r.png")),
    ],
)
def test_dataset_identity(location, identity):
    assert dataset_identity(location) == identity


def test_lineage_is_optional():
    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        assert operator().get_openlineage_facets_on_complete(None) is None
    else:  # pragma: no cover - only with the OpenLineage provider installed
        op = operator()
        op._result = {"res_url": "https://r.example/o.jpg", "output_path": "/tmp/o.jpg"}
        lineage = op.get_openlineage_facets_on_complete(None)
        assert [d.name for d in lineage.inputs] == ["/portrait.jpg"]
        assert [d.namespace for d in lineage.outputs] == ["https://r.example", "file"]


def test_result_link_reads_the_res_url_xcom(monkeypatch):
    from airflow.sdk.execution_time.xcom import XCom

    from airflow_provider_hitpaw.links.hitpaw import HitPawResultLink

    seen = {}

    def get_value(*, ti_key, key):
        seen["key"] = key
        return "https://r.example/o.jpg"

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    link = HitPawResultLink()
    assert link.get_link(operator(), ti_key=object()) == "https://r.example/o.jpg"
    assert seen["key"] == "res_url"
    monkeypatch.setattr(XCom, "get_value", staticmethod(lambda **_: "javascript:alert(1)"))
    assert link.get_link(operator(), ti_key=object()) == ""


# --- what a retry, a clear, a timeout and a failed job may cost -------------------------------------------


class Interrupted(BaseException):
    """Stands for AirflowTaskTimeout, AirflowTaskTerminated, KeyboardInterrupt: not an Exception."""


def test_an_interruption_during_the_submission_fails_without_retries_and_is_remembered(
    scripted, canary_conn, monkeypatch
):
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    def interrupted(*args, **kwargs):
        raise Interrupted("execution_timeout")

    monkeypatch.setattr(HitPawHook, "enhance_photo", interrupted)
    op = operator(hitpaw_conn_id=canary_conn)
    store = FakeTaskStateStore()
    with pytest.raises(HitPawSubmitOutcomeUnknownFailure, match="interrupted") as failed:
        op.execute(make_context(store=store))
    assert isinstance(failed.value, AirflowFailException)  # Airflow does not retry it
    assert isinstance(failed.value.__cause__, Interrupted)
    intent = SubmissionIntent.from_stored(store.values[STATE_KEY])
    assert intent is not None and intent.try_number == 1


def test_without_a_store_an_interruption_during_the_submission_still_fails_without_retries(
    canary_conn, monkeypatch
):
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    monkeypatch.setattr(HitPawHook, "enhance_photo", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(HitPawSubmitOutcomeUnknownFailure, match="KeyboardInterrupt"):
        operator(hitpaw_conn_id=canary_conn).execute(make_context())


def _intent(op: EnhancePhotoOperator, try_number: int = 1) -> FakeTaskStateStore:
    store = FakeTaskStateStore()
    fingerprint = submission_fingerprint(op._submission_payload())
    store.set(STATE_KEY, SubmissionIntent(fingerprint, try_number, "2026-01-01T00:00:00+00:00").to_stored())
    return store


def test_a_later_try_that_finds_an_unanswered_submission_fails_without_a_request(scripted, canary_conn):
    op = operator(hitpaw_conn_id=canary_conn, retries=3)
    store = _intent(op, try_number=1)
    with pytest.raises(HitPawSubmitOutcomeUnknownFailure) as failed:
        op.execute(make_context(store=store, ti=FakeTaskInstance(try_number=2, max_tries=3)))
    message = str(failed.value)
    assert "try 1" in message and "usage" in message and "hitpaw_new_job" in message
    assert "state-store/hitpaw_job" in message
    assert scripted.requests == []  # neither a status request nor a submission
    assert STATE_KEY in store.values  # a plain clear fails the same way


def test_a_refused_submission_forgets_the_intent_so_a_retry_may_submit(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, Step(200, {"error_code": 110402000, "message": "The coins are not enough"}))
    store = FakeTaskStateStore()
    with pytest.raises(HitPawError, match="coins"):
        operator(hitpaw_conn_id=canary_conn).execute(make_context(store=store))
    assert STATE_KEY not in store.values


@pytest.mark.parametrize("allowed_writes", [0, 1], ids=["intent-refused-too", "job-refused"])
def test_a_store_that_refuses_the_job_does_not_fail_the_paid_task(sandbox, sandbox_conn, capfd, allowed_writes):
    store = RefusingTaskStateStore(allowed_writes=allowed_writes)
    context = make_context(store=store)
    result = operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, poll_interval=1).execute(context)
    assert result["status"] == "COMPLETED"
    assert context["ti"].xcoms["job_id"] == result["job_id"]  # the id is where a user can find it
    out, err = capfd.readouterr()
    assert "a retry could not reconnect" in out + err
    assert ("rather than pay again" in out + err) is (allowed_writes == 1)  # the intent was kept
    assert len(sandbox.stats()["submissions"]) == 1


# --- failures a retry would buy again ---------------------------------------------------------------------


@pytest.mark.parametrize("state", ["NSFW", "REJECT", "CANCEL"])
def test_a_final_failure_ends_the_task_without_retries_and_is_kept(sandbox, sandbox_conn, state):
    sandbox.set_faults(fail_job=1.0, fail_job_status=state)
    store = FakeTaskStateStore()
    with pytest.raises(HitPawJobFailedFailure, match=state) as failed:
        operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, poll_interval=1).execute(
            make_context(store=store)
        )
    assert isinstance(failed.value, HitPawJobFailedError) and isinstance(failed.value, AirflowFailException)
    assert failed.value.job_status == state and "new_job=True" in str(failed.value)
    assert STATE_KEY in store.values  # a plain clear reports the failure again, without paying


def test_a_clear_after_a_final_failure_reports_it_again_without_paying(scripted, canary_conn):
    scripted.script(TASK_STATUS_PATH, status_step("NSFW", job_id="job-1"))
    op = operator(hitpaw_conn_id=canary_conn)
    store = _stored(op, "job-1")
    store.values[STATE_KEY]["try_number"] = 1
    with pytest.raises(HitPawJobFailedFailure, match="NSFW"):
        op.execute(make_context(store=store, ti=FakeTaskInstance(try_number=2, max_tries=1)))
    assert scripted.count(PHOTO_ENHANCER_PATH) == 0


def test_a_deferred_final_failure_is_kept_and_a_transient_one_forgotten():
    op = operator()
    store = _stored(op, "job-1")
    with pytest.raises(HitPawJobFailedFailure):
        op.execute_complete(make_context(store=store), {"status": "error", "job_id": "job-1",
                                                        "hitpaw_status": "REJECT"}, job_id="job-1")
    assert STATE_KEY in store.values
    with pytest.raises(HitPawJobFailedError) as failed:
        op.execute_complete(make_context(store=store), {"status": "error", "job_id": "job-1",
                                                        "hitpaw_status": "ERROR_INTERRUPTION"}, job_id="job-1")
    assert not isinstance(failed.value, AirflowFailException)  # the user's retries apply
    assert STATE_KEY not in store.values


# --- clearing the task: reconnect, or ask for a new job ----------------------------------------------------


def _stored_at_try(op: EnhancePhotoOperator, job_id: str, try_number: int) -> FakeTaskStateStore:
    store = _stored(op, job_id)
    store.values[STATE_KEY]["try_number"] = try_number
    return store


def test_a_plain_clear_of_a_successful_task_reuses_its_job(scripted, canary_conn):
    scripted.script(TASK_STATUS_PATH, status_step("COMPLETED", job_id="job-1", res_url="https://r.example/o.jpg"))
    op = operator(hitpaw_conn_id=canary_conn, retries=2)
    store = _stored_at_try(op, "job-1", 1)
    # Cleared after try 1: Airflow sets max_tries to 1 + retries, the next try is 2.
    result = op.execute(make_context(store=store, ti=FakeTaskInstance(try_number=2, max_tries=3)))
    assert result["job_id"] == "job-1"
    assert scripted.count(PHOTO_ENHANCER_PATH) == 0


@pytest.mark.parametrize("how", ["parameter", "template", "run-conf"])
def test_a_clear_with_new_job_submits_a_new_job(scripted, canary_conn, how):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-2", "consume_coins": 10}))
    kwargs = {"parameter": {"new_job": True},
              "template": {"new_job": "{{ dag_run.conf.get('hitpaw_new_job') }}"},
              "run-conf": {}}[how]
    op = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False, retries=2, **kwargs)
    store = _stored_at_try(op, "job-1", 1)
    dag_run = SimpleNamespace(conf={"hitpaw_new_job": True} if how != "parameter" else {})
    context = make_context(store=store, ti=FakeTaskInstance(try_number=2, max_tries=3), dag_run=dag_run)
    op.render_template_fields(context)
    assert op.execute(context)["job_id"] == "job-2"
    assert scripted.count(TASK_STATUS_PATH) == 0 and scripted.count(PHOTO_ENHANCER_PATH) == 1
    assert store.values[STATE_KEY]["job_id"] == "job-2" and store.values[STATE_KEY]["try_number"] == 2


def test_new_job_does_not_make_the_retries_of_the_clear_pay_again(scripted, canary_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING", job_id="job-2"))
    op = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False, retries=2, new_job=True)
    store = _stored_at_try(op, "job-2", 2)  # submitted by try 2, the first try after the clear
    op.execute(make_context(store=store, ti=FakeTaskInstance(try_number=3, max_tries=3)))  # its retry
    assert scripted.count(PHOTO_ENHANCER_PATH) == 0


def test_a_clear_with_new_job_submits_after_an_unknown_outcome(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-2", "consume_coins": 10}))
    op = operator(hitpaw_conn_id=canary_conn, wait_for_completion=False, retries=0, new_job="true")
    store = _intent(op, try_number=1)
    assert op.execute(make_context(store=store, ti=FakeTaskInstance(try_number=2, max_tries=1)))["job_id"] == "job-2"


def test_a_wait_timeout_names_the_way_to_a_new_job():
    with pytest.raises(HitPawWaitTimeoutError, match="new_job=True") as failed:
        operator().execute_complete(make_context(), {"status": "timeout", "job_id": "job-1"}, job_id="job-1")
    assert "reconnects to the same job" in str(failed.value)


# --- poll floor and timeout cap -----------------------------------------------------------------------------


def test_checks_that_can_fail_run_before_the_submission(scripted, canary_conn):
    op = operator(hitpaw_conn_id=canary_conn, deferrable=True)
    op.timeout = 1e14  # e.g. set after parsing: would overflow defer()'s timedelta after paying
    with pytest.raises(HitPawValidationError, match="at most"):
        op.execute(make_context(store=FakeTaskStateStore()))
    assert scripted.requests == []


@pytest.mark.parametrize("output_path", ["file://nas/share/out/", "https://bucket.example/out/", "file:relative/"])
def test_an_output_path_that_cannot_be_written_fails_before_paying(scripted, canary_conn, output_path):
    with pytest.raises(HitPawValidationError, match=r"output_path|file:"):
        operator(hitpaw_conn_id=canary_conn, output_path=output_path)  # a literal: refused at parse time
    op = operator(hitpaw_conn_id=canary_conn, output_path="{{ params.out }}")
    op.output_path = output_path  # as rendered
    with pytest.raises(HitPawValidationError, match=r"output_path|file:"):
        op.execute(make_context(store=FakeTaskStateStore()))
    assert scripted.requests == []


def test_a_poll_interval_below_the_floor_at_run_time_is_raised_to_it(scripted, canary_conn):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-42", "consume_coins": 10}))
    op = operator(hitpaw_conn_id=canary_conn, deferrable=True)
    op.poll_interval = 0.001
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    assert deferred.value.trigger.poll_interval == MIN_POLL_INTERVAL_SECONDS


def test_the_hook_wait_raises_a_poll_interval_to_the_floor(monkeypatch, scripted, canary_conn):
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"), status_step("COMPLETED", res_url="https://r.example/o.jpg"))
    HitPawHook(canary_conn).wait_for_completion("job-1", poll_interval=0.001, timeout=60)
    assert slept and min(slept) >= MIN_POLL_INTERVAL_SECONDS - 1e-9


# --- dag.test(): real retries against the sandbox's ledger ---------------------------------------------------

MONEY_DAGS = "hitpaw_money_safety.py"


@pytest.fixture
def hitpaw_default(monkeypatch, sandbox):
    set_hitpaw_connection(monkeypatch, "hitpaw_default", sandbox.base_url, SANDBOX_API_KEY)
    return sandbox


@pytest.mark.dagtest
def test_execution_timeout_during_a_slow_submission_pays_once(airflow_db, hitpaw_default):
    """execution_timeout (2 s) fires while the sandbox sits on the submission's reply (6 s); retries=2."""
    hitpaw_default.set_faults(slow=1.0, slow_seconds=6, fault_endpoints=["submit"])
    dag = load_dag(airflow_db, MONEY_DAGS, "hitpaw_timeout_during_submit")
    started = time.monotonic()
    run = dag.test()
    assert str(run.state) == "failed"
    state, try_number = task_instances(run)["enhance_photo"]
    assert state == "failed" and try_number == 1  # no retry
    assert len(hitpaw_default.stats()["submissions"]) == 1  # one submission, one charge
    assert time.monotonic() - started < 30


@pytest.mark.dagtest
@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_an_nsfw_job_is_bought_once_whatever_retries_says(airflow_db, hitpaw_default, mode):
    hitpaw_default.set_faults(fail_job=1.0, fail_job_status="NSFW")
    run = load_dag(airflow_db, MONEY_DAGS, f"hitpaw_final_failure_{mode}").test()
    assert str(run.state) == "failed"
    state, try_number = task_instances(run)["enhance_photo"]
    assert state == "failed" and try_number == 1  # retries=2, but no retry
    assert len(hitpaw_default.stats()["submissions"]) == 1


@pytest.mark.dagtest
def test_an_error_job_keeps_the_users_retries(airflow_db, hitpaw_default):
    hitpaw_default.set_faults(fail_job=1.0)  # ERROR: HitPaw's own accident, a new job may get through
    run = load_dag(airflow_db, MONEY_DAGS, "hitpaw_final_failure_sync").test()
    state, try_number = task_instances(run)["enhance_photo"]
    assert state == "failed" and try_number == 3
    assert len(hitpaw_default.stats()["submissions"]) == 3


@pytest.fixture
def refusing_state_backend(monkeypatch):
    from airflow.sdk.execution_time import context as context_module

    monkeypatch.setenv("AIRFLOW__WORKERS__STATE_STORE_BACKEND", "operator_support.RefusingStateBackend")
    context_module._get_worker_state_store_backend.cache_clear()  # it is cached per process
    yield
    monkeypatch.delenv("AIRFLOW__WORKERS__STATE_STORE_BACKEND")
    context_module._get_worker_state_store_backend.cache_clear()


@pytest.mark.dagtest
@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store (and its backends) need Airflow 3.3+")
def test_a_state_store_that_refuses_writes_does_not_fail_the_paid_task(
    airflow_db, hitpaw_default, refusing_state_backend, capfd
):
    run = load_dag(airflow_db, MONEY_DAGS, "hitpaw_store_refuses_writes").test()
    assert str(run.state) == "success", task_instances(run)
    assert task_instances(run)["enhance_photo"] == ("success", 1)
    (submitted,) = hitpaw_default.stats()["submissions"]
    assert xcom_value(run, "enhance_photo", "job_id") == submitted["job_id"]
    out, err = capfd.readouterr()
    assert "a retry could not reconnect" in out + err
