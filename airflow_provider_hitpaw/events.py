"""The protocol between :class:`~airflow_provider_hitpaw.triggers.hitpaw.HitPawTaskStatusTrigger` and the
task it resumes: every event is built here and read here, and :class:`CompletedJob` is the result both
the operator and the sensor hand to XCom. Also the waiting rules all three share (poll floor, wait cap,
deferral grace, which failures are final).

An event is a dict with ``status``, one of:

- ``success``: ``job_id``, ``hitpaw_status``, ``res_url``, ``original_url``;
- ``error``: ``job_id``, ``message``, and ``hitpaw_status`` (the job failed) or ``error_class``,
  ``error_code`` and ``http_status`` (a status request failed);
- ``timeout``: ``job_id``, ``hitpaw_status`` (the last one seen) and ``message``.

Only ``success`` is success: an ``error``, a ``timeout``, or an event of any other shape raises a typed
error, so nothing unexpected can pass for a finished job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_hitpaw import errors
from airflow_provider_hitpaw.errors import (
    HitPawError,
    HitPawJobFailedError,
    HitPawJobFailedFailure,
    HitPawResponseError,
    HitPawWaitTimeoutError,
)

if TYPE_CHECKING:
    from airflow_provider_hitpaw.api import TaskStatus

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
KNOWN_EVENT_STATUSES = (SUCCESS, ERROR, TIMEOUT)
#: Airflow's own limit on a deferral is the wait's timeout plus this margin, so that the trigger's
#: ``timeout`` event (which keeps the job id for a retry) normally arrives first.
DEFERRAL_GRACE_SECONDS = 120
#: The shortest pause between two status requests of one job, in seconds. HitPaw advises polling every
#: 2 to 5 s for photos (5 to 10 s for videos) and answers 429 past a limit it does not publish. One
#: second stays under that advice, so a short photo job is still noticed within a second of its end,
#: and bounds a waiting task to one request a second (a deferrable sensor with ``poke_interval=0``
#: sent 5,235 requests for one 3-second job). A literal argument below it is refused when the DAG is
#: parsed; a value met later (serialized trigger kwargs, a hook call after the job was paid for) is
#: raised to it.
MIN_POLL_INTERVAL_SECONDS = 1.0
#: The longest wait a task may ask for, in seconds (30 days). HitPaw keeps results 8 days, so a longer
#: wait has nothing to wait for; the cap also keeps ``timedelta`` and ``defer()`` far from overflowing.
MAX_WAIT_SECONDS = 30 * 24 * 3600
#: Failure states that a new submission of the same photo would most likely end in again, so that an
#: automatic retry would only buy the same failure: NSFW and REJECT (moderation) and CANCEL (HitPaw
#: has no cancel endpoint, so a cancellation is HitPaw's own decision about the job). ERROR,
#: ERROR_INTERRUPTION and TIMEOUT are HitPaw-side accidents that a new job can get past.
FINAL_FAILURE_STATES = frozenset({"NSFW", "REJECT", "CANCEL"})
_MAX_MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class CompletedJob:
    """A job that ended COMPLETED, as a task reports it.

    :param job_id: the job.
    :param hitpaw_status: the final state as HitPaw wrote it.
    :param res_url: the result's URL.
    :param original_url: the input's URL as HitPaw keeps it.
    """

    job_id: str
    hitpaw_status: str | None
    res_url: str
    original_url: str | None = None

    @classmethod
    def from_status(cls, status: TaskStatus) -> CompletedJob:
        if not status.is_success or not status.res_url:
            raise HitPawResponseError("The job has not COMPLETED with a res_url", job_id=status.job_id)
        return cls(status.job_id, status.raw_status, status.res_url, status.original_url)

    def to_xcom(self) -> dict[str, Any]:
        """The task's return value: ``{"job_id", "status", "res_url", "original_url"}``."""
        return {
            "job_id": self.job_id,
            "status": self.hitpaw_status,
            "res_url": self.res_url,
            "original_url": self.original_url,
        }


# --- the events, as the trigger builds them -------------------------------------------------------


def success_event(status: TaskStatus) -> dict[str, Any]:
    return {
        "status": SUCCESS,
        "job_id": status.job_id,
        "hitpaw_status": status.raw_status,
        "res_url": status.res_url,
        "original_url": status.original_url,
    }


def job_failed_event(status: TaskStatus) -> dict[str, Any]:
    return {
        "status": ERROR,
        "job_id": status.job_id,
        "hitpaw_status": status.raw_status,
        "message": f"HitPaw job {status.job_id} ended in {status.raw_status}",
    }


def request_error_event(job_id: str, err: BaseException, note: str = "") -> dict[str, Any]:
    """A status request failed (for good, or too many times in a row)."""
    event: dict[str, Any] = {
        "status": ERROR,
        "job_id": job_id,
        "error_class": type(err).__name__,
        "message": f"{err}{note}",
    }
    if isinstance(err, HitPawError):
        event["error_code"] = err.code
        event["http_status"] = err.http_status
    return event


def timeout_event(job_id: str, last_status: str | None) -> dict[str, Any]:
    return {
        "status": TIMEOUT,
        "job_id": job_id,
        "hitpaw_status": last_status,
        "message": (
            f"HitPaw job {job_id} had not ended by the deadline (last status: "
            f"{last_status or 'none seen'}); it may still finish at HitPaw"
        ),
    }


