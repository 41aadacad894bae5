"""HitPaw's presigned uploads as the sandbox serves them: the presign endpoints, the storage host's
signed ``PUT`` and the uploaded file at its ``access_url``.

HitPaw hands out an Alibaba OSS URL; the sandbox plays that storage host on its own port, under
``/oss/<object_key>``, signed with an HMAC of the object key, the Content-Type and the expiry. The
PUT is refused with 403 and an OSS-style XML body for a wrong Content-Type, a bad signature or an
expired URL; its body is streamed to disk. The file is then served at ``/files/<object_key>`` (the
``access_url``), which the photo enhancer fetches like any ``img_url``. Uploads live in the results
folder and are kept 7 days, as HitPaw keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_hitpaw.contract.endpoints import (
    API_KEY_HEADER,
    OSS_PRESIGN_PUT_BATCH_PATH,
    OSS_PRESIGN_PUT_PATH,
)
from airflow_provider_hitpaw.contract.uploads import (
    DEFAULT_UPLOAD_EXPIRE_SECONDS,
    MAX_UPLOAD_BATCH_FILES,
    MAX_UPLOAD_EXPIRE_SECONDS,
    MIN_UPLOAD_EXPIRE_SECONDS,
    UPLOAD_CONTENT_TYPES,
    UPLOAD_LIFETIME_SECONDS,
    upload_extension,
)
from airflow_provider_hitpaw.sandbox import replies

if TYPE_CHECKING:
    from airflow_provider_hitpaw.sandbox.server import SandboxServer

#: The storage host's paths: the signed PUT, and the file as ``access_url`` serves it.
STORAGE_PUT_ROUTE = "/oss/{object_key:.+}"
ACCESS_ROUTE = "/files/{object_key:.+}"
_WRITE_CHUNK = 1024 * 1024


@dataclass
class StoredUpload:
    path: Path
    content_type: str
    size: int
    uploaded_at: float  # time.time()


@dataclass
class UploadStore:
    """What the storage host knows: its signing secret, the uploads, and every PUT's header names.

    :param folder: where uploaded files are written.
    """

    folder: Path
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    files: dict[str, StoredUpload] = field(default_factory=dict)
    #: The header names (lower case) of every PUT received, in order: the API key must never be one.
    put_headers: list[list[str]] = field(default_factory=list)
    presigned: int = 0
    #: A test knob: the next this-many presigned URLs are issued already expired.
    expire_next: int = 0

    def sign(self, object_key: str, content_type: str, expires: int) -> str:
        message = f"{object_key}\n{content_type}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def stats(self) -> dict[str, Any]:
        return {
            "presigned": self.presigned,
            "stored": len(self.files),
            "bytes_stored": sum(u.size for u in self.files.values()),
            "put_headers": [list(h) for h in self.put_headers],
        }


class PresignRefused(Exception):
    """A presign request HitPaw answers with HTTP 400."""


def _expire_seconds(body: dict[str, Any]) -> int:
    value = body.get("expire_seconds", DEFAULT_UPLOAD_EXPIRE_SECONDS)
    if value is None:
        return DEFAULT_UPLOAD_EXPIRE_SECONDS
    if isinstance(value, bool) or not isinstance(value, int):
        raise PresignRefused("expire_seconds must be a whole number")
    if not MIN_UPLOAD_EXPIRE_SECONDS <= value <= MAX_UPLOAD_EXPIRE_SECONDS:
        raise PresignRefused(f"expire_seconds must be in [{MIN_UPLOAD_EXPIRE_SECONDS}, {MAX_UPLOAD_EXPIRE_SECONDS}]")
    return value


def _checked_file(item: Any) -> tuple[str, str, str]:
    """(filename, content_type, extension) of one file to presign.

    :raises PresignRefused: for a missing field, an extension outside the whitelist, or a
        Content-Type that is not the one of its extension.
    """
    if not isinstance(item, dict):
        raise PresignRefused("each file must be an object")
    filename, content_type = item.get("filename"), item.get("content_type")
    if not isinstance(filename, str) or not filename.strip() or len(filename) > 1024:
        raise PresignRefused("filename is required")
    if not isinstance(content_type, str) or not content_type:
        raise PresignRefused("content_type is required")
    extension = upload_extension(filename)
    if extension is None or extension not in UPLOAD_CONTENT_TYPES:
        raise PresignRefused(f"file extension not in the whitelist: {filename[-20:]!r}")
    if content_type != UPLOAD_CONTENT_TYPES[extension]:
        raise PresignRefused(f"content_type {content_type[:60]!r} does not match .{extension}")
    return filename, content_type, extension


def _oss_error(code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
        f"  <RequestId>{uuid.uuid4().hex[:24].upper()}</RequestId>\n  <HostId>sandbox-oss</HostId>\n</Error>\n"
    )
    return web.Response(status=403, text=body, content_type="application/xml")


class UploadRoutes:
    """The handlers of the presign endpoints, the storage host's PUT and the ``access_url`` GET."""

    def __init__(self, server: SandboxServer, store: UploadStore) -> None:
        self.server = server
        self.store = store

    #: Fault categories of the routes (the middleware's): the PUT draws the ``upload`` faults; the
    #: presign requests are API requests under the rate limit but draw no faults of their own.
    CATEGORIES = {
        OSS_PRESIGN_PUT_PATH: "presign",
        OSS_PRESIGN_PUT_BATCH_PATH: "presign",
        "/oss/{object_key}": "upload",
    }

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(OSS_PRESIGN_PUT_PATH, self.presign)
        app.router.add_post(OSS_PRESIGN_PUT_BATCH_PATH, self.presign_batch)
        app.router.add_put(STORAGE_PUT_ROUTE, self.storage_put)
        app.router.add_get(ACCESS_ROUTE, self.access)

    # -- presign ----------------------------------------------------------------------------------

    async def _request(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The JSON body of a presign request by a known key, or the error reply."""
        state = self.server.state
        if state.ledger.owner_id(request.headers.get(API_KEY_HEADER)) is None:
            return replies.error(replies.INVALID_API_KEY, state.error_shape)
        from airflow_provider_hitpaw.sandbox.api_routes import RequestRefused, read_json_object

        try:
            return await read_json_object(request)
        except RequestRefused as refused:
            return replies.error(refused.code, state.error_shape)

    def _presign_one(self, request: web.Request, filename: str, content_type: str, extension: str,
                     expire_seconds: int) -> dict[str, Any]:
        del filename  # HitPaw names the object itself; only the extension is kept
        now = time.time()
        day = time.strftime("%Y/%m/%d", time.gmtime(now))
        object_key = f"uploads/{day}/{uuid.uuid4().hex}.{extension}"
        expire_at = int(now) + expire_seconds
        valid_until = expire_at
        if self.store.expire_next > 0:
            self.store.expire_next -= 1
            valid_until = int(now) - 1
        signature = self.store.sign(object_key, content_type, valid_until)
        base = self.server.public_base_url(request)
        self.store.presigned += 1
        return {
            "upload_url": f"{base}/oss/{object_key}?Expires={valid_until}&Signature={signature}",
            "access_url": f"{base}/files/{object_key}",
            "object_key": object_key,
            "content_type": content_type,
            "expire_at": expire_at,
        }

    async def presign(self, request: web.Request) -> web.Response:
        body = await self._request(request)
        if isinstance(body, web.Response):
            return body
        try:
            expire_seconds = _expire_seconds(body)
            filename, content_type, extension = _checked_file(body)
        except PresignRefused:
            return replies.error(replies.BAD_REQUEST, self.server.state.error_shape)
        return _ok_zero(self._presign_one(request, filename, content_type, extension, expire_seconds))

    async def presign_batch(self, request: web.Request) -> web.Response:
        body = await self._request(request)
        if isinstance(body, web.Response):
            return body
        files = body.get("files")
        try:
            expire_seconds = _expire_seconds(body)
            if not isinstance(files, list) or not 1 <= len(files) <= MAX_UPLOAD_BATCH_FILES:
                raise PresignRefused(f"files must hold 1 to {MAX_UPLOAD_BATCH_FILES} items")
        except PresignRefused:
            return replies.error(replies.BAD_REQUEST, self.server.state.error_shape)
        items: list[dict[str, Any]] = []
        for item in files:
            try:
                checked = _checked_file(item)
            except PresignRefused as refused:
                name = item.get("filename") if isinstance(item, dict) else None
                items.append({"filename": name if isinstance(name, str) else None, "error": str(refused)})
                continue
            items.append(self._presign_one(request, *checked, expire_seconds))
        failed = sum(1 for i in items if "error" in i)
        return _ok_zero({"total": len(items), "success": len(items) - failed, "failed": failed, "items": items})

    # -- the storage host -------------------------------------------------------------------------

    async def storage_put(self, request: web.Request) -> web.Response:
        """The signed PUT: checked, then streamed to disk; 200 with an empty body."""
        self.store.put_headers.append(sorted(name.lower() for name in request.headers))
        object_key = request.match_info["object_key"]
        content_type = request.headers.get("Content-Type", "")
        expires_text = request.query.get("Expires", "")
        signature = request.query.get("Signature", "")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return _oss_error("AccessDenied", "Invalid Expires.")
        expires = int(expires_text)
        expected = self.store.sign(object_key, content_type, expires)
        if not hmac.compare_digest(expected, signature):
            return _oss_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if time.time() > expires:
            return _oss_error("AccessDenied", "Request has expired.")
        target = self.store.folder / object_key
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        size = 0
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            buffer = bytearray()
            async for chunk in request.content.iter_chunked(64 * 1024):
                buffer += chunk
                size += len(chunk)
                if len(buffer) >= _WRITE_CHUNK:
                    await asyncio.to_thread(handle.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(handle.write, bytes(buffer))
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        self.store.files[object_key] = StoredUpload(target, content_type, size, time.time())
        return web.Response(status=200, headers={"x-oss-request-id": uuid.uuid4().hex[:24].upper()})

    async def access(self, request: web.Request) -> web.StreamResponse:
        """The uploaded file at its ``access_url``; 404 when unknown or older than 7 days."""
        stored = self.store.files.get(request.match_info["object_key"])
        if stored is None:
            raise web.HTTPNotFound()
        if time.time() >= stored.uploaded_at + UPLOAD_LIFETIME_SECONDS:
            self.store.files.pop(request.match_info["object_key"], None)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(stored.path.unlink)
            raise web.HTTPNotFound()
        if not stored.path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(stored.path, headers={"Content-Type": stored.content_type})


def _ok_zero(data: dict[str, Any]) -> web.Response:
    """The presign endpoints' success envelope: ``"code": 0`` (not the 200 of the job endpoints)."""
    return web.json_response({"code": 0, "message": "success", "data": data})
