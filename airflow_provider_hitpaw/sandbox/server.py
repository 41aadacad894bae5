"""The sandbox's aiohttp server: routes, fault middleware, worker pool and lifecycle."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from airflow_provider_hitpaw.sandbox import imaging, replies, video, workdirs
from airflow_provider_hitpaw.sandbox.admin_routes import AdminRoutes
from airflow_provider_hitpaw.sandbox.api_routes import RECORD_KEY, ApiRoutes
from airflow_provider_hitpaw.sandbox.config import SandboxConfig
from airflow_provider_hitpaw.sandbox.faults import Fault
from airflow_provider_hitpaw.sandbox.jobs import Job
from airflow_provider_hitpaw.sandbox.state import SandboxState
from airflow_provider_hitpaw.sandbox.uploads import UploadRoutes

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).parent / "samples"
_GENERATED_SAMPLES: dict[str, tuple[Callable[[], bytes], str]] = {
    "landscape.png": (imaging.landscape_png, "image/png"),
    "exif.jpg": (imaging.exif_jpeg, "image/jpeg"),
    "huge.png": (imaging.huge_png, "image/png"),
}
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - recognising a wildcard, not binding one
_GATEWAY_STATUSES = (500, 502, 503)
# Seconds left to handlers in flight (such as a "slow" reply) when the server stops.
_SHUTDOWN_TIMEOUT = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SandboxServer:
    """One sandbox HTTP server, run on the current event loop.

    :param config: its settings.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # Named after this process, so that a later sandbox removes it if this one is killed.
        self._tmpdir = workdirs.make_owned_dir()
        self.state = SandboxState(config, self._tmpdir / "results")
        self.state.results_dir.mkdir()
        self.port: int | None = None
        self.client_session: aiohttp.ClientSession = None  # type: ignore[assignment]
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix="hitpaw-sandbox")
        self._runner: web.AppRunner | None = None
        self._samples: dict[str, asyncio.Future[bytes]] = {}
        self._categories: dict[str, str] = {}
        self._stopped = False
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving.

        :raises imaging.PillowMissingError: when Pillow is not installed.
        :raises OSError: when the address cannot be bound.
        """
        imaging.require_pillow()
        self.client_session = aiohttp.ClientSession(trust_env=False)
        self._runner = web.AppRunner(
            self._build_app(),
            access_log=logging.getLogger("aiohttp.access") if self.config.access_log else None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Stop serving, end the worker threads and delete the result files. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._sweeper is not None:
                self._sweeper.cancel()
                await asyncio.gather(self._sweeper, return_exceptions=True)
            if self._runner is not None:
                await self._runner.cleanup()
            if self.client_session is not None:
                await self.client_session.close()
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    @property
    def listen_url(self) -> str:
        """``http://host:port`` of the bound address."""
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL clients use: ``public_base_url``, else the bound address (loopback for a wildcard)."""
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        if self.config.host in _WILDCARD_HOSTS:
            return f"http://127.0.0.1:{self.port}"
        return self.listen_url

    def public_base_url(self, request: web.Request) -> str:
        """Base of the links handed to a client (``res_url``)."""
        if not self.config.public_base_url and self.config.host in _WILDCARD_HOSTS:
            return f"{request.scheme}://{request.host}"
        return self.base_url

    def sample_path(self, name: str) -> Path:
        return SAMPLES_DIR / name

    # -- result lifetime ------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete the results whose lifetime is over (files and paths). Returns how many."""
        folders = self.state.sweep_expired()
        if folders:
            await asyncio.to_thread(_remove_folders, folders)
        return len(folders)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.state.sweep_interval())
            try:
                await self.sweep()
            except Exception:
                log.exception("sandbox: sweeping expired results failed")

    # -- work -----------------------------------------------------------------------------------

    def run_job_work(self, job: Job, work: Callable[[], Any]) -> None:
        """Run a job's Pillow work in the worker pool and mark the job when it is done."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        future.add_done_callback(partial(_work_finished, self.state, job))

    # -- application ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        from airflow_provider_hitpaw.contract.endpoints import (
            PHOTO_ENHANCER_PATH,
            TASK_STATUS_PATH,
            VIDEO_ENHANCER_PATH,
        )

        app = web.Application(middlewares=[self._middleware])
        ApiRoutes(self).add_to(app)
        UploadRoutes(self, self.state.uploads).add_to(app)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/samples/{name}", self._sample)
        if self.config.admin_enabled:
            AdminRoutes(self).add_to(app)
        self._categories = {
            PHOTO_ENHANCER_PATH: "submit",
            VIDEO_ENHANCER_PATH: "submit",
            TASK_STATUS_PATH: "status",
            "/results/{job_id}/{name}": "result",
            **UploadRoutes.CATEGORIES,
        }
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        label = f"{request.method} {path}" if path else "other"
        outcome = "500"
        try:
            response, outcome = await self._serve(request, handler, self._categories.get(path or ""))
            return response
        except web.HTTPException as exc:
            outcome = str(exc.status)
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            log.exception("sandbox: unexpected failure while serving %s", label)
            return replies.error(replies.INTERNAL_ERROR, self.state.error_shape)
        finally:
            self.state.requests_by_endpoint[label] += 1
            self.state.requests_by_status[outcome] += 1

    async def _serve(
        self, request: web.Request, handler: Handler, category: str | None
    ) -> tuple[web.StreamResponse, str]:
        """Serve one request with the faults it draws. Returns the response and its outcome label."""
        faults = self.state.faults
        if category is None:
            response = await handler(request)
            return response, str(response.status)
        limited = category not in ("result", "upload") and (category != "status" or faults.config.rate_limit_status)
        if limited and faults.rate_limited():  # the API's limit only
            return replies.too_many_requests(self.state.error_shape), "429"
        before = faults.roll_before(category)
        if before is Fault.ERROR_5XX:
            status = _GATEWAY_STATUSES[faults.injected[Fault.ERROR_5XX.value] % len(_GATEWAY_STATUSES)]
            return replies.gateway_error(status), str(status)
        if before is Fault.RATE_429:
            return replies.too_many_requests(self.state.error_shape), "429"
        if before is Fault.DROP:
            return _drop_connection(request), "dropped"

        response = await handler(request)
        after = faults.roll_after(category)
        if after is Fault.DROP_AFTER:
            _mark_undelivered(request)
            return _drop_connection(request), "dropped"
        if after is Fault.SLOW:
            await asyncio.sleep(faults.config.slow_seconds)
            if request.transport is None or request.transport.is_closing():
                _mark_undelivered(request)
        return response, str(response.status)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _sample(self, request: web.Request) -> web.StreamResponse:
        """``/samples/portrait.jpg`` from disk; ``landscape.png``, ``exif.jpg``, ``huge.png`` and the video
        clips (``clip.mp4``, ``clip-64x48-24fps-1000ms.mp4``...: :mod:`.video`) drawn once."""
        name = request.match_info["name"]
        generated = _GENERATED_SAMPLES.get(name) or video.sample_maker(name)
        if generated is not None:
            make, content_type = generated
            future = self._samples.get(name)
            if future is None:
                future = asyncio.get_running_loop().run_in_executor(self._executor, make)
                self._samples[name] = future
            try:
                body = await asyncio.shield(future)
            except Exception:
                self._samples.pop(name, None)
                raise
            return web.Response(body=body, content_type=content_type)
        path = SAMPLES_DIR / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": imaging.content_type_for(name)})


def _work_finished(state: SandboxState, job: Job, future: Future[Any] | asyncio.Future[Any]) -> None:
    if future.cancelled():
        job.work_failed = True
        return
    error = future.exception()
    if error is not None:
        log.warning("sandbox job %s: enhancement failed: %s", job.job_id, error)
        job.work_failed = True
    else:
        job.work_done = True
    state.work_ended(job)


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection with no reply; the response returned can no longer be written."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


def _mark_undelivered(request: web.Request) -> None:
    record = request.get(RECORD_KEY)
    if record is not None:
        record.reply_delivered = False
