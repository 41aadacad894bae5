"""Reading the event of :class:`~airflow_provider_hitpaw.triggers.hitpaw.HitPawTaskStatusTrigger`,
and the waiting rules the operator, the sensor and the trigger share.

Only ``success`` is success: an ``error``, a ``timeout``, or an event of any other shape raises a typed
error, so nothing unexpected can pass for a finished job.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hitpaw import errors
from airflow_provider_hitpaw.errors import (
    HitPawError,
    HitPawJobFailedError,
    HitPawResponseError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.version_compat import AirflowFailException

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


class HitPawJobFailedFailure(HitPawJobFailedError, AirflowFailException):
    """A failed job that ends the task *without* Airflow retries.

    It is still a :class:`~airflow_provider_hitpaw.errors.HitPawJobFailedError` (the ``Failure`` suffix
    marks the ``AirflowFailException`` variants, like ``HitPawSubmitOutcomeUnknownFailure``). The
    operator raises it for NSFW, REJECT and CANCEL, which a new submission would pay for and most likely
    meet again; the sensor for every failed job, which no retry of the sensor can change.
    """


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


def completed_job_from_event(event: object, *, job_id: str | None = None) -> dict[str, Any]:
    """The ``success`` event's payload, or the typed error the event stands for.

    :param event: what the trigger yielded.
    :param job_id: the job the task waits on; an event about another job is refused.
    :return: the event, with ``job_id``, ``hitpaw_status``, ``res_url`` and ``original_url``.
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
        if not isinstance(res_url, str) or not res_url:
            raise HitPawResponseError("The job is COMPLETED but HitPaw gave no res_url", job_id=job_id)
        return event
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
