"""Sensor that waits for a HitPaw job submitted earlier (e.g. by an operator that did not wait)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_hitpaw.connection import DEFAULT_CONN_ID
from airflow_provider_hitpaw.errors import HitPawJobFailedError, HitPawWaitTimeoutError
from airflow_provider_hitpaw.events import DEFERRAL_GRACE_SECONDS, completed_job_from_event
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
    ``res_url`` under its own key for the "HitPaw result" link). A job that ended in a failure state
    raises :class:`~airflow_provider_hitpaw.errors.HitPawJobFailedError`, or skips the task with
    ``soft_fail=True``. Intermediate and undocumented statuses keep it waiting.

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
        super().__init__(**kwargs)
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
        status = self.hook.get_task_status(self.job_id)
        return self._outcome(context, status)

    def _outcome(self, context: Context, status: TaskStatus) -> PokeReturnValue | bool:
        if status.is_success:
            context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value=status.res_url)
            return PokeReturnValue(is_done=True, xcom_value=status.to_dict())
        if status.is_failure:
            error = HitPawJobFailedError(
                f"HitPaw job {status.job_id} ended in {status.raw_status}",
                job_id=status.job_id,
                job_status=status.raw_status,
            )
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping (soft_fail): {error}") from error
            raise error
        self.log.info("HitPaw job %s is %s", status.job_id, status.raw_status)
        return False

    def execute(self, context: Context) -> Any:
        context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value="")  # the result link stays empty until the end
        if not self.deferrable:
            return super().execute(context)
        # One look first: a job that has already ended needs no trigger.
        outcome = self._outcome(context, self.hook.get_task_status(self.job_id))
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
        context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value=completed["res_url"])
        return {
            "job_id": completed["job_id"],
            "status": completed.get("hitpaw_status"),
            "res_url": completed["res_url"],
            "original_url": completed.get("original_url"),
        }
