"""The HitPaw wire contract: paths, job states, and turning replies into values or typed errors.

Shared by the sync and async hooks so that both read HitPaw the same way. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, NamedTuple

# The endpoints are HitPaw's facts (contract.endpoints); the client reads them from here too.
from airflow_provider_hitpaw.contract.endpoints import (  # noqa: F401
    API_KEY_HEADER,
    PHOTO_ENHANCER_PATH,
    SUCCESS_CODES,
    TASK_STATUS_PATH,
    VIDEO_ENHANCER_PATH,
)
from airflow_provider_hitpaw.errors import (
    ERROR_CODES,
    HitPawConnectionError,
    HitPawError,
    HitPawInvalidRequestError,
    HitPawRateLimitError,
    HitPawResponseError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
    class_for_code,
)
from airflow_provider_hitpaw.validation import JOB_ID_PATTERN

MAX_MESSAGE_CHARS = 500


class JobStatus(str, Enum):
    """Every state HitPaw reports for a job, plus UNKNOWN for one nobody has documented yet."""

    WAITING = "WAITING"
    PENDING = "PENDING"
    INPUT_PREPARING = "INPUT_PREPARING"
    CONVERTING = "CONVERTING"
    CONVERT_COMPLETED = "CONVERT_COMPLETED"
    OUTPUT_SAVING = "OUTPUT_SAVING"
    OUTPUT_SAVED = "OUTPUT_SAVED"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ERROR_INTERRUPTION = "ERROR_INTERRUPTION"
    TIMEOUT = "TIMEOUT"
    CANCEL = "CANCEL"
    REJECT = "REJECT"
    NSFW = "NSFW"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: str) -> JobStatus:
        """The member for a status string; UNKNOWN for anything undocumented (never success)."""
        try:
            member = cls(value.strip().upper())
        except ValueError:
            return cls.UNKNOWN
        return member

    @classmethod
    def failure_states(cls) -> frozenset[JobStatus]:
        return _FAILURES

    @property
    def is_success(self) -> bool:
        return self is JobStatus.COMPLETED

    @property
    def is_failure(self) -> bool:
        return self in _FAILURES

    @property
    def is_terminal(self) -> bool:
        return self.is_success or self.is_failure


_FAILURES = frozenset(
    {
        JobStatus.ERROR,
        JobStatus.ERROR_INTERRUPTION,
        JobStatus.TIMEOUT,
        JobStatus.CANCEL,
        JobStatus.REJECT,
        JobStatus.NSFW,
    }
)


@dataclass(frozen=True)
class SubmittedJob:
    """What a submission returns: the job to poll and what it cost."""

    job_id: str
    consume_coins: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskStatus:
    """One answer of ``/api/task-status``.

    :param job_id: the job.
    :param status: the parsed state (UNKNOWN for an undocumented one).
    :param raw_status: the state exactly as HitPaw sent it.
    :param res_url: the result's URL; set only when the job is COMPLETED.
    :param original_url: the input's URL as HitPaw keeps it.
    """

    job_id: str
    status: JobStatus
    raw_status: str
    res_url: str | None = None
    original_url: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_success(self) -> bool:
        return self.status.is_success

    @property
    def is_failure(self) -> bool:
        return self.status.is_failure

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.raw_status,
            "res_url": self.res_url,
            "original_url": self.original_url,
        }


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


#: HitPaw's codes have 9 digits and its coin counts a handful: a longer number is not one of them
#: (and Python refuses to convert one of more than 4,300 digits).
_MAX_INT_DIGITS = 18


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 10**_MAX_INT_DIGITS else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.lstrip("-").isdigit() and len(text) <= _MAX_INT_DIGITS:
            return int(text)
    return None


def decode_json(body: bytes) -> Any:
    """JSON of a body, or raise ValueError (also for non-UTF-8, empty and absurdly nested bodies)."""
    try:
        return json.loads(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def try_decode_json(body: bytes) -> Any:
    """JSON of a body, or None when it is empty or not JSON (decode a reply once, read it twice)."""
    if not body:
        return None
    try:
        return decode_json(body)
    except (ValueError, UnicodeDecodeError):
        return None


_UNDECODED: Any = object()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (only the delta-seconds form; dates are rare here)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


def error_from_reply(
    status_code: int,
    body: bytes,
    *,
    retry_after: str | None = None,
    job_id: str | None = None,
    payload: Any = _UNDECODED,
) -> HitPawError | None:
    """The typed error a reply stands for, or None when it is a success envelope.

    Reads every error shape HitPaw is known to send: ``{"error_code", "message"}``,
    ``{"code", "message"}``, ``{"code", "msg"}``, and HTML or empty bodies from gateways.
    ``payload`` is the body already decoded by :func:`try_decode_json`, if the caller has it.
    """
    if payload is _UNDECODED:
        payload = try_decode_json(body)

    code: int | None = None
    message: str | None = None
    if isinstance(payload, dict):
        code = _as_int(payload.get("error_code"))
        if code is None:
            code = _as_int(payload.get("code"))
        raw_message = payload.get("message", payload.get("msg"))
        if isinstance(raw_message, str) and raw_message.strip():
            message = _short(raw_message)

    if 200 <= status_code < 300:
        if not isinstance(payload, dict):
            kind = "an empty body" if not body else "a body that is not a JSON object"
            return HitPawResponseError(
                f"HitPaw answered HTTP {status_code} with {kind}", http_status=status_code, job_id=job_id
            )
        if code is None and "data" in payload:
            return None  # Success envelope without a code: accepted, fields are checked by the parser.
        if code in SUCCESS_CODES:
            return None
        if code is None:
            return HitPawResponseError(
                "HitPaw answered without a code or data", http_status=status_code, job_id=job_id
            )

    cls = class_for_code(code, status_code)
    if message is None:
        if code in ERROR_CODES:
            message = ERROR_CODES[code][1]
        elif body and not isinstance(payload, dict):
            snippet = _short(body[:200].decode("utf-8", "replace"))
            message = f"HitPaw answered HTTP {status_code} with a non-JSON body: {snippet!r}"
        else:
            message = f"HitPaw answered HTTP {status_code}"
    if cls is HitPawRateLimitError:
        return HitPawRateLimitError(
            message,
            retry_after=parse_retry_after(retry_after),
            http_status=status_code,
            code=code,
            job_id=job_id,
        )
    return cls(message, http_status=status_code, code=code, job_id=job_id)


def _data(payload: Any, status_code: int, job_id: str | None) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise HitPawResponseError(
            "HitPaw's reply has no 'data' object", http_status=status_code, job_id=job_id
        )
    data: dict[str, Any] = payload["data"]
    return data


def parse_json_reply(status_code: int, body: bytes, *, job_id: str | None = None) -> Any:
    try:
        return decode_json(body)
    except (ValueError, UnicodeDecodeError):
        raise HitPawResponseError(
            "HitPaw's reply is not valid JSON", http_status=status_code, job_id=job_id
        ) from None


def parse_submit_reply(status_code: int, body: bytes) -> SubmittedJob:
    """A successful submission's ``data``: job_id and consume_coins."""
    data = _data(parse_json_reply(status_code, body), status_code, None)
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise HitPawResponseError(
            f"HitPaw's submit reply has no usable job_id (got {str(job_id)[:80]!r}); a job may "
            "have been created and charged",
            http_status=status_code,
        )
    coins = data.get("consume_coins", 0)
    coins_int = _as_int(coins) if coins is not None else 0
    if coins_int is None or coins_int < 0:
        raise HitPawResponseError(
            f"HitPaw's submit reply has an invalid consume_coins {str(coins)[:40]!r}",
            http_status=status_code,
            job_id=job_id,
        )
    return SubmittedJob(job_id=job_id, consume_coins=coins_int)


