"""Private photos as inputs: HitPaw's presigned uploads, read without I/O.

A file is uploaded in two steps (HitPaw's ``docs/common/oss-storage.md``): ``POST /api/oss/presign-put``
(with the API key) returns a signed ``upload_url`` and the ``access_url`` to give as ``img_url``; the
file's bytes then go in a ``PUT`` to ``upload_url`` with exactly the returned Content-Type and without
the API key (the storage host is not HitPaw's API). An upload costs no coins, so every step is retried.

Here: what an upload is (:class:`UploadedFile`), the file to send (:class:`UploadSource`, its type
checked against HitPaw's whitelist before any request), its body streamed in constant memory
(:class:`StreamedBody`) and the presign replies read into values or typed errors. The requests
themselves are :meth:`~airflow_provider_hitpaw.hooks.hitpaw.HitPawHook.upload_file`'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

from airflow_provider_hitpaw.api import Reply, error_from_reply, mask_secret
from airflow_provider_hitpaw.contract.uploads import (
    MAX_UPLOAD_EXPIRE_SECONDS,
    MIN_UPLOAD_EXPIRE_SECONDS,
    UPLOAD_CONTENT_TYPES,
    UPLOAD_LIFETIME_SECONDS,
    UPLOAD_PHOTO_TYPES,
    upload_extension,
)
from airflow_provider_hitpaw.errors import HitPawError, HitPawResponseError, HitPawValidationError

#: Bytes read from the file per chunk of the PUT's body.
UPLOAD_CHUNK_BYTES = 256 * 1024
#: A presigned URL with less than this many seconds left is not used: a fresh one is asked for.
PRESIGN_SAFETY_SECONDS = 30


class HitPawUploadRefusedError(HitPawError):
    """The storage host refused the PUT (HTTP 403: the signed URL expired, or its signature or
    Content-Type did not match). Retryable: the next try asks for a fresh presigned URL."""

    retryable = True


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded to HitPaw's storage.

    :param access_url: where HitPaw (and anyone holding the URL) reads it: give it as ``img_url``.
    :param object_key: its path in HitPaw's storage.
    :param content_type: its Content-Type.
    :param expire_at: Unix time at which the presigned *upload* URL expired (not the file: HitPaw
        keeps uploads 7 days).
    """

    access_url: str
    object_key: str
    content_type: str
    expire_at: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Presigned:
    """One presign reply's item: where to PUT the file, and where it will be read from."""

    upload_url: str
    access_url: str
    object_key: str
    content_type: str
    expire_at: int

    def usable(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.expire_at - PRESIGN_SAFETY_SECONDS

    def uploaded(self) -> UploadedFile:
        return UploadedFile(self.access_url, self.object_key, self.content_type, self.expire_at)


def check_expire_seconds(value: object) -> int:
    """``expire_seconds`` of a presigned URL: a whole number from 60 to 7200."""
    if isinstance(value, bool) or not isinstance(value, int) or not (
        MIN_UPLOAD_EXPIRE_SECONDS <= value <= MAX_UPLOAD_EXPIRE_SECONDS
    ):
        raise HitPawValidationError(
            f"expire_seconds must be a whole number from {MIN_UPLOAD_EXPIRE_SECONDS} to "
            f"{MAX_UPLOAD_EXPIRE_SECONDS}, got {value!r}"
        )
    return value


def whitelist_text(types: dict[str, str] | None = None) -> str:
    return ", ".join(f".{ext} ({ctype})" for ext, ctype in (types or UPLOAD_CONTENT_TYPES).items())


def check_upload_name(name: str, content_type: str | None = None, *, photos_only: bool = False) -> str:
    """The Content-Type to upload ``name`` with, checked against HitPaw's whitelist (no I/O).

    :param name: the file's name (or path, or URL): its extension decides.
    :param content_type: the type the caller states; it must be the one of the extension.
    :param photos_only: accept only the photo types.
    :raises HitPawValidationError: for a type HitPaw does not accept (it would answer HTTP 400).
    """
    types = UPLOAD_PHOTO_TYPES if photos_only else UPLOAD_CONTENT_TYPES
    base = name.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    extension = upload_extension(base)
    if extension is None or extension not in types:
        raise HitPawValidationError(
            f"HitPaw does not accept uploads of {base[:120]!r}: the file name must end with one of "
            f"{whitelist_text(types)}"
        )
    expected = types[extension]
    if content_type is not None and content_type.strip().lower() != expected:
        raise HitPawValidationError(
            f"content_type {content_type[:80]!r} is not the type of a .{extension} file; HitPaw "
            f"expects {expected!r} (the whitelist: {whitelist_text(types)})"
        )
    return expected


def _is_storage_path(value: Any) -> bool:
    return not isinstance(value, str) and hasattr(value, "protocol") and hasattr(value, "open")


@dataclass(frozen=True)
class UploadSource:
    """A file to upload: its name, Content-Type and size, and how to open it.

    :param label: how it is named in logs and errors (its path or URL).
    :param filename: its base name, sent to HitPaw (whose object keeps the extension).
    :param content_type: the whitelisted type it is uploaded with.
    :param size: its size in bytes (the PUT's Content-Length).
    :param opener: opens it for reading bytes.
    """

    label: str
    filename: str
    content_type: str
    size: int
    opener: Callable[[], IO[bytes]]


def describe_source(path: Any) -> tuple[str, Any]:
    """``(label, local path or ObjectStoragePath)`` of an upload's ``path``, without any I/O.

    A local path, a ``file:`` URI of a local file, an object-storage URL (``s3://...``) or an
    ``ObjectStoragePath``.

    :raises HitPawValidationError: for anything else.
    """
    if _is_storage_path(path):
        return str(path), path
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise HitPawValidationError(f"The file to upload must be a path or a URL, got {str(path)[:80]!r}")
    if path[:5].lower() == "file:":
        from airflow_provider_hitpaw.downloads import split_file_uri

        host, local = split_file_uri(path)
        if host:
            raise HitPawValidationError(f"{path[:200]!r} names a file on host {host!r}: only local files can be read")
        return path, local
    if "://" in path:
        from airflow.sdk import ObjectStoragePath

        return path, ObjectStoragePath(path)
    return path, path


def open_source(path: Any, content_type: str | None = None, *, photos_only: bool = False) -> UploadSource:
    """The file behind ``path``, its type checked first (before the file is even looked at).

    :raises HitPawValidationError: for a type outside the whitelist, or a path that is not a file.
    """
    label, target = describe_source(path)
    name = target.name if _is_storage_path(target) else os.path.basename(target)
    ctype = check_upload_name(name or label, content_type, photos_only=photos_only)
    try:
        if _is_storage_path(target):
            if not target.is_file():
                raise HitPawValidationError(f"{label[:200]!r} is not a file")
            size = int(target.stat().st_size)

            def opener() -> IO[bytes]:
                handle: IO[bytes] = target.open("rb")
                return handle
        else:
            if not os.path.isfile(target):
                raise HitPawValidationError(f"{label[:200]!r} is not a file")
            size = os.path.getsize(target)

            def opener() -> IO[bytes]:
                return open(target, "rb")  # closed by the caller
    except HitPawValidationError:
        raise
    except OSError as err:
        raise HitPawValidationError(f"Cannot read {label[:200]!r}: {type(err).__name__}: {err}") from None
    return UploadSource(label, name, ctype, size, opener)


class StreamedBody:
    """A PUT body read from a file in :data:`UPLOAD_CHUNK_BYTES` chunks, of a known length.

    ``requests`` sends an object with ``__len__`` and ``__iter__`` with that ``Content-Length`` (not
    chunked, which storage hosts refuse) and holds one chunk at a time. ``on_chunk`` is called after
    each chunk (the time-limit check). A file that turns out shorter or longer than its stated size
    stops the upload rather than sending a body that disagrees with its Content-Length.
    """

    def __init__(self, handle: IO[bytes], size: int, on_chunk: Callable[[], None] | None = None) -> None:
        self._handle = handle
        self._size = size
        self._on_chunk = on_chunk
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self._size:
            chunk = self._handle.read(min(UPLOAD_CHUNK_BYTES, self._size - self.sent))
            if not chunk:
                raise OSError(f"the file ended after {self.sent} of {self._size} bytes: it changed while uploading")
            self.sent += len(chunk)
            yield chunk
            if self._on_chunk is not None:
                self._on_chunk()
        if self._handle.read(1):
            raise OSError(f"the file grew past {self._size} bytes while uploading")


# --- presign replies ------------------------------------------------------------------------------


def _presigned_item(item: Any, status_code: int) -> Presigned:
    if not isinstance(item, dict):
        raise HitPawResponseError("HitPaw's presign reply has an item that is not an object", http_status=status_code)
    upload_url, access_url = item.get("upload_url"), item.get("access_url")
    object_key, content_type, expire_at = item.get("object_key"), item.get("content_type"), item.get("expire_at")
    for name, value in (("upload_url", upload_url), ("access_url", access_url)):
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise HitPawResponseError(f"HitPaw's presign reply has no http(s) {name}", http_status=status_code)
    if not isinstance(object_key, str) or not isinstance(content_type, str) or not content_type:
        raise HitPawResponseError("HitPaw's presign reply has no object_key or content_type", http_status=status_code)
    if isinstance(expire_at, bool) or not isinstance(expire_at, int):
        raise HitPawResponseError("HitPaw's presign reply has no whole-number expire_at", http_status=status_code)
    return Presigned(upload_url, access_url, object_key, content_type, expire_at)  # type: ignore[arg-type]


def _reply_data(reply: Reply, secret: str | None, what: str) -> dict[str, Any]:
    if 300 <= reply.status_code < 400:
        raise HitPawResponseError(f"HitPaw redirected the {what} (HTTP {reply.status_code})",
                                  http_status=reply.status_code)
    body, payload, _ = mask_secret(reply, secret)
    error = error_from_reply(reply.status_code, body, retry_after=reply.headers.get("Retry-After"), payload=payload)
    if error is not None:
        raise error
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise HitPawResponseError(f"HitPaw's {what} reply has no 'data' object", http_status=reply.status_code)
    return data


def read_presign_reply(reply: Reply, secret: str | None = None) -> Presigned:
    """The presigned URL a ``presign-put`` reply stands for (its success code is 0), or its error."""
    return _presigned_item(_reply_data(reply, secret, "presign request"), reply.status_code)


def read_batch_presign_reply(reply: Reply, count: int, secret: str | None = None) -> list[Presigned | None]:
    """One entry per requested file: its presigned URL, or None for a file the batch did not sign."""
    data = _reply_data(reply, secret, "batch presign request")
    items = data.get("items")
    if not isinstance(items, list) or len(items) != count:
        raise HitPawResponseError(
            f"HitPaw's batch presign reply does not hold one item per file ({count})", http_status=reply.status_code
        )
    result: list[Presigned | None] = []
    for item in items:
        try:
            result.append(_presigned_item(item, reply.status_code))
        except HitPawResponseError:
            result.append(None)  # a failed item: that file is presigned on its own
    return result


def upload_still_usable(uploaded_at: float, now: float | None = None, margin: float = 86400.0) -> bool:
    """Whether an upload made at ``uploaded_at`` (Unix time) is kept by HitPaw for ``margin`` more seconds."""
    return (time.time() if now is None else now) < uploaded_at + UPLOAD_LIFETIME_SECONDS - margin
