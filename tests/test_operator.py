"""EnhancePhotoOperator: checks, submission, waiting (worker and deferred), reconnection, events."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
from conftest import SANDBOX_API_KEY, set_hitpaw_connection
from operator_support import FakeTaskStateStore, make_context
from scripted_server import Step, ok, status_step

from airflow_provider_hitpaw.api import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
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
from airflow_provider_hitpaw.lineage import dataset_identity
from airflow_provider_hitpaw.operators.hitpaw import (
    DEFERRAL_GRACE_SECONDS,
    EnhancePhotoOperator,
    HitPawSubmitOutcomeUnknownFailure,
)
from airflow_provider_hitpaw.resume import STATE_KEY, StoredJob, submission_fingerprint
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from airflow_provider_hitpaw.version_compat import AirflowFailException

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred

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


@pytest.fixture
def sandbox_conn(monkeypatch, sandbox) -> str:
    set_hitpaw_connection(monkeypatch, "hitpaw_sandbox", sandbox.base_url, SANDBOX_API_KEY)
    return "hitpaw_sandbox"


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
        ({"timeout": -1}, "positive"),
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
    assert "usage" in str(failed.value) and "clear it" in str(failed.value)
    assert CANARY_KEY not in str(failed.value)
    assert scripted.count(PHOTO_ENHANCER_PATH) == 1


def test_sync_wait_against_the_sandbox_copies_the_result(sandbox, sandbox_conn, tmp_path):
    op = operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, poll_interval=0.1,
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
        operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, poll_interval=0.1).execute(
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
        Step(200, {"error_code": 110400002, "message": "The task does not exist"}),
    ],
    ids=["failed", "forgotten"],
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
    ids=["job-failed", "auth", "server", "non-hitpaw-class", "dotted-name", "timeout", "unknown-status",
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

    op = operator(img_url=sample(sandbox), hitpaw_conn_id=sandbox_conn, deferrable=True, poll_interval=0.1,
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
