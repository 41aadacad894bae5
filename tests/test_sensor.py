"""TaskStatusSensor: poke mode, deferrable mode, soft_fail, and starting from the triggerer."""

from __future__ import annotations

import time
import warnings
from types import SimpleNamespace

import pytest

from airflow_provider_hitpaw.contract.endpoints import TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawJobFailedError,
    HitPawJobFailedFailure,
    HitPawValidationError,
)
from airflow_provider_hitpaw.events import DEFERRAL_GRACE_SECONDS, MIN_POLL_INTERVAL_SECONDS
from airflow_provider_hitpaw.sensors.hitpaw import (
    NO_TRIGGER_DEADLINE,
    TaskStatusSensor,
)
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from airflow_provider_hitpaw.version_compat import (
    AIRFLOW_V_3_3_PLUS,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from tests.support.operator_support import make_context
from tests.support.scripted_server import Step, status_step

RESULT = "https://results.example/job-1/out.jpg"


def sensor(conn_id: str = "hitpaw_default", **kwargs) -> TaskStatusSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("job_id", "job-1")
    return TaskStatusSensor(hitpaw_conn_id=conn_id, **kwargs)


def test_poke_is_false_while_running_then_returns_the_status(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"), status_step("COMPLETED", res_url=RESULT))
    waiting = sensor(scripted_conn)
    context = make_context()
    assert waiting.poke(context) is False
    done = waiting.poke(context)
    assert done.is_done
    assert done.xcom_value == {"job_id": "job-1", "status": "COMPLETED", "res_url": RESULT,
                               "original_url": "http://x/in.jpg"}
    assert context["ti"].xcoms["res_url"] == RESULT


def test_poke_mode_execute_returns_the_final_status(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("PENDING"), status_step("COMPLETED", res_url=RESULT))
    result = sensor(scripted_conn, poke_interval=1, timeout=10).execute(make_context())
    assert result["res_url"] == RESULT


def test_poke_raises_on_a_failed_job(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("REJECT"))
    with pytest.raises(HitPawJobFailedError, match="REJECT"):
        sensor(scripted_conn).poke(make_context())


def test_poke_skips_a_failed_job_with_soft_fail(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("NSFW"))
    with pytest.raises(AirflowSkipException, match="NSFW"):
        sensor(scripted_conn, soft_fail=True, poke_interval=1).execute(make_context())


def test_deferrable_defers_with_a_deadline_from_the_timeout(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"))
    waiting = sensor(scripted_conn, deferrable=True, timeout=900, poke_interval=4)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute(make_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, HitPawTaskStatusTrigger)
    assert trigger.job_id == "job-1" and trigger.poll_interval == 4
    assert before + 900 <= trigger.deadline <= time.time() + 900
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() == 900 + DEFERRAL_GRACE_SECONDS


def test_deferrable_does_not_defer_for_a_finished_job(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("COMPLETED", res_url=RESULT))
    assert sensor(scripted_conn, deferrable=True).execute(make_context())["res_url"] == RESULT


def test_execute_complete_success():
    event = {"status": "success", "job_id": "job-1", "hitpaw_status": "COMPLETED", "res_url": RESULT,
             "original_url": None}
    context = make_context()
    result = sensor().execute_complete(context, event)
    assert result == {"job_id": "job-1", "status": "COMPLETED", "res_url": RESULT, "original_url": None}
    assert context["ti"].xcoms["res_url"] == RESULT


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"status": "error", "job_id": "job-1", "hitpaw_status": "ERROR"}, HitPawJobFailedError),
        ({"status": "error", "job_id": "job-1", "error_class": "HitPawAuthError"}, HitPawAuthError),
        ({"status": "timeout", "job_id": "job-1"}, AirflowSensorTimeout),
    ],
)
def test_execute_complete_errors_and_soft_fail(event, error):
    with pytest.raises(error):
        sensor().resume_execution("execute_complete", {"event": event}, make_context())
    with pytest.raises(AirflowSkipException):
        sensor(soft_fail=True).resume_execution("execute_complete", {"event": event}, make_context())


def test_a_status_request_error_propagates(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(200, {"error_code": 110400000, "message": "api_key is not valid"}))
    with pytest.raises(HitPawAuthError):
        sensor(scripted_conn).poke(make_context())


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="start_from_trigger renders templates from Airflow 3.3")
def test_start_from_trigger_renders_the_job_id_in_the_triggerer():
    waiting = sensor(job_id="{{ ti_job }}", deferrable=True, start_from_trigger=True, timeout=600)
    args = waiting.start_trigger_args
    assert waiting.start_from_trigger is True
    assert args.trigger_cls == "airflow_provider_hitpaw.triggers.hitpaw.HitPawTaskStatusTrigger"
    assert args.next_method == "execute_complete"
    assert args.timeout.total_seconds() == 600  # made absolute by the scheduler when the task starts
    assert args.trigger_kwargs["deadline"] == NO_TRIGGER_DEADLINE
    # What the triggerer does: build the trigger from the kwargs, attach the task, render.
    trigger = HitPawTaskStatusTrigger(**args.trigger_kwargs)
    trigger.task_instance = SimpleNamespace(task=waiting, task_id="wait")
    assert trigger.template_fields == ("job_id",)
    trigger.render_template_fields(context={"ti_job": "job-rendered"})
    assert trigger.job_id == "job-rendered"


