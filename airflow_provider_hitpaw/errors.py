"""Typed exceptions for every way a HitPaw request can fail.

All of them derive from :class:`HitPawError`, itself an ``AirflowException``, so an Airflow
``retry_policy`` (or a plain ``except``) can tell a bad key from an empty wallet from a flaky gateway.
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException

from airflow_provider_hitpaw.contract.codes import ERROR_CODES as CONTRACT_CODES
from airflow_provider_hitpaw.contract.codes import ErrorKind
from airflow_provider_hitpaw.version_compat import AirflowFailException


class HitPawError(AirflowException):
    """Base class of every HitPaw error.

    :param message: what went wrong, in words (never the API key).
    :param http_status: the HTTP status of the reply, when there was one.
    :param code: HitPaw's error code (for instance 110400005), when the reply carried one.
    :param job_id: the job concerned, when known.
    """

    #: Whether trying the same request again later can succeed.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        job_id: str | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.code = code
        self.job_id = job_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        return self.describe()

    def describe(self, *, with_job: bool = True) -> str:
        """The message with the HTTP status, HitPaw's code and the job id, each said once (a detail
        the message already names is not repeated).

        :param with_job: add the job id (a connection test leaves out the id it made up).
        """
        details = []
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.code is not None:
            details.append(f"code {self.code}")
        if with_job and self.job_id and self.job_id not in self.message:
            details.append(f"job {self.job_id}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.message}{suffix}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword-only attributes when the error is pickled (Airflow does so across processes).
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[HitPawError], message: str, state: dict[str, Any]) -> HitPawError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    err.args = (err._describe(),)
    return err


class HitPawAuthError(HitPawError):
    """The API key is missing, invalid or expired, or it may not use this resource."""


class HitPawInsufficientCoinsError(HitPawError):
    """The account has not enough coins, or the demo's tries are used up."""


