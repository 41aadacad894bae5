"""Hooks for the HitPaw API: :class:`HitPawHook` (sync, requests) and :class:`HitPawAsyncHook` (aiohttp)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_hitpaw.api import (
    Reply,
    SubmittedJob,
    TaskStatus,
    error_from_reply,
    read_status_reply,
    read_submit_reply,
    submission_failed,
    unknown_submit_error,
)
from airflow_provider_hitpaw.connection import DEFAULT_CONN_ID, HitPawSettings, check_api_key
from airflow_provider_hitpaw.connection_fields import connection_form
from airflow_provider_hitpaw.contract.endpoints import (
    API_KEY_HEADER,
    OSS_PRESIGN_PUT_BATCH_PATH,
    OSS_PRESIGN_PUT_PATH,
    PHOTO_ENHANCER_PATH,
    TASK_STATUS_PATH,
    VIDEO_ENHANCER_PATH,
)
from airflow_provider_hitpaw.contract.uploads import DEFAULT_UPLOAD_EXPIRE_SECONDS, MAX_UPLOAD_BATCH_FILES
from airflow_provider_hitpaw.downloads import DOWNLOAD_CHUNK_BYTES, resolve_destination, write_stream
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawConnectionError,
    HitPawError,
    HitPawJobFailedError,
    HitPawRateLimitError,
    HitPawResponseError,
    HitPawServerError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.hooks import sync_transport
from airflow_provider_hitpaw.hooks.transport import IDENTITY_HEADERS, Failure
from airflow_provider_hitpaw.models import build_submit_payload, validate_url
from airflow_provider_hitpaw.retries import RetryPolicy, acall_with_retries, call_with_retries
from airflow_provider_hitpaw.uploads import (
    HitPawUploadRefusedError,
    Presigned,
    StreamedBody,
    UploadedFile,
    UploadSource,
    check_expire_seconds,
    open_source,
    read_batch_presign_reply,
    read_presign_reply,
)
from airflow_provider_hitpaw.validation import build_video_payload, validate_job_id

if TYPE_CHECKING:
    import requests
    from airflow.sdk import ObjectStoragePath

# ``requests`` is imported where it is used, not here: importing it costs about 30 ms, which every DAG
# file using the operators would pay at parse time (see BENCHMARKS.md, parse cost).

T = TypeVar("T")

REUSE_CONNECTION_FOR_SUBMIT_SECONDS = 1.0
# A job id no HitPaw job can have: asking its status proves the key without spending coins.
CONNECTION_TEST_JOB_ID = "airflow-connection-test-00000000"


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
        return connection_form(extra_fields_in_form=False)

    @cached_property
    def settings(self) -> HitPawSettings:
        settings = HitPawSettings.from_connection(self.get_connection(self.hitpaw_conn_id))
        if self._retry_policy_override is not None:
            settings = _with_policy(settings, self._retry_policy_override)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        return sync_transport.new_session()

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    def _api_headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.settings.api_key, "Content-Type": "application/json", **IDENTITY_HEADERS}

    def _post(self, path: str, payload: dict[str, Any], deadline: float | None = None) -> Reply:
        """POST to the API and read the whole reply, at most 1 MiB decoded.

        The exchange, from connecting to the reply's last byte, is cut off after connect + read
        timeout (and at ``deadline``, epoch seconds, when given) however slowly the server sends.
        Redirects are not followed: a POST must not be replayed elsewhere with the key on it.
        On failure it raises :class:`SyncTransportFailure`, which says whether anything was sent.
        """
        settings = self.settings
        budget = settings.connect_timeout + settings.read_timeout
        connect, read = settings.connect_timeout, settings.read_timeout
        if deadline is not None:
            remaining = max(0.1, deadline - time.time())
            budget = min(budget, remaining)
            connect, read = min(connect, remaining), min(read, remaining)
        with sync_transport.exchange(budget) as current:
            try:
                with self.session.post(
                    settings.base_url + path,
                    json=payload,
                    headers=self._api_headers(),
                    timeout=(connect, read),
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    body = sync_transport.read_reply(response, current)
                    self._last_reply_at = time.monotonic()
                    return Reply(response.status_code, body, response.headers)
            except HitPawError:
                raise
            except Exception as err:
                raise SyncTransportFailure(sync_transport.classify(err, current)) from None

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

    def enhance_video(
        self,
        video_url: str,
        model_name: str,
        resolution: list[int] | tuple[int, int] | str,
        extension: str = ".mp4",
        original_resolution: list[int] | tuple[int, int] | str | None = None,
        *,
        allow_unknown_model: bool = False,
    ) -> SubmittedJob:
        """Submit a video enhancement job (``POST /api/video-enhancer``). Costs coins: HitPaw bills
        every second of the result, by its resolution and frame rate.

        Every argument is checked before anything is sent (the model, ``resolution`` as two positive
        whole numbers of at most 36 MP, an extension HitPaw writes), and the request follows the same
        money-safe rules as :meth:`enhance_photo`. The video itself (its duration, its price) is
        checked by :func:`airflow_provider_hitpaw.video_preflight.check_video_before_paying`, which
        the operator runs first.

        :param video_url: public http(s) URL of the video (or the ``access_url`` of an upload).
        :param model_name: a video model, e.g. ``general_restore_2x``.
        :param resolution: the result's ``[width, height]``.
        :param extension: the result's container: ``.mp4`` (default), ``.mov``, ``.mkv``, ``.m4v``,
            ``.avi`` or ``.gif``.
        :param original_resolution: the source's ``[width, height]``, sent as given (optional).
        :param allow_unknown_model: send a model name this provider does not list.
        :return: the job id and the coins it cost.
        """
        payload = build_video_payload(
            video_url, model_name, resolution, extension, original_resolution,
            allow_unknown_model=allow_unknown_model,
        )
        return self.submit(VIDEO_ENHANCER_PATH, payload)

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
        try:
            reply = self._post(path, payload)
        except SyncTransportFailure as failure:
            raise submission_failed(
                payload, nothing_sent=failure.nothing_sent, reason=failure.reason, base_url=self.settings.base_url
            ) from None
        except HitPawResponseError as err:  # the reply was too big or garbled: it came after the request
            raise unknown_submit_error(payload, str(err)) from None
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
        try:
            reply = self._post(TASK_STATUS_PATH, {"job_id": job_id}, deadline)
        except SyncTransportFailure as failure:
            raise HitPawConnectionError(f"Status request failed: {failure.reason}", job_id=job_id) from None
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
        from airflow_provider_hitpaw.events import MIN_POLL_INTERVAL_SECONDS  # the floor (HitPaw: 2-5 s)

        poll_interval = max(poll_interval, MIN_POLL_INTERVAL_SECONDS)  # raised, not refused: the job is paid
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
        self,
        res_url: str,
        destination: str | os.PathLike[str] | ObjectStoragePath,
        *,
        job_id: str | None = None,
        source_url: str | None = None,
    ) -> str:
        """Stream a result to a local path or an ``ObjectStoragePath``, in constant memory.

        ``destination`` is a local path, a ``file:`` URI of a local path (``file:///data/out/``,
        ``file://localhost/...``, ``file:/...``, percent-encoded), an object-storage URL or an
        ``ObjectStoragePath``. One that is an existing folder, or ends with ``/``, is a folder: with a
        ``job_id`` the result is named ``<stem of source_url>-<job_id><extension of res_url>``
        (``portrait-<job_id>.png``), so jobs sharing a folder never overwrite each other; without
        one, it gets a safe form of the URL's file name. Either way it is written inside that folder,
        whatever ``res_url`` holds (see :func:`airflow_provider_hitpaw.downloads.resolve_destination`).
        Any other destination is the file to write. A local file is written to a temporary name and
        renamed, so a reader never sees half a file. The API key is never sent to ``res_url`` (it is
        usually another host).

        :param job_id: the job the result belongs to: names the file in a folder.
        :param source_url: the photo's URL: its file name gives the result's stem.
        :return: where the file was written, as a string.
        :raises HitPawValidationError: for a destination of no usable form (``file://otherhost/``...),
            before any request.
        """
        validate_url(res_url, field="res_url")
        target = resolve_destination(res_url, destination, job_id=job_id, source_url=source_url)
        call_with_retries(
            self.settings.retry, self.log, "result download", lambda: self._download_once(res_url, target)
        )
        self.log.info("Copied HitPaw result to %s", target)
        return str(target)

    def _download_once(self, res_url: str, target: Any) -> None:
        """One try: the whole download, however its bytes trickle, ends by ``download_timeout``."""
        settings = self.settings
        with sync_transport.exchange(settings.download_timeout) as current:
            try:
                response = self.session.get(
                    res_url,
                    stream=True,
                    timeout=(settings.connect_timeout, settings.read_timeout),
                    allow_redirects=True,
                    headers=IDENTITY_HEADERS,
                )
            except Exception as err:
                reason = sync_transport.classify(err, current).reason
                raise HitPawConnectionError(f"Downloading the result failed: {reason}") from None
            with response:
                if response.status_code != 200:
                    raise _download_error(response)
                write_stream(_checked_chunks(response, current), target)

    # --- upload -------------------------------------------------------------------------------

    def upload_file(
        self,
        path: str | os.PathLike[str] | ObjectStoragePath,
        *,
        content_type: str | None = None,
        expire_seconds: int = DEFAULT_UPLOAD_EXPIRE_SECONDS,
    ) -> UploadedFile:
        """Upload a private file to HitPaw's storage; its ``access_url`` can then be given as ``img_url``.

        Free (no coins). ``path`` is a local path, a ``file:`` URI of a local file, an object-storage
        URL (``s3://bucket/photo.jpg``) or an ``ObjectStoragePath``. Its type is checked against
        HitPaw's whitelist (.jpg/.jpeg, .png, .gif, .webp, .bmp; .mp4, .mov, .avi, .mkv, .webm)
        before any request. Then a presigned URL is asked for (``POST /api/oss/presign-put``, with
        the API key) and the file is streamed to it in a ``PUT`` with exactly the Content-Type HitPaw
        returned, in constant memory and without the API key. The PUT takes at most the connection's
        ``download_timeout`` in all. A failed PUT (5xx, network, 403 for an expired or refused URL)
        is retried under the connection's retry policy, with a fresh presigned URL when the old one
        was refused or is about to expire. HitPaw keeps uploads 7 days.

        :param content_type: the file's type, when stated; it must be the one of its extension.
        :param expire_seconds: how long the presigned PUT URL is valid, 60 to 7200.
        :raises HitPawValidationError: for a type outside the whitelist or a path that is no file,
            before any request.
        """
        expire_seconds = check_expire_seconds(expire_seconds)
        source = open_source(path, content_type)
        return self._upload(source, expire_seconds, None)

    def upload_files(
        self,
        paths: list[Any],
        *,
        expire_seconds: int = DEFAULT_UPLOAD_EXPIRE_SECONDS,
    ) -> list[UploadedFile]:
        """Upload several files, presigned 20 at a time (``POST /api/oss/presign-put/batch``).

        Every file's type is checked before any request. Each PUT is retried like
        :meth:`upload_file`'s; a file the batch did not sign is presigned on its own.

        :return: one :class:`UploadedFile` per path, in order.
        """
        expire_seconds = check_expire_seconds(expire_seconds)
        sources = [open_source(path) for path in paths]
        uploaded: list[UploadedFile] = []
        for start in range(0, len(sources), MAX_UPLOAD_BATCH_FILES):
            chunk = sources[start : start + MAX_UPLOAD_BATCH_FILES]
            payload = {
                "files": [{"filename": s.filename, "content_type": s.content_type} for s in chunk],
                "expire_seconds": expire_seconds,
            }
            presigned = call_with_retries(
                self.settings.retry, self.log, "batch presign request",
                lambda payload=payload, n=len(chunk): read_batch_presign_reply(  # type: ignore[misc]
                    self._upload_post(OSS_PRESIGN_PUT_BATCH_PATH, payload), n, self.settings.api_key
                ),
            )
            for source, first in zip(chunk, presigned, strict=True):
                uploaded.append(self._upload(source, expire_seconds, first))
        return uploaded

    def _upload_post(self, path: str, payload: dict[str, Any]) -> Reply:
        try:
            return self._post(path, payload)
        except SyncTransportFailure as failure:
            raise HitPawConnectionError(f"Presign request failed: {failure.reason}") from None

    def _presign(self, source: UploadSource, expire_seconds: int) -> Presigned:
        payload = {"filename": source.filename, "content_type": source.content_type, "expire_seconds": expire_seconds}
        return read_presign_reply(self._upload_post(OSS_PRESIGN_PUT_PATH, payload), self.settings.api_key)

    def _upload(self, source: UploadSource, expire_seconds: int, first: Presigned | None) -> UploadedFile:
        current = first

        def once() -> UploadedFile:
            nonlocal current
            if current is None or not current.usable():
                current = self._presign(source, expire_seconds)
            try:
                self._put_once(source, current)
            except HitPawUploadRefusedError:
                current = None  # expired or refused: the next try asks for a fresh URL
                raise
            return current.uploaded()

        uploaded = call_with_retries(self.settings.retry, self.log, f"upload of {source.label[:200]}", once)
        self.log.info("Uploaded %s to HitPaw (%d bytes): %s", source.label, source.size, uploaded.access_url)
        return uploaded

    def _put_once(self, source: UploadSource, presigned: Presigned) -> None:
        """One PUT of the whole file to the presigned URL, within ``download_timeout``.

        The headers are built here and the API key is removed from them explicitly (a ``None``
        value drops a session header): the storage host is not HitPaw's API.
        """
        settings = self.settings
        headers: dict[str, str | None] = {
            "Content-Type": presigned.content_type,
            "Content-Length": str(source.size),
            **IDENTITY_HEADERS,
            API_KEY_HEADER: None,
        }
        with sync_transport.exchange(settings.download_timeout) as current, source.opener() as handle:
            body = StreamedBody(handle, source.size, current.check_time)
            try:
                with self.session.put(
                    presigned.upload_url,
                    data=body,
                    headers=headers,
                    timeout=(settings.connect_timeout, settings.read_timeout),
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    reply = sync_transport.read_reply(response, current, limit=64 * 1024)
                    status = response.status_code
            except HitPawError:
                raise
            except Exception as err:
                reason = sync_transport.classify(err, current).reason
                raise HitPawConnectionError(f"Uploading {source.label[:200]} failed: {reason}") from None
        if status == 200 or status == 204:
            return
        detail = " ".join(reply[:300].decode("utf-8", "replace").split())
        message = f"The storage host answered the upload of {source.label[:200]} with HTTP {status}: {detail[:300]}"
        if status == 403:
            raise HitPawUploadRefusedError(message, http_status=status)
        if status == 429:
            raise HitPawRateLimitError(message, http_status=status)
        if status >= 500:
            raise HitPawServerError(message, http_status=status)
        raise HitPawResponseError(message, http_status=status)

    # --- connection test ----------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check that HitPaw accepts the key, without spending coins.

        It asks the status of a job id that cannot exist: "task does not exist" means the key was
        accepted; a key error means it was not. Airflow's Test button runs it on a copy of the
        connection under a random id, so the messages name neither that id nor the made-up job's.
        """
        try:
            check_api_key((self.get_connection(self.hitpaw_conn_id).password or "").strip(), None)
            base_url = self.settings.base_url
        except HitPawError as err:
            return False, err.describe(with_job=False)
        try:
            self.get_task_status(CONNECTION_TEST_JOB_ID)
        except HitPawTaskNotFoundError:
            return True, f"Connection to {base_url} works: the API key was accepted"
        except HitPawAuthError as err:
            return False, f"HitPaw refused the API key: {err.describe(with_job=False)}"
        except HitPawError as err:
            return False, f"{type(err).__name__}: {err.describe(with_job=False)}"
        return True, f"Connection to {base_url} works"


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
        self._read: HitPawSettings | None = None
        self._preset: HitPawSettings | None = None

    async def get_settings(self, *, fresh: bool = False) -> HitPawSettings:
        """The connection's settings, shared by the process's hooks and re-read at least once a minute
        (:data:`~airflow_provider_hitpaw.hooks.session.SETTINGS_TTL_SECONDS`), so that a long wait
        picks up a rotated key. ``fresh`` reads the connection again now."""
        from airflow_provider_hitpaw.hooks.session import shared_settings

        read = await shared_settings(self.hitpaw_conn_id, self._read_settings, fresh=fresh)
        if read is not self._read:  # derived once per connection read, not once per poll
            self._read = read
            override = self._retry_policy_override
            self._settings = read if override is None else _with_policy(read, override)
        assert self._settings is not None
        return self._settings

    @property
    def request_time_limit(self) -> float | None:
        """Seconds one request may take in all (connect + read timeout), once the connection is read."""
        if self._settings is None:
            return None
        return self._settings.connect_timeout + self._settings.read_timeout

    async def _read_settings(self) -> HitPawSettings:
        if self._preset is not None:
            return self._preset
        return HitPawSettings.from_connection(await self.aget_connection(self.hitpaw_conn_id))

    def use_settings(self, settings: HitPawSettings) -> None:
        """Use settings already read (by a worker's sync hook) instead of an async connection lookup."""
        self._preset = settings

    async def _post(
        self, settings: HitPawSettings, path: str, payload: dict[str, Any], *, fresh: bool = False
    ) -> Reply:
        """POST to the API on the shared session (or, with ``fresh``, on a connection of its own).

        On failure it raises :class:`AsyncTransportFailure`, which says whether anything was sent.
        """
        import aiohttp

        from airflow_provider_hitpaw.hooks import async_transport
        from airflow_provider_hitpaw.hooks.session import client_timeout, get_shared_session

        own = aiohttp.ClientSession(auto_decompress=False) if fresh else None
        try:
            session = own or await get_shared_session()
            return await async_transport.post(
                session,
                settings.base_url + path,
                payload,
                {API_KEY_HEADER: settings.api_key},
                client_timeout(settings.connect_timeout, settings.read_timeout),
            )
        except HitPawError:
            raise
        except Exception as err:
            raise AsyncTransportFailure(async_transport.classify(err)) from None
        finally:
            if own is not None:
                await own.close()

    async def get_task_status(self, job_id: str, *, deadline: float | None = None) -> TaskStatus:
        """Ask the state of a job, retrying transient errors like the sync hook.

        A key refused by HitPaw is checked once against the connection as it is now: a wait that
        outlives a key rotation goes on with the new key instead of failing.

        :param job_id: the job's id.
        :param deadline: epoch seconds after which no retry starts.
        """
        validate_job_id(job_id)
        settings = await self.get_settings()
        try:
            return await acall_with_retries(
                settings.retry, self.log, "status request", lambda: self._status_once(settings, job_id), deadline
            )
        except HitPawAuthError:
            current = await self.get_settings(fresh=True)
            if current.api_key == settings.api_key:
                raise
            self.log.info("The API key of connection %s has changed; asking again with the new key",
                          self.hitpaw_conn_id)
            return await acall_with_retries(
                current.retry, self.log, "status request", lambda: self._status_once(current, job_id), deadline
            )

    async def _status_once(self, settings: HitPawSettings, job_id: str) -> TaskStatus:
        try:
            reply = await self._post(settings, TASK_STATUS_PATH, {"job_id": job_id})
        except AsyncTransportFailure as failure:
            raise HitPawConnectionError(f"Status request failed: {failure.reason}", job_id=job_id) from None
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
        payload = build_submit_payload(
            img_url, model_name, extension, exif, dpi, allow_unknown_model=allow_unknown_model
        )
        return await self.submit(PHOTO_ENHANCER_PATH, payload)

    async def enhance_video(
        self,
        video_url: str,
        model_name: str,
        resolution: list[int] | tuple[int, int] | str,
        extension: str = ".mp4",
        original_resolution: list[int] | tuple[int, int] | str | None = None,
        *,
        allow_unknown_model: bool = False,
    ) -> SubmittedJob:
        """Submit a video job from async code; same checks and money-safe rules as the sync hook's
        :meth:`HitPawHook.enhance_video`."""
        payload = build_video_payload(
            video_url, model_name, resolution, extension, original_resolution,
            allow_unknown_model=allow_unknown_model,
        )
        return await self.submit(VIDEO_ENHANCER_PATH, payload)

    async def submit(self, path: str, payload: dict[str, Any]) -> SubmittedJob:
        """POST an already validated submission with the money-safe retry rules, on a connection of
        its own (a pooled one the server may just have closed cannot be told from a lost reply)."""
        settings = await self.get_settings()

        async def once() -> SubmittedJob:
            try:
                reply = await self._post(settings, path, payload, fresh=True)
            except AsyncTransportFailure as failure:
                raise submission_failed(
                    payload, nothing_sent=failure.nothing_sent, reason=failure.reason, base_url=settings.base_url
                ) from None
            except HitPawResponseError as err:  # the reply was too big or garbled: it came after the request
                raise unknown_submit_error(payload, str(err)) from None
            return read_submit_reply(reply, payload, settings.api_key)

        return await acall_with_retries(settings.retry, self.log, "submission", once)


class _TransportFailure(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.nothing_sent = failure.nothing_sent
        self.reason = failure.reason


class SyncTransportFailure(_TransportFailure):
    """A request of the sync hook failed below HTTP; ``nothing_sent`` says whether HitPaw can have seen it."""


class AsyncTransportFailure(_TransportFailure):
    """A request of the async hook failed below HTTP; ``nothing_sent`` says whether HitPaw can have seen it."""


def _checked_chunks(response: requests.Response, current: sync_transport.Exchange) -> Iterator[bytes]:
    """The result's bytes; raises, before the file is put in place, if the body is cut or too slow.

    ``Content-Length`` counts the bytes on the wire: with a ``Content-Encoding`` they differ from
    the decoded bytes written, so the wire count is compared.
    """
    try:
        for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
            yield chunk
            current.check_time()
        current.check_time()  # a reply cut by the watchdog can look complete to http.client
    except Exception as err:
        reason = sync_transport.classify(err, current).reason
        raise HitPawConnectionError(f"Downloading the result failed: {reason}") from None
    expected = response.headers.get("Content-Length")
    received = response.raw.tell()
    if expected is not None and expected.isascii() and expected.isdigit() and len(expected) < 19:
        if int(expected) != received:
            raise HitPawConnectionError(f"The result download was cut short: {received} of {expected} bytes")


def _with_policy(settings: HitPawSettings, policy: RetryPolicy) -> HitPawSettings:
    from dataclasses import replace

    return replace(settings, retry=policy)


def _download_error(response: requests.Response) -> HitPawError:
    body = response.raw.read(2048, decode_content=True) if response.raw is not None else b""
    error = error_from_reply(response.status_code, body, retry_after=response.headers.get("Retry-After"))
    if error is None or 200 <= response.status_code < 300:
        return HitPawResponseError(f"Result download answered HTTP {response.status_code}",
                                   http_status=response.status_code)
    return error


__all__ = ["HitPawAsyncHook", "HitPawHook", "build_submit_payload"]