def test_start_from_trigger_is_ignored_when_it_cannot_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        not_deferrable = sensor(start_from_trigger=True, deferrable=False)
    assert not not_deferrable.start_from_trigger
    assert any("start_from_trigger is ignored" in str(w.message) for w in caught)
    if not AIRFLOW_V_3_3_PLUS:
        with pytest.warns(UserWarning, match="before 3.3"):
            old = sensor(start_from_trigger=True, deferrable=True)
        assert not old.start_from_trigger and old.start_trigger_args is None


def test_trigger_classpath_constant_matches_the_trigger():
    from airflow_provider_hitpaw.sensors.hitpaw import TRIGGER_CLASSPATH

    assert HitPawTaskStatusTrigger(job_id="j", deadline=1.0).serialize()[0] == TRIGGER_CLASSPATH


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="start_from_trigger is only honoured from Airflow 3.3")
def test_start_from_trigger_refuses_an_xcom_pull_the_triggerer_cannot_render():
    with pytest.warns(UserWarning, match="map_indexes=-1"):
        plain = sensor(job_id="{{ ti.xcom_pull(task_ids='submit', key='job_id') }}", deferrable=True,
                       start_from_trigger=True)
    assert not plain.start_from_trigger
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        indexed = sensor(job_id="{{ ti.xcom_pull(task_ids='submit', key='job_id', map_indexes=-1) }}",
                         deferrable=True, start_from_trigger=True)
    assert indexed.start_from_trigger


# --- a failed job is final, whatever silent_fail says --------------------------------------------------------

FAILED_JOB = [status_step("NSFW"), status_step("ERROR"),
              Step(200, {"error_code": 110400003, "message": "The task failed, please try again"})]


@pytest.mark.parametrize("reply", FAILED_JOB, ids=["nsfw", "error", "task-failed-code"])
@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_silent_fail_does_not_keep_polling_a_failed_job(scripted, scripted_conn, mode, reply):
    scripted.script(TASK_STATUS_PATH, reply)
    kwargs = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    waiting = sensor(scripted_conn, silent_fail=True, poke_interval=1, timeout=30, **kwargs)
    started = time.monotonic()
    with pytest.raises(HitPawJobFailedFailure) as failed:
        waiting.execute(make_context())
    assert isinstance(failed.value, HitPawJobFailedError)
    assert isinstance(failed.value, AirflowFailException)  # no Airflow retries either
    assert scripted.count(TASK_STATUS_PATH) == 1 and time.monotonic() - started < 5


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_a_failed_job_skips_with_soft_fail_in_every_mode(scripted, scripted_conn, mode):
    scripted.script(TASK_STATUS_PATH, status_step("REJECT"))
    kwargs = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    with pytest.raises(AirflowSkipException, match="REJECT"):
        sensor(scripted_conn, soft_fail=True, silent_fail=True, poke_interval=1, **kwargs).execute(make_context())
    assert scripted.count(TASK_STATUS_PATH) == 1


@pytest.mark.parametrize("state", ["ERROR", "NSFW"])
def test_a_deferred_failed_job_is_final(state):
    event = {"status": "error", "job_id": "job-1", "hitpaw_status": state}
    with pytest.raises(HitPawJobFailedFailure, match=state):
        sensor(silent_fail=True).resume_execution("execute_complete", {"event": event}, make_context())


def test_other_poke_errors_are_still_swallowed_by_silent_fail(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, Step(200, {"error_code": 110400000, "message": "api_key is not valid"}),
                    status_step("COMPLETED", res_url=RESULT))
    assert sensor(scripted_conn, silent_fail=True, poke_interval=1, timeout=30).execute(make_context())["res_url"] == RESULT


# --- poke_interval floor and timeout cap ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"poke_interval": 0}, {"poke_interval": 0.5},
                                    {"poke_interval": 0, "deferrable": True},
                                    {"poke_interval": 0.2, "mode": "reschedule"}])
def test_a_poke_interval_below_the_floor_is_refused_at_parse_time(kwargs):
    with pytest.raises(HitPawValidationError, match="at least 1 s"):
        sensor(**kwargs)


@pytest.mark.parametrize("timeout", [1e14, 30 * 24 * 3600 + 1])
def test_a_timeout_past_the_cap_is_refused_at_parse_time(timeout):
    with pytest.raises(HitPawValidationError, match="at most 2592000 s"):
        sensor(deferrable=True, timeout=timeout)


def test_a_huge_default_timeout_from_the_config_is_lowered_to_the_cap(monkeypatch):
    monkeypatch.setenv("AIRFLOW__SENSORS__DEFAULT_TIMEOUT", str(400 * 24 * 3600))
    assert sensor(deferrable=True).timeout == 30 * 24 * 3600


def test_values_set_after_parsing_are_checked_before_any_request(scripted, scripted_conn):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"))
    waiting = sensor(scripted_conn, deferrable=True, timeout=600)
    waiting.poke_interval = 0  # raised to the floor
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute(make_context())
    assert deferred.value.trigger.poll_interval == MIN_POLL_INTERVAL_SECONDS
    waiting.timeout = 1e14  # refused: defer() would overflow
    with pytest.raises(HitPawValidationError):
        waiting.execute(make_context())
    assert scripted.count(TASK_STATUS_PATH) == 1