def _optional_url(data: dict[str, Any], key: str, status_code: int, job_id: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise HitPawResponseError(
            f"HitPaw's status reply has a {key} that is not a string", http_status=status_code, job_id=job_id
        )
    return value


def parse_status_reply(status_code: int, body: bytes, job_id: str, *, payload: Any = _UNDECODED) -> TaskStatus:
    """A successful status reply's ``data``. A COMPLETED job without an http(s) res_url is malformed.

    ``payload`` is the body already decoded by :func:`try_decode_json`, if the caller has it.
    """
    if payload is _UNDECODED:
        payload = parse_json_reply(status_code, body, job_id=job_id)
    data = _data(payload, status_code, job_id)
    raw = data.get("status")
    if not isinstance(raw, str) or not raw.strip():
        raise HitPawResponseError(
            f"HitPaw's status reply has no status (got {str(raw)[:40]!r})",
            http_status=status_code,
            job_id=job_id,
        )
    reply_job_id = data.get("job_id", job_id)
    if reply_job_id not in (None, "", job_id):
        raise HitPawResponseError(
            f"HitPaw answered about job {str(reply_job_id)[:80]!r} when asked about {job_id!r}",
            http_status=status_code,
            job_id=job_id,
        )
    status = JobStatus.parse(raw)
    res_url = _optional_url(data, "res_url", status_code, job_id)
    original_url = _optional_url(data, "original_url", status_code, job_id)
    if status.is_success and (res_url is None or not res_url.startswith(("https://", "http://"))):
        raise HitPawResponseError(
            "HitPaw reports the job COMPLETED but gives no http(s) res_url",
            http_status=status_code,
            job_id=job_id,
        )
    return TaskStatus(
        job_id=job_id,
        status=status,
        raw_status=raw.strip()[:64],
        res_url=res_url if status.is_success else None,
        original_url=original_url,
    )


# --- replies read in full, turned into values or typed errors ------------------------------------


#: Shorter keys are not masked in replies (Airflow's own masker skips them too): replacing a two-letter
#: string everywhere would garble the reply, and no real HitPaw key is that short.
MIN_MASKED_SECRET_CHARS = 5


class Reply(NamedTuple):
    """An API reply, read in full."""

    status_code: int
    body: bytes
    headers: Any


def mask_secret(reply: Reply, secret: str | None) -> tuple[bytes, Any, Callable[[str], str]]:
    """The reply's body and decoded JSON with ``secret`` replaced by ``***``, and a masker for other text.

    Done first, before anything is read or cut: a key a server quotes back then cannot reach a message
    (or a trigger event in the metadata database) whole, nor as the prefix left by a cut.
    """
    body = reply.body
    if not secret or len(secret) < MIN_MASKED_SECRET_CHARS:
        return body, try_decode_json(body), _unchanged
    raw = secret.encode("utf-8")
    if raw in body:
        body = body.replace(raw, b"***")
    payload = try_decode_json(body)
    if b"\\" in body:  # a JSON escape can spell the key without its bytes appearing in the body
        payload = _mask_deep(payload, secret)
    return body, payload, lambda text: text.replace(secret, "***")


def _unchanged(text: str) -> str:
    return text


def _mask_deep(value: Any, secret: str) -> Any:
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {_mask_deep(k, secret): _mask_deep(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_deep(v, secret) for v in value]
    return value


def read_status_reply(reply: Reply, job_id: str, secret: str | None = None) -> TaskStatus:
    """The status a reply stands for, or its typed error (with ``secret`` masked)."""
    if 300 <= reply.status_code < 400:
        raise HitPawResponseError(
            f"HitPaw redirected the status request (HTTP {reply.status_code})", job_id=job_id
        )
    body, payload, _ = mask_secret(reply, secret)
    error = error_from_reply(
        reply.status_code, body, retry_after=reply.headers.get("Retry-After"), job_id=job_id, payload=payload
    )
    if error is not None:
        raise error
    return parse_status_reply(reply.status_code, body, job_id, payload=payload)


def read_submit_reply(reply: Reply, payload: dict[str, Any], secret: str | None = None) -> SubmittedJob:
    """The job a submission's reply stands for, or the error, sorted by whether coins may be gone.

    A refusal (4xx, or an error code in a 2xx body) and a 429 created nothing. A 5xx, or a 2xx that
    cannot be read, may follow a job that was created and charged: that is "outcome unknown". So is
    anything unexpected while reading it: the reply came after the request went out.
    """
    try:
        return _read_submit_reply(reply, payload, secret)
    except HitPawError:
        raise
    except Exception as err:
        raise unknown_submit_error(payload, f"unreadable reply ({type(err).__name__})", reply.status_code) from None


def _read_submit_reply(reply: Reply, submission: dict[str, Any], secret: str | None) -> SubmittedJob:
    status_code, headers = reply.status_code, reply.headers
    body, decoded, mask = mask_secret(reply, secret)
    if 300 <= status_code < 400:
        location = mask(str(headers.get("Location", "")))[:200]
        raise HitPawResponseError(
            f"HitPaw redirected the submission (HTTP {status_code} to {location or 'elsewhere'}); it "
            "was not processed. Set the connection's host to the final https base URL.",
            http_status=status_code,
        )
    error = error_from_reply(status_code, body, retry_after=headers.get("Retry-After"), payload=decoded)
    if error is None:
        try:
            return parse_submit_reply(status_code, body)
        except HitPawResponseError as err:
            raise unknown_submit_error(submission, str(err), status_code) from err
    # A server-side error code (1005xxxxx) may follow a created job whatever the HTTP status says.
    if status_code >= 500 or isinstance(error, HitPawServerError) or (
        status_code < 300 and isinstance(error, HitPawResponseError)
    ):
        raise unknown_submit_error(submission, str(error), status_code) from error
    if isinstance(error, HitPawInvalidRequestError):
        raise refused_submission(error, submission) from None
    raise error


#: HitPaw's code for a media URL it would not take ("Invalid URL").
INVALID_URL_CODE = 100400001
URL_SHOWN_CHARS = 120


def shown_url(url: object) -> str:
    """A URL fit for a message: without its query string and fragment (a presigned URL's signature
    stays out of logs), and at most ``URL_SHOWN_CHARS`` characters."""
    text = " ".join(str(url).split())
    text = text.split("?", 1)[0].split("#", 1)[0]
    return text if len(text) <= URL_SHOWN_CHARS else text[: URL_SHOWN_CHARS - 3] + "..."


def refused_submission(error: HitPawInvalidRequestError, submission: dict[str, Any]) -> HitPawInvalidRequestError:
    """HitPaw's refusal of a submission, saying what it refused: the media URL and the model."""
    media_url = submission.get("img_url") or submission.get("video_url")
    what = f"{shown_url(media_url)} with model {submission.get('model_name')}"
    message = f"HitPaw refused the submission of {what} (nothing was charged): {error.message}"
    if error.code == INVALID_URL_CODE:
        message += (
            ". HitPaw fetches the photo itself: the URL must be public http(s) and reachable from the "
            "internet (a private or expired signed URL is refused; upload a private photo with img_path)"
        )
    return type(error)(message, http_status=error.http_status, code=error.code, job_id=error.job_id)


def submission_failed(
    payload: dict[str, Any], *, nothing_sent: bool, reason: str, base_url: str | None = None
) -> HitPawError:
    """The error for a submission that failed below HTTP: retryable when it certainly never left this
    machine, else an unknown outcome (it may have created and charged a job)."""
    if nothing_sent:
        where = f" at {base_url}" if base_url else ""
        return HitPawConnectionError(f"Could not connect to HitPaw{where}; nothing was sent: {reason}")
    return unknown_submit_error(payload, reason)


def unknown_submit_error(
    payload: dict[str, Any], reason: str, status_code: int | None = None
) -> HitPawSubmitOutcomeUnknownError:
    """The error for a submission that may have created (and charged) a job."""
    media_url = payload.get("img_url") or payload.get("video_url")
    model = payload.get("model_name")
    return HitPawSubmitOutcomeUnknownError(
        f"The submission of {str(media_url)[:200]} with model {model} may have created a job and "
        f"charged coins ({reason}). It is not retried automatically, since HitPaw has no idempotency "
        "key; check the account's usage before submitting again.",
        http_status=status_code,
        img_url=media_url,
        model_name=model,
    )
