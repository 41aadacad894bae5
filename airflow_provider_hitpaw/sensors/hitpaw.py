"""Sensor that waits for a HitPaw job submitted earlier (e.g. by an operator that did not wait)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_hitpaw.connection_fields import DEFAULT_CONN_ID
from airflow_provider_hitpaw.errors import (
    HitPawJobFailedError,
    HitPawJobFailedFailure,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.events import (
    DEFERRAL_GRACE_SECONDS,
    MAX_WAIT_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
    CompletedJob,
    completed_job_from_event,
)
from airflow_provider_hitpaw.links.hitpaw import RES_URL_XCOM_KEY, HitPawResultLink
from airflow_provider_hitpaw.version_compat import (
    AIRFLOW_V_3_3_PLUS,
    AirflowSensorTimeout,
    AirflowSkipException,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_hitpaw.api import TaskStatus
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

# A string, so that parsing a DAG does not import the trigger module (and aiohttp-side code).
TRIGGER_CLASSPATH = "airflow_provider_hitpaw.triggers.hitpaw.HitPawTaskStatusTrigger"
#: Started from the triggerer, the trigger gets no deadline of its own (kwargs are fixed when the
#: DAG is parsed); Airflow's trigger timeout, set by the scheduler when the task starts, bounds it.
NO_TRIGGER_DEADLINE = 253_402_300_799.0  # 9999-12-31T23:59:59Z


class TaskStatusSensor(BaseSensorOperator):
    """Wait until a HitPaw job ends; its XCom is the job's final status, with ``res_url``.

    It succeeds on COMPLETED, returning ``{"job_id", "status", "res_url", "original_url"}`` (and pushing
    ``res_url`` under its own key for the "HitPaw result" link). A job that ended in a failure state is
    final: it raises :class:`~airflow_provider_hitpaw.events.HitPawJobFailedFailure` (a
    ``HitPawJobFailedError`` that Airflow does not retry and ``silent_fail`` does not swallow), or skips
    the task with ``soft_fail=True``, in poke, reschedule and deferrable mode alike. Intermediate and
    undocumented statuses keep it waiting.

    ``poke_interval`` must be at least 1 s (HitPaw advises polling every 2 to 5 s for photos) and
    ``timeout`` at most 30 days; a larger ``[sensors] default_timeout`` is lowered to 30 days.

    :param job_id: the HitPaw job, e.g. ``"{{ ti.xcom_pull(task_ids='submit', key='job_id') }}"``.
        (templated)
    :param hitpaw_conn_id: the ``hitpaw`` connection holding the API key.
    :param deferrable: wait in the triggerer, polling every ``poke_interval`` seconds until ``timeout``.
        Defaults to ``[operators] default_deferrable``.
    :param start_from_trigger: with ``deferrable``, start directly in the triggerer without a worker
        (Airflow 3.3+, which renders ``job_id`` there; ignored with a warning before 3.3, for a
        ``job_id`` that is not a string, and for an ``xcom_pull`` without ``map_indexes``, which
        Airflow 3.3's triggerer cannot render: write
        ``{{ ti.xcom_pull(task_ids='submit', key='job_id', map_indexes=-1) }}``).
    :param max_consecutive_errors: transient status errors in a row that end a deferred wait.
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#d7ecff"
    operator_extra_links = (HitPawResultLink(),)

    def __init__(
        self,
        *,
        job_id: str,
        hitpaw_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        start_from_trigger: bool = False,
        max_consecutive_errors: int = 5,
        **kwargs: Any,
    ) -> None:
        timeout = kwargs.get("timeout")
        if timeout is None:  # [sensors] default_timeout may be larger than the cap: not the user's choice
            kwargs["timeout"] = min(conf.getfloat("sensors", "default_timeout"), MAX_WAIT_SECONDS)
        else:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and not seconds <= MAX_WAIT_SECONDS:
                # Checked before BaseSensorOperator turns it into a timedelta, which overflows.
                raise HitPawValidationError(
                    f"timeout must be at most {MAX_WAIT_SECONDS} s (30 days; HitPaw keeps results 8 days), "
                    f"got {timeout!r}"
                )
        super().__init__(**kwargs)
        if self.poke_interval < MIN_POLL_INTERVAL_SECONDS:
            raise HitPawValidationError(
                f"poke_interval must be at least {MIN_POLL_INTERVAL_SECONDS:g} s, got {self.poke_interval!r}: "
                "HitPaw advises polling every 2 to 5 s for photos, and each poke is a request against its "
                "rate limit"
            )
        self.job_id = job_id
        self.hitpaw_conn_id = hitpaw_conn_id
        self.deferrable = deferrable
        self.max_consecutive_errors = max_consecutive_errors
        self.start_from_trigger = self._can_start_from_trigger(start_from_trigger)
        if self.start_from_trigger:
            from airflow.triggers.base import StartTriggerArgs

            self.start_trigger_args = StartTriggerArgs(
                trigger_cls=TRIGGER_CLASSPATH,
                trigger_kwargs={
                    "job_id": job_id,  # rendered by the triggerer: it is one of template_fields
                    "deadline": NO_TRIGGER_DEADLINE,
                    "hitpaw_conn_id": hitpaw_conn_id,
                    "poll_interval": float(self.poke_interval),
                    "max_consecutive_errors": max_consecutive_errors,
                },
                next_method="execute_complete",
                next_kwargs=None,
                # The scheduler turns this into an absolute trigger timeout when the task starts.
                timeout=timedelta(seconds=self.timeout),
            )

    def _can_start_from_trigger(self, requested: bool) -> bool:
        if not requested:
            return False
        reason = None
        if not self.deferrable:
            reason = "it needs deferrable=True"
        elif not AIRFLOW_V_3_3_PLUS:
            reason = "Airflow before 3.3 cannot render job_id in the triggerer"
        elif not isinstance(self.job_id, str):
            reason = "job_id is not a string (an XComArg cannot be rendered by the triggerer)"
        elif "xcom_pull(" in self.job_id and "map_indexes" not in self.job_id:
            # Airflow 3.3's triggerer does not answer the request that such a pull sends
            # (GetXComSequenceSlice): rendering would hang until the sensor's timeout.
            reason = (
                "the triggerer cannot render ti.xcom_pull(...) without map_indexes (Airflow 3.3 hangs); "
                "add map_indexes=-1 to the pull of an unmapped task"
            )
        if reason is None:
            return True
        warnings.warn(
            f"TaskStatusSensor {self.task_id!r}: start_from_trigger is ignored because {reason}; the task "
            "starts in a worker and defers from there.",
            UserWarning,
            stacklevel=3,
        )
        return False

    @cached_property
    def hook(self) -> HitPawHook:
        from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

        return HitPawHook(self.hitpaw_conn_id)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            status = self.hook.get_task_status(self.job_id)
        except HitPawJobFailedError as err:  # code 110400003, "The task failed": as final as a status
            self._fail(_final(err), err)
        return self._outcome(context, status)

    def _outcome(self, context: Context, status: TaskStatus) -> PokeReturnValue | bool:
        if status.is_success:
            context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value=status.res_url)
            return PokeReturnValue(is_done=True, xcom_value=CompletedJob.from_status(status).to_xcom())
        if status.is_failure:
            # An AirflowFailException: no retry of the sensor can change a failed job, and silent_fail
            # (which swallows plain exceptions) must not keep polling it until the timeout.
            self._fail(
                HitPawJobFailedFailure(
                    f"HitPaw job {status.job_id} ended in {status.raw_status}",
                    job_id=status.job_id,
                    job_status=status.raw_status,
                )
            )
        self.log.info("HitPaw job %s is %s", status.job_id, status.raw_status)
        return False

    def _fail(self, error: HitPawJobFailedFailure, cause: BaseException | None = None) -> NoReturn:
        if self.soft_fail or getattr(self, "never_fail", False):
            raise AirflowSkipException(f"Skipping (soft_fail): {error}") from error
        raise error from cause

    def _check_wait_settings(self) -> None:
        """Before the first request: a poke_interval set after parsing is raised to the floor, a timeout
        past the cap (which would overflow ``defer()``) is refused."""
        if not self.poke_interval >= MIN_POLL_INTERVAL_SECONDS:
            self.log.warning("poke_interval %r is below the floor of %g s; polling every %g s",
                             self.poke_interval, MIN_POLL_INTERVAL_SECONDS, MIN_POLL_INTERVAL_SECONDS)
            self.poke_interval = MIN_POLL_INTERVAL_SECONDS
        if not 0 <= self.timeout <= MAX_WAIT_SECONDS:
            raise HitPawValidationError(
                f"timeout must be between 0 and {MAX_WAIT_SECONDS} s (30 days), got {self.timeout!r}"
            )

    def execute(self, context: Context) -> Any:
        self._check_wait_settings()
        context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value="")  # the result link stays empty until the end
        if not self.deferrable:
            return super().execute(context)
        # One look first: a job that has already ended needs no trigger.
        outcome = self.poke(context)
        if isinstance(outcome, PokeReturnValue):
            return outcome.xcom_value
        from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

        self.defer(
            trigger=HitPawTaskStatusTrigger(
                job_id=self.job_id,
                deadline=time.time() + self.timeout,
                hitpaw_conn_id=self.hitpaw_conn_id,
                poll_interval=float(self.poke_interval),
                max_consecutive_errors=self.max_consecutive_errors,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFERRAL_GRACE_SECONDS),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger. Errors become skips with ``soft_fail`` (``resume_execution`` does it)."""
        try:
            completed = completed_job_from_event(event, job_id=self.job_id)
        except HitPawWaitTimeoutError as err:
            raise AirflowSensorTimeout(str(err)) from err
        except HitPawJobFailedFailure:
            raise
        except HitPawJobFailedError as err:
            raise _final(err) from None
        context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value=completed.res_url)
        return completed.to_xcom()


def _final(err: HitPawJobFailedError) -> HitPawJobFailedFailure:
    """The same failure, as one that Airflow does not retry."""
    return HitPawJobFailedFailure(
        err.message, job_id=err.job_id, job_status=err.job_status, code=err.code, http_status=err.http_status
    )