class HitPawRateLimitError(HitPawError):
    """HitPaw answered 429: too many requests. Safe to try again after a pause.

    :param retry_after: seconds HitPaw asked to wait, when it said.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class HitPawInvalidRequestError(HitPawError):
    """HitPaw refused the request itself: model, extension, URL, resolution or duration."""


class HitPawValidationError(HitPawInvalidRequestError, ValueError):
    """Refused by this provider before any request was sent, so nothing was charged."""


class HitPawTaskNotFoundError(HitPawError):
    """HitPaw does not know the job id (wrong id, another account's job, or a forgotten job)."""


class HitPawJobFailedError(HitPawError):
    """The job ended without a result (ERROR, TIMEOUT, CANCEL, REJECT, NSFW, ...).

    :param job_status: the HitPaw status the job ended in, when known.
    """

    def __init__(self, message: str, *, job_status: str | None = None, **kwargs: Any) -> None:
        self.job_status = job_status
        super().__init__(message, **kwargs)

    def describe(self, *, with_job: bool = True) -> str:
        text = super().describe(with_job=with_job)
        if self.job_status and self.job_status not in self.message:
            return f"{text} [status {self.job_status}]"
        return text


class HitPawServerError(HitPawError):
    """HitPaw failed on its side (HTTP 5xx or a 1005xxxxx code)."""

    retryable = True


class HitPawConnectionError(HitPawError):
    """HitPaw could not be reached, or the reply did not arrive in time."""

    retryable = True


class HitPawResponseError(HitPawError):
    """The reply was not what the API contract describes (not JSON, missing fields, wrong types)."""


class HitPawSubmitOutcomeUnknownError(HitPawError):
    """A submission went out but its reply was lost: a job MAY have been created and charged.

    It is never retried automatically, since HitPaw has no idempotency key and a second
    submission is a second charge. Check the account's usage before submitting again.

    :param img_url: the media URL of the submission, to recognise the job by.
    :param model_name: the model of the submission.
    """

    def __init__(
        self, message: str, *, img_url: str | None = None, model_name: str | None = None, **kwargs: Any
    ) -> None:
        self.img_url = img_url
        self.model_name = model_name
        super().__init__(message, **kwargs)


class HitPawSubmitOutcomeUnknownFailure(HitPawSubmitOutcomeUnknownError, AirflowFailException):
    """A submission's outcome is unknown, so the task fails *without* Airflow retries.

    It is still a :class:`HitPawSubmitOutcomeUnknownError`. A retry would submit again and, if the
    first submission did create a job, pay twice: HitPaw has no idempotency key and no way to list
    jobs. Raised when the reply was lost, when the try was interrupted (``execution_timeout``, a kill
    signal) while the submission may have been in flight, and by every later try of the same task
    instance that finds such a submission in ``task_state_store`` (Airflow 3.3+), a plain clear
    included. Check the account's usage, then ask for a new job (see ``new_job``).
    """


class HitPawJobFailedFailure(HitPawJobFailedError, AirflowFailException):
    """A failed job that ends the task *without* Airflow retries.

    It is still a :class:`HitPawJobFailedError` (the ``Failure`` suffix marks the
    ``AirflowFailException`` variants, like :class:`HitPawSubmitOutcomeUnknownFailure`). The operator
    raises it for NSFW, REJECT and CANCEL, which a new submission would pay for and most likely meet
    again; the sensor for every failed job, which no retry of the sensor can change.
    """


class HitPawBatchError(HitPawError):
    """A batch ended with items failed beyond its limits, or unresolved (an unknown outcome, a job
    not followed to its end). Raised only once every finished result and the manifest are saved.

    :param counts: items by outcome (see :mod:`airflow_provider_hitpaw.batch.manifest`).
    """

    def __init__(self, message: str, *, counts: dict[str, int] | None = None, **kwargs: Any) -> None:
        self.counts = dict(counts or {})
        super().__init__(message, **kwargs)


class HitPawResultNotSavedError(HitPawError):
    """A job was paid for and completed, but its result could not be copied to ``output_path``.

    The message says where the result is and until when. On Airflow 3.3+ a retry or a plain clear of
    the task reconnects to the same job and copies the result again, without paying.

    :param res_url: the result's URL at HitPaw.
    """

    def __init__(self, message: str, *, res_url: str | None = None, **kwargs: Any) -> None:
        self.res_url = res_url
        super().__init__(message, **kwargs)


class HitPawResultNotSavedFailure(HitPawResultNotSavedError, AirflowFailException):
    """:class:`HitPawResultNotSavedError` on Airflow before 3.3, where a retry would submit (and pay
    for) the photo again: the task fails without Airflow retries."""


class MapIndexTooLongError(HitPawValidationError, AirflowFailException):
    """A mapped task's ``map_index_template`` renders longer than Airflow's database can store.

    Raised before any request, so nothing is paid; the task fails without retries (the template
    would render the same again).
    """


class HitPawWaitTimeoutError(HitPawError):
    """A job did not reach a final state before the deadline. The job may still finish at HitPaw."""


_CLASS_FOR_KIND: dict[ErrorKind, type[HitPawError]] = {
    ErrorKind.AUTH: HitPawAuthError,
    ErrorKind.INVALID_REQUEST: HitPawInvalidRequestError,
    ErrorKind.TASK_NOT_FOUND: HitPawTaskNotFoundError,
    ErrorKind.JOB_FAILED: HitPawJobFailedError,
    ErrorKind.RATE_LIMIT: HitPawRateLimitError,
    ErrorKind.SERVER: HitPawServerError,
    ErrorKind.COINS: HitPawInsufficientCoinsError,
}

#: HitPaw's documented codes (:mod:`airflow_provider_hitpaw.contract.codes`): class and message.
ERROR_CODES: dict[int, tuple[type[HitPawError], str]] = {
    code: (_CLASS_FOR_KIND[entry.kind], entry.message) for code, entry in CONTRACT_CODES.items()
}

# The HTTP status each documented code comes with.
ERROR_CODE_HTTP_STATUS: dict[int, int] = {code: entry.http_status for code, entry in CONTRACT_CODES.items()}


def class_for_http_status(status_code: int | None) -> type[HitPawError]:
    """The error class for a reply that carried no HitPaw code we know."""
    if status_code is None:
        return HitPawResponseError
    if status_code in (401, 403):
        return HitPawAuthError
    if status_code == 402:
        return HitPawInsufficientCoinsError
    if status_code == 429:
        return HitPawRateLimitError
    if status_code == 404:
        return HitPawResponseError
    if 400 <= status_code < 500:
        return HitPawInvalidRequestError
    if status_code >= 500:
        return HitPawServerError
    return HitPawResponseError


def class_for_code(code: int | None, status_code: int | None) -> type[HitPawError]:
    """The error class for a HitPaw code; an unlisted code is classed by the HTTP status it encodes."""
    if code is not None and code in ERROR_CODES:
        return ERROR_CODES[code][0]
    if code is not None and 100_000_000 <= code <= 999_999_999:
        encoded = (code // 1000) % 1000
        if 400 <= encoded <= 599:
            return class_for_http_status(encoded)
    return class_for_http_status(status_code)