# --- the events, as the task reads them -----------------------------------------------------------


def is_final_failure(job_status: object) -> bool:
    """Whether a job state is one a new submission would most likely end in again."""
    return isinstance(job_status, str) and job_status.strip().upper() in FINAL_FAILURE_STATES


def job_failed_error(
    message: str, *, job_id: str | None, job_status: str | None, final: bool | None = None
) -> HitPawJobFailedError:
    """The error for a failed job: :class:`HitPawJobFailedFailure` when it is final.

    :param final: force the choice; by default, final for :data:`FINAL_FAILURE_STATES`.
    """
    if final is None:
        final = is_final_failure(job_status)
    error_class = HitPawJobFailedFailure if final else HitPawJobFailedError
    return error_class(message, job_id=job_id, job_status=job_status)


def completed_job_from_event(event: object, *, job_id: str | None = None) -> CompletedJob:
    """The ``success`` event's payload, or the typed error the event stands for.

    :param event: what the trigger yielded.
    :param job_id: the job the task waits on; an event about another job is refused.
    :return: the completed job.
    :raises HitPawJobFailedError: the job ended in a failure state (:class:`HitPawJobFailedFailure`
        for one of :data:`FINAL_FAILURE_STATES`).
    :raises HitPawWaitTimeoutError: the trigger's deadline passed first.
    :raises HitPawError: (or the subclass named by ``error_class``) a status request failed.
    :raises HitPawResponseError: the event is not one the trigger documents.
    """
    if not isinstance(event, dict):
        raise HitPawResponseError(
            f"Unexpected trigger event of type {type(event).__name__}; expected a dict", job_id=job_id
        )
    status = event.get("status")
    event_job_id = event.get("job_id")
    if job_id is not None and event_job_id != job_id:
        raise HitPawResponseError(
            f"The trigger event is about job {str(event_job_id)[:130]!r}, not the awaited one", job_id=job_id
        )
    job_id = job_id or (event_job_id if isinstance(event_job_id, str) else None)
    message = _message(event, status)

    if status == SUCCESS:
        res_url = event.get("res_url")
        if not isinstance(res_url, str) or not res_url or not isinstance(event_job_id, str):
            raise HitPawResponseError("The job is COMPLETED but HitPaw gave no res_url", job_id=job_id)
        hitpaw_status, original_url = event.get("hitpaw_status"), event.get("original_url")
        return CompletedJob(
            job_id=event_job_id,
            hitpaw_status=str(hitpaw_status) if hitpaw_status is not None else None,
            res_url=res_url,
            original_url=original_url if isinstance(original_url, str) else None,
        )
    if status == ERROR:
        job_status = event.get("hitpaw_status")
        if job_status:
            raise job_failed_error(message, job_id=job_id, job_status=str(job_status))
        error_class = _hitpaw_error_class(event.get("error_class"))
        raise error_class(
            message,
            job_id=job_id,
            code=_int_or_none(event.get("error_code")),
            http_status=_int_or_none(event.get("http_status")),
        )
    if status == TIMEOUT:
        raise HitPawWaitTimeoutError(message, job_id=job_id)
    raise HitPawResponseError(
        f"Unknown trigger event status {str(status)[:50]!r}; expected one of "
        f"{', '.join(KNOWN_EVENT_STATUSES)}",
        job_id=job_id,
    )


def _message(event: dict[str, Any], status: object) -> str:
    message = event.get("message")
    if isinstance(message, str) and message.strip():
        return message[:_MAX_MESSAGE_CHARS]
    return f"HitPaw trigger reported {str(status)[:50]}"


def _hitpaw_error_class(name: object) -> type[HitPawError]:
    """The HitPaw error class named by the event; HitPawError for any other name."""
    candidate = getattr(errors, name, None) if isinstance(name, str) and name.isidentifier() else None
    if isinstance(candidate, type) and issubclass(candidate, HitPawError):
        return candidate
    return HitPawError


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the many-jobs trigger's event ------------------------------------------------------------------
#
# ``HitPawJobsTrigger`` yields one event: ``{"status": "jobs", "ended": [...], "timed_out": bool}``,
# where ``ended`` holds one single-job event (``success``, or ``error`` for a failed job or a status
# request that failed for good) per job that ended, and ``timed_out`` says the deadline came first.

JOBS = "jobs"


def jobs_event(ended: list[dict[str, Any]], *, timed_out: bool) -> dict[str, Any]:
    return {"status": JOBS, "ended": ended, "timed_out": timed_out}


def ended_jobs_from_event(event: object) -> list[tuple[str, CompletedJob | HitPawError]]:
    """Each ended job of a ``jobs`` event: its completed result, or the error it ended with.

    :raises HitPawResponseError: the event is not a ``jobs`` event.
    """
    if not isinstance(event, dict) or event.get("status") != JOBS or not isinstance(event.get("ended"), list):
        raise HitPawResponseError("Unexpected event from the HitPaw jobs trigger")
    results: list[tuple[str, CompletedJob | HitPawError]] = []
    for single in event["ended"]:
        job_id = single.get("job_id") if isinstance(single, dict) else None
        if not isinstance(job_id, str):
            continue
        try:
            results.append((job_id, completed_job_from_event(single, job_id=job_id)))
        except HitPawError as err:
            results.append((job_id, err))
    return results
