"""The ``/admin/`` endpoints: stats, fault settings, keys, resets and synthetic jobs.

They take no API key, so the server only serves them on a loopback address unless told otherwise.
Errors are ``{"error": "..."}`` with HTTP 400.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_hitpaw.sandbox import replies
from airflow_provider_hitpaw.sandbox.api_routes import BlobResponse
from airflow_provider_hitpaw.sandbox.state import MAX_BLOB_BYTES

if TYPE_CHECKING:
    from airflow_provider_hitpaw.sandbox.server import SandboxServer


class AdminError(Exception):
    """An admin request that is refused with HTTP 400."""


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
        body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AdminError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


class AdminRoutes:
    """The handlers of ``/admin/*``.

    :param server: the server whose state they read and change.
    """

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.state = server.state

    def add_to(self, app: web.Application) -> None:
        routes = [
            ("GET", "/admin/stats", self.stats),
            ("GET", "/admin/faults", self.get_faults),
            ("POST", "/admin/faults", self.set_faults),
            ("GET", "/admin/settings", self.get_settings),
            ("POST", "/admin/settings", self.set_settings),
            ("POST", "/admin/keys", self.add_key),
            ("POST", "/admin/keys/rotate", self.rotate_key),
            ("POST", "/admin/reset", self.reset),
            ("POST", "/admin/forget-jobs", self.forget_jobs),
            ("POST", "/admin/jobs", self.create_jobs),
            ("GET", "/admin/blob", self.blob),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))

    @staticmethod
    def _guarded(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
                return response
            except (AdminError, ValueError, TypeError) as err:
                return replies.admin_error(str(err))

        return wrapped

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.stats())

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.faults.config.to_dict())

    async def set_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.set_faults(**await _json_object(request)))

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.settings())

    async def set_settings(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        unknown = set(body) - {"error_shape", "job_seconds", "result_seconds"}
        if unknown:
            raise AdminError(f"unknown settings: {sorted(unknown)}")
        return web.json_response(self.state.update_settings(**body))

    async def add_key(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        return web.json_response(self.state.add_key(body.get("api_key"), body.get("coins")))  # type: ignore[arg-type]

    async def rotate_key(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        return web.json_response(self.state.rotate_key(body.get("old_key"), body.get("new_key")))  # type: ignore[arg-type]

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"reset": True})

    async def forget_jobs(self, request: web.Request) -> web.Response:
        self.state.forget_jobs()
        return web.json_response({"forgotten": True})

    async def create_jobs(self, request: web.Request) -> web.Response:
        """Synthetic jobs (see :meth:`SandboxState.create_synthetic_jobs`). Returns ``{"job_ids": [...]}``."""
        body = await _json_object(request)
        unknown = set(body) - {"api_key", "count", "complete_after_seconds", "status", "result_bytes"}
        if unknown:
            raise AdminError(f"unknown fields: {sorted(unknown)}")
        job_ids = self.state.create_synthetic_jobs(
            **body,
            original_url=f"{self.server.public_base_url(request)}/samples/portrait.jpg",
            sample_path=self.server.sample_path("portrait.jpg"),
        )
        return web.json_response({"job_ids": job_ids})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        """``GET /admin/blob?bytes=N``: N deterministic bytes, streamed."""
        try:
            size = int(request.query.get("bytes", ""))
        except ValueError:
            raise AdminError("bytes must be a whole number") from None
        if not 0 <= size <= MAX_BLOB_BYTES:
            raise AdminError(f"bytes must be in [0, {MAX_BLOB_BYTES}]")
        return BlobResponse(size)
