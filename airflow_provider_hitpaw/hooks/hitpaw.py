"""Hooks for the HitPaw API: :class:`HitPawHook` (sync, requests) and :class:`HitPawAsyncHook` (aiohttp)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_hitpaw.api import (
    API_KEY_HEADER,
    PHOTO_ENHANCER_PATH,
    TASK_STATUS_PATH,
    SubmittedJob,
    TaskStatus,
    error_from_reply,
    parse_status_reply,
    parse_submit_reply,
    try_decode_json,
    validate_job_id,
)
from airflow_provider_hitpaw.connection import DEFAULT_CONN_ID, HitPawSettings
from airflow_provider_hitpaw.downloads import DOWNLOAD_CHUNK_BYTES, resolve_destination, write_stream
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawConnectionError,
    HitPawError,
    HitPawJobFailedError,
    HitPawResponseError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.models import build_submit_payload, validate_url
from airflow_provider_hitpaw.retries import RetryPolicy, acall_with_retries, call_with_retries

if TYPE_CHECKING:
    import requests
    from airflow.sdk import ObjectStoragePath

# ``requests`` is imported where it is used, not here: importing it costs about 30 ms, which every DAG
# file using the operators would pay at parse time (see BENCHMARKS.md, parse cost).

T = TypeVar("T")

MAX_REPLY_BYTES = 1024 * 1024
REUSE_CONNECTION_FOR_SUBMIT_SECONDS = 1.0
# A job id no HitPaw job can have: asking its status proves the key without spending coins.
CONNECTION_TEST_JOB_ID = "airflow-connection-test-00000000"
MAX_REDIRECTS = 5


class _HitPawConnectionHook(BaseHook):
    """What both hooks share: the ``hitpaw`` connection type and how a hook names its connection."""

    conn_name_attr = "hitpaw_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "hitpaw"

    def __init__(
        self, hitpaw_conn_id: str = DEFAULT_CONN_ID, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.hitpaw_conn_id = hitpaw_conn_id
        self._retry_policy_override = retry_policy


class HitPawHook(_HitPawConnectionHook):
    """Talks to the HitPaw API synchronously.

    The connection (type ``hitpaw``) holds the API key in its password field and, optionally, the
    base URL in its host (default ``https://api-base.hitpaw.com``). Extras: ``connect_timeout``,
    ``read_timeout``, ``max_attempts``, ``max_retry_seconds``.

    :param hitpaw_conn_id: the Airflow connection to use.
    :param retry_policy: overrides the retry settings read from the connection.
    """

    hook_name = "HitPaw"

    def __init__(
        self, hitpaw_conn_id: str = DEFAULT_CONN_ID, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__(hitpaw_conn_id, retry_policy=retry_policy)
        self._last_reply_at = -math.inf

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form of Airflow versions that do not read ``conn-fields`` (before 3.2)."""
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"password": "API Key", "host": "Base URL"},
            "placeholders": {
                "host": "https://api-base.hitpaw.com",
                "password": "Your HitPaw API key",
                "extra": '{"connect_timeout": 10, "read_timeout": 30, "max_attempts": 5}',
            },
        }

    @cached_property
    def settings(self) -> HitPawSettings:
        settings = HitPawSettings.from_connection(self.get_connection(self.hitpaw_conn_id))
        if self._retry_policy_override is not None:
            settings = _with_policy(settings, self._retry_policy_override)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        import requests

        session = requests.Session()
        session.headers["User-Agent"] = "airflow-provider-hitpaw"
        session.max_redirects = MAX_REDIRECTS
        return session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def _api_headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.settings.api_key, "Content-Type": "application/json"}

    def _post(self, path: str, payload: dict[str, Any], deadline: float | None = None) -> Reply:
        """POST to the API and read the whole reply within connect + read timeout, at most 1 MiB.

        With a ``deadline`` (epoch seconds) the request is also cut off there. Redirects are not
        followed: a POST must not be replayed elsewhere with the key on it.
        """
        budget = self.settings.connect_timeout + self.settings.read_timeout
        connect, read = self._timeout
        if deadline is not None:
            remaining = max(0.1, deadline - time.time())
            budget = min(budget, remaining)
            connect, read = min(connect, remaining), min(read, remaining)
        limit = time.monotonic() + budget
        with self.session.post(
            self.settings.base_url + path,
            json=payload,
            headers=self._api_headers(),
            timeout=(connect, read),
            allow_redirects=False,
            stream=True,
        ) as response:
            body = _read_capped(response, limit)
            self._last_reply_at = time.monotonic()
            return Reply(response.status_code, body, response.headers)

    # --- submit -------------------------------------------------------------------------------

    def enhance_photo(
        self,
        img_url: str,
        model_name: str,
        extension: str,
        exif: bool = False,
        dpi: int | None = None,
        *,
        allow_unknown_model: bool = False,
    ) -> SubmittedJob:
        """Submit a photo enhancement job. Costs coins.

        Every argument is checked before anything is sent. The request is retried only when it
        certainly created nothing (HTTP 429, or no connection could be opened); when the outcome is
        unknown (timeout, dropped connection, 5xx after the request went out, unreadable reply) it
        raises :class:`HitPawSubmitOutcomeUnknownError` instead of risking a second charge.

        :param img_url: public http(s) URL of the photo.
        :param model_name: a model of :mod:`airflow_provider_hitpaw.models`.
        :param extension: the result's file extension, e.g. ``.jpg``.
        :param exif: keep the photo's EXIF data.
        :param dpi: DPI written into the result.
        :param allow_unknown_model: send a model name this provider does not list.
        :return: the job id and the coins it cost.
        """
        payload = build_submit_payload(
            img_url, model_name, extension, exif, dpi, allow_unknown_model=allow_unknown_model
        )
        return self.submit(PHOTO_ENHANCER_PATH, payload)

    def submit(self, path: str, payload: dict[str, Any]) -> SubmittedJob:
        """POST an already validated submission with the money-safe retry rules."""
        # A pooled connection that the server closes for idleness just as the submission goes out
        # fails in a way that cannot be told apart from a lost reply. Servers keep idle connections
        # for seconds (5 s at the least common defaults), so one that answered within the last
        # second is reused; an older one is dropped and the submission opens a fresh connection.
        if time.monotonic() - self._last_reply_at > REUSE_CONNECTION_FOR_SUBMIT_SECONDS:
            self.close()
        return call_with_retries(
            self.settings.retry, self.log, f"submission to {path}", lambda: self._submit_once(path, payload)
        )

    def _submit_once(self, path: str, payload: dict[str, Any]) -> SubmittedJob:
        import requests

        try:
            reply = self._post(path, payload)
        except (_ReplyTooSlow, HitPawResponseError) as err:
            raise _unknown_submit(payload, str(err)) from None
        except requests.RequestException as err:
            if _nothing_was_sent(err):
                raise HitPawConnectionError(
                    f"Could not connect to HitPaw at {self.settings.base_url}: {_brief(err)}"
                ) from None
            if isinstance(err, requests.exceptions.SSLError):
                raise HitPawConnectionError(f"TLS error talking to HitPaw: {_brief(err)}") from None
            raise _unknown_submit(payload, f"{type(err).__name__}: {_brief(err)}") from None

        job = read_submit_reply(reply, payload, self.settings.api_key)
        self.log.info("Submitted HitPaw job %s (%d coins)", job.job_id, job.consume_coins)
        return job

    # --- status -------------------------------------------------------------------------------

    def get_task_status(self, job_id: str, *, deadline: float | None = None) -> TaskStatus:
        """Ask the state of a job (retried on transient errors).

        :param job_id: the job's id.
        :param deadline: epoch seconds after which no retry starts.
        :raises HitPawTaskNotFoundError: HitPaw does not know the job.
        """
        validate_job_id(job_id)
        return call_with_retries(
            self.settings.retry, self.log, "status request", lambda: self._status_once(job_id, deadline), deadline
        )

    def _status_once(self, job_id: str, deadline: float | None = None) -> TaskStatus:
        import requests

        try:
            reply = self._post(TASK_STATUS_PATH, {"job_id": job_id}, deadline)
        except (requests.RequestException, _ReplyTooSlow) as err:
            raise HitPawConnectionError(f"Status request failed: {_brief(err)}", job_id=job_id) from None
        return read_status_reply(reply, job_id, self.settings.api_key)

    def wait_for_completion(
        self,
        job_id: str,
        poll_interval: float = 5,
        timeout: float | None = 3600,
        *,
        deadline: float | None = None,
        on_status: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Poll until the job ends, bounded by an absolute deadline.

        :param job_id: the job's id.
        :param poll_interval: seconds between two status requests.
        :param timeout: seconds from now; ignored when ``deadline`` is given.
        :param deadline: epoch seconds by which the job must have ended.
        :param on_status: called with each status read (e.g. for logging).
        :return: the COMPLETED status, with ``res_url``.
        :raises HitPawJobFailedError: the job ended in a failure state.
        :raises HitPawWaitTimeoutError: the deadline passed first.
        """
        # math.isfinite: a NaN deadline compares false with everything, so the wait would never end.
        if not poll_interval > 0 or not math.isfinite(poll_interval):
            raise HitPawValidationError(f"poll_interval must be a positive number, got {poll_interval}")
        if deadline is None:
            if timeout is None or not timeout > 0 or not math.isfinite(timeout):
                raise HitPawValidationError("wait_for_completion needs a positive, finite timeout or a deadline")
            deadline = time.time() + timeout
        elif not math.isfinite(deadline):
            raise HitPawValidationError(f"deadline must be a finite time, got {deadline}")
        last: TaskStatus | None = None
        while True:
            status = self.get_task_status(job_id, deadline=deadline)
            if on_status is not None:
                on_status(status)
            if last is None or status.raw_status != last.raw_status:
                self.log.info("HitPaw job %s is %s", job_id, status.raw_status)
            last = status
            if status.is_success:
                return status
            if status.is_failure:
                raise HitPawJobFailedError(
                    f"HitPaw job {job_id} ended in {status.raw_status}",
                    job_id=job_id,
                    job_status=status.raw_status,
                )
            remaining = deadline - time.time()
            if remaining <= 0:
                raise HitPawWaitTimeoutError(
                    f"HitPaw job {job_id} was still {status.raw_status} at the deadline; it may still "
                    "finish at HitPaw (its coins are spent): wait on its job id again rather than "
                    "submitting anew",
                    job_id=job_id,
                )
            time.sleep(min(poll_interval, remaining))

    # --- download -----------------------------------------------------------------------------

    def download_result(
        self, res_url: str, destination: str | os.PathLike[str] | ObjectStoragePath
    ) -> str:
        """Stream a result to a local path or an ``ObjectStoragePath``, in constant memory.

        A destination that is an existing folder, or ends with ``/``, gets the file name of the URL.
        A local file is written to a temporary name and renamed, so a reader never sees half a file.
        The API key is never sent to ``res_url`` (it is usually another host).

        :return: where the file was written, as a string.
        """
        validate_url(res_url, field="res_url")
        target = resolve_destination(res_url, destination)
        call_with_retries(
            self.settings.retry, self.log, "result download", lambda: self._download_once(res_url, target)
        )
        self.log.info("Copied HitPaw result to %s", target)
        return str(target)

    def _download_once(self, res_url: str, target: Any) -> None:
        import requests

        try:
            with self.session.get(
                res_url, stream=True, timeout=self._timeout, allow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise _download_error(response)
                expected = response.headers.get("Content-Length")
                written = write_stream(response.iter_content(DOWNLOAD_CHUNK_BYTES), target)
        except requests.RequestException as err:
            raise HitPawConnectionError(f"Downloading the result failed: {_brief(err)}") from None
        if expected is not None and expected.isascii() and expected.isdigit() and int(expected) != written:
            raise HitPawConnectionError(
                f"The result download was cut short: {written} of {expected} bytes"
            )

    # --- connection test ----------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check that HitPaw accepts the key, without spending coins.

        It asks the status of a job id that cannot exist: "task does not exist" means the key was
        accepted; a key error means it was not.
        """
        try:
            self.get_task_status(CONNECTION_TEST_JOB_ID)
        except HitPawTaskNotFoundError:
            return True, f"Connection to {self.settings.base_url} works: the API key was accepted"
        except HitPawAuthError as err:
            return False, f"HitPaw refused the API key: {err}"
        except HitPawError as err:
            return False, f"{type(err).__name__}: {err}"
        return True, f"Connection to {self.settings.base_url} works"


class HitPawAsyncHook(_HitPawConnectionHook):
    """The asyncio counterpart of :class:`HitPawHook`, for triggers.

    Every hook in a process shares one ``aiohttp.ClientSession`` per event loop (see
    :mod:`airflow_provider_hitpaw.hooks.session`); the connection is read once, without blocking
    the event loop.

    :param hitpaw_conn_id: the Airflow connection to use.
    :param retry_policy: overrides the retry settings read from the connection.
    """

    hook_name = "HitPaw (async)"

    def __init__(
        self, hitpaw_conn_id: str = DEFAULT_CONN_ID, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__(hitpaw_conn_id, retry_policy=retry_policy)
        self._settings: HitPawSettings | None = None

    async def get_settings(self) -> HitPawSettings:
        if self._settings is None:
            from airflow_provider_hitpaw.hooks.session import shared_settings

            settings = await shared_settings(self.hitpaw_conn_id, self._read_settings)
            if self._retry_policy_override is not None:
                settings = _with_policy(settings, self._retry_policy_override)
            self._settings = settings
        return self._settings

    @property
    def request_time_limit(self) -> float | None:
        """Seconds one request may take in all (connect + read timeout), once the connection is read."""
        if self._settings is None:
            return None
        return self._settings.connect_timeout + self._settings.read_timeout

    async def _read_settings(self) -> HitPawSettings:
        return HitPawSettings.from_connection(await self.aget_connection(self.hitpaw_conn_id))

    async def _post(
        self, settings: HitPawSettings, path: str, payload: dict[str, Any], *, fresh: bool = False
    ) -> Reply:
        """POST to the API on the shared session (or, with ``fresh``, on a connection of its own)."""
        import aiohttp

        from airflow_provider_hitpaw.hooks.session import client_timeout, get_shared_session

        own = aiohttp.ClientSession() if fresh else None
        session = own or await get_shared_session()
        try:
            async with session.post(
                settings.base_url + path,
                json=payload,
                headers={API_KEY_HEADER: settings.api_key},
                timeout=client_timeout(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
            ) as response:
                length = response.content_length
                if length is not None and length <= MAX_REPLY_BYTES:
                    return Reply(response.status, await response.read(), response.headers)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > MAX_REPLY_BYTES:
                        raise HitPawResponseError(f"HitPaw's reply is larger than {MAX_REPLY_BYTES} bytes")
                    chunks.append(chunk)
                return Reply(response.status, b"".join(chunks), response.headers)
        finally:
            if own is not None:
                await own.close()

    async def get_task_status(self, job_id: str, *, deadline: float | None = None) -> TaskStatus:
        """Ask the state of a job, retrying transient errors like the sync hook.

        :param job_id: the job's id.
        :param deadline: epoch seconds after which no retry starts.
        """
        validate_job_id(job_id)
        settings = await self.get_settings()
        return await acall_with_retries(
            settings.retry, self.log, "status request", lambda: self._status_once(settings, job_id), deadline
        )

    async def _status_once(self, settings: HitPawSettings, job_id: str) -> TaskStatus:
        import aiohttp

        try:
            reply = await self._post(settings, TASK_STATUS_PATH, {"job_id": job_id})
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            raise HitPawConnectionError(
                f"Status request failed: {type(err).__name__}: {_brief(err)}", job_id=job_id
            ) from None
        return read_status_reply(reply, job_id, settings.api_key)

    async def enhance_photo(
        self,
        img_url: str,
        model_name: str,
        extension: str,
        exif: bool = False,
        dpi: int | None = None,
        *,
        allow_unknown_model: bool = False,
    ) -> SubmittedJob:
        """Submit a photo job from async code; same checks and money-safe rules as the sync hook."""
        import aiohttp

        payload = build_submit_payload(
            img_url, model_name, extension, exif, dpi, allow_unknown_model=allow_unknown_model
        )
        settings = await self.get_settings()

        async def once() -> SubmittedJob:
            try:
                reply = await self._post(settings, PHOTO_ENHANCER_PATH, payload, fresh=True)
            except aiohttp.ClientConnectorError as err:  # no connection was opened: nothing sent
                raise HitPawConnectionError(f"Could not connect to HitPaw: {_brief(err)}") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, HitPawResponseError) as err:
                raise _unknown_submit(payload, f"{type(err).__name__}: {_brief(err)}") from None
            return read_submit_reply(reply, payload, settings.api_key)

        return await acall_with_retries(settings.retry, self.log, "submission", once)


class Reply(NamedTuple):
    """An API reply, read in full."""

    status_code: int
    body: bytes
    headers: Any


class _ReplyTooSlow(Exception):
    """The reply kept arriving, a little at a time, past its time limit."""


def _read_capped(response: requests.Response, limit: float) -> bytes:
    """Read a streamed reply, refusing one that trickles past ``limit`` (monotonic) or grows too big."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.raw.read1(64 * 1024, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise HitPawResponseError(f"HitPaw's reply is larger than {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
        if time.monotonic() > limit:
            raise _ReplyTooSlow("the reply did not arrive within the connect and read timeouts")


def read_status_reply(reply: Reply, job_id: str, secret: str | None = None) -> TaskStatus:
    """The status a reply stands for, or its typed error (with ``secret`` masked in its message)."""
    with _masking(secret):
        if 300 <= reply.status_code < 400:
            raise HitPawResponseError(
                f"HitPaw redirected the status request (HTTP {reply.status_code})", job_id=job_id
            )
        payload = try_decode_json(reply.body)
        error = error_from_reply(
            reply.status_code, reply.body, retry_after=reply.headers.get("Retry-After"), job_id=job_id,
            payload=payload,
        )
        if error is not None:
            raise error
        return parse_status_reply(reply.status_code, reply.body, job_id, payload=payload)


@contextmanager
def _masking(secret: str | None) -> Iterator[None]:
    """Mask ``secret`` in a HitPaw error raised inside: a server may quote the key back in a message,
    and such a message can end up where Airflow's log masking does not reach (a trigger event in the
    metadata database, for one)."""
    try:
        yield
    except HitPawError as err:
        cause: BaseException | None = err
        while secret and isinstance(cause, HitPawError):
            if secret in cause.message:
                cause.message = cause.message.replace(secret, "***")
                cause.args = (cause._describe(),)
            cause = cause.__cause__
        raise


def read_submit_reply(reply: Reply, payload: dict[str, Any], secret: str | None = None) -> SubmittedJob:
    with _masking(secret):
        return _read_submit_reply(reply, payload)


def _read_submit_reply(reply: Reply, payload: dict[str, Any]) -> SubmittedJob:
    """The job a submission's reply stands for, or the error, sorted by whether coins may be gone.

    A refusal (4xx, or an error code in a 2xx body) and a 429 created nothing. A 5xx, or a 2xx that
    cannot be read, may follow a job that was created and charged: that is "outcome unknown".
    """
    status_code, body, headers = reply
    if 300 <= status_code < 400:
        location = str(headers.get("Location", ""))[:200]
        raise HitPawResponseError(
            f"HitPaw redirected the submission (HTTP {status_code} to {location or 'elsewhere'}); it "
            "was not processed. Set the connection's host to the final https base URL.",
            http_status=status_code,
        )
    error = error_from_reply(status_code, body, retry_after=headers.get("Retry-After"))
    if error is None:
        try:
            return parse_submit_reply(status_code, body)
        except HitPawResponseError as err:
            raise _unknown_submit(payload, str(err), status_code) from err
    # A server-side error code (1005xxxxx) may follow a created job whatever the HTTP status says.
    if status_code >= 500 or isinstance(error, HitPawServerError) or (
        status_code < 300 and isinstance(error, HitPawResponseError)
    ):
        raise _unknown_submit(payload, str(error), status_code) from error
    raise error


def _unknown_submit(
    payload: dict[str, Any], reason: str, status_code: int | None = None
) -> HitPawSubmitOutcomeUnknownError:
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


def _with_policy(settings: HitPawSettings, policy: RetryPolicy) -> HitPawSettings:
    from dataclasses import replace

    return replace(settings, retry=policy)


def _nothing_was_sent(err: requests.RequestException) -> bool:
    """Whether the request failed before a connection was open, so HitPaw cannot have seen it."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(err, requests.exceptions.ConnectionError) and err.args:
        reason = getattr(err.args[0], "reason", None)
        return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too
    return False


def _brief(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _download_error(response: requests.Response) -> HitPawError:
    body = response.raw.read(2048, decode_content=True) if response.raw is not None else b""
    error = error_from_reply(response.status_code, body, retry_after=response.headers.get("Retry-After"))
    if error is None or 200 <= response.status_code < 300:
        return HitPawResponseError(f"Result download answered HTTP {response.status_code}",
                                   http_status=response.status_code)
    return error


__all__ = ["HitPawAsyncHook", "HitPawHook", "build_submit_payload"]
