"""HitPaw's API as the sandbox serves it: photo and video submissions, task status, result files."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from airflow_provider_hitpaw.contract.catalog import (
    VIDEO_MAX_DURATION_SECONDS,
    VIDEO_MIN_DURATION_SECONDS,
    ModelSpec,
    get_model,
)
from airflow_provider_hitpaw.contract.endpoints import API_KEY_HEADER
from airflow_provider_hitpaw.contract.pricing import (
    PRICE_TIERS,
    UnpricedModelError,
    coins_for_output,
    estimate_video_coins,
)
from airflow_provider_hitpaw.sandbox import imaging, replies, video
from airflow_provider_hitpaw.sandbox.fetch import FetchError, fetch_bytes
from airflow_provider_hitpaw.sandbox.jobs import COMPLETED, ERROR, Job
from airflow_provider_hitpaw.sandbox.state import SubmissionRecord
from airflow_provider_hitpaw.video_header import UnreadableVideoError

if TYPE_CHECKING:
    from airflow_provider_hitpaw.sandbox.server import SandboxServer

log = logging.getLogger(__name__)

MAX_URL_CHARS = 8192
MAX_DPI = 10_000
DEFAULT_VIDEO_EXTENSION = "mp4"
_BLOB_CHUNK = bytes(range(256)) * 256  # 64 KiB; byte i of any blob is i % 256

#: Key of the request's :class:`SubmissionRecord`, for the fault middleware.
RECORD_KEY: Any = (
    web.RequestKey("hitpaw_submission", SubmissionRecord)
    if hasattr(web, "RequestKey")  # aiohttp >= 3.12
    else "hitpaw_submission"
)


class RequestRefused(Exception):
    """A request the API answers with one of its error codes."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class PhotoRequest:
    model_name: str
    img_url: str
    extension: str
    exif: bool
    dpi: int | None


@dataclass(frozen=True)
class VideoRequest:
    model_name: str
    video_url: str
    extension: str
    width: int
    height: int


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_photo_request(body: dict[str, Any]) -> PhotoRequest:
    """Check the field types of a photo submission (the values are checked later, one by one).

    :raises RequestRefused: 100400002 for a missing field, a wrong type or a DPI outside
        [1, 10000].
    """
    model_name, img_url, extension = (body.get(k) for k in ("model_name", "img_url", "extension"))
    exif, dpi = body.get("exif"), body.get("DPI")
    if not all(isinstance(v, str) for v in (model_name, img_url, extension)):
        raise RequestRefused(replies.BAD_REQUEST)
    if exif is not None and not isinstance(exif, bool):
        raise RequestRefused(replies.BAD_REQUEST)
    if dpi is not None and (not _is_int(dpi) or not 1 <= dpi <= MAX_DPI):
        raise RequestRefused(replies.BAD_REQUEST)
    return PhotoRequest(model_name, img_url, extension, bool(exif), dpi)  # type: ignore[arg-type]


def parse_video_request(body: dict[str, Any]) -> VideoRequest:
    """Check the field types of a video submission.

    :raises RequestRefused: 100400002 for a missing field or a wrong type.
    """
    model_name, video_url = body.get("model_name"), body.get("video_url")
    extension = body.get("extension", "." + DEFAULT_VIDEO_EXTENSION)
    resolution = body.get("resolution")
    if not all(isinstance(v, str) for v in (model_name, video_url, extension)):
        raise RequestRefused(replies.BAD_REQUEST)
    if (
        not isinstance(resolution, list)
        or len(resolution) != 2
        or not all(_is_int(v) and v > 0 for v in resolution)
    ):
        raise RequestRefused(replies.BAD_REQUEST)
    return VideoRequest(model_name, video_url, extension, resolution[0], resolution[1])  # type: ignore[arg-type]


def output_extension(extension: str, spec: ModelSpec) -> str:
    """The extension without its dot, lower case, if the model can write it.

    :raises RequestRefused: 110400007 otherwise.
    """
    ext = extension.lower()
    ext = ext[1:] if ext.startswith(".") else ext
    if ext not in spec.output_formats:
        raise RequestRefused(replies.EXTENSION_NOT_VALID)
    return ext


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host."""
    if len(url) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object.

    :raises RequestRefused: 100400002 for anything else (or a body over the size limit).
    """
    try:
        raw = await request.read()
        body = json.loads(raw.decode("utf-8"))
    except (web.HTTPRequestEntityTooLarge, ValueError, UnicodeDecodeError, RecursionError):
        raise RequestRefused(replies.BAD_REQUEST) from None
    if not isinstance(body, dict):
        raise RequestRefused(replies.BAD_REQUEST)
    return body


class BlobResponse(web.StreamResponse):
    """``size`` deterministic bytes (byte i is ``i % 256``), streamed in 64 KiB chunks.

    The body is written when the response is finished rather than in the handler, so that the
    fault middleware can still drop or delay it.
    """

    def __init__(self, size: int) -> None:
        super().__init__(headers={"Content-Type": "application/octet-stream"})
        self.content_length = size
        self._size = size

    async def write_eof(self, data: bytes = b"") -> None:
        remaining, chunk = self._size, memoryview(_BLOB_CHUNK)
        while remaining > 0:
            n = min(remaining, len(chunk))
            await self.write(chunk[:n])
            remaining -= n
        await super().write_eof(data)


class ApiRoutes:
    """The handlers of ``/api/*`` and ``/results/*``.

    :param server: the server whose state, session, worker pool and base URL they use.
    """

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.state = server.state

    def add_to(self, app: web.Application) -> None:
        from airflow_provider_hitpaw.contract.endpoints import (
            PHOTO_ENHANCER_PATH,
            TASK_STATUS_PATH,
            VIDEO_ENHANCER_PATH,
        )

        app.router.add_post(PHOTO_ENHANCER_PATH, self._refusals(self.photo_enhancer))
        app.router.add_post(VIDEO_ENHANCER_PATH, self._refusals(self.video_enhancer))
        app.router.add_post(TASK_STATUS_PATH, self._refusals(self.task_status))
        app.router.add_get("/results/{job_id}/{name}", self.result_file)

    def _refusals(self, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
                return response
            except RequestRefused as refused:
                return replies.error(refused.code, self.state.error_shape)

        return wrapped

    def _owner(self, request: web.Request) -> str:
        owner = self.state.ledger.owner_id(request.headers.get(API_KEY_HEADER))
        if owner is None:
            raise RequestRefused(replies.INVALID_API_KEY)
        return owner

    def _charge(
        self, request: web.Request, spec: ModelSpec, output_pixels: int | None = None, video_coins: int | None = None
    ) -> int:
        """Charge the key for one job: a flat price given in the config, else (a photo) HitPaw's
        price for a result of ``output_pixels`` pixels, or (a video) ``video_coins``.

        :raises RequestRefused: 110402000 when the balance is short (nothing is charged).
        """
        flat = self.state.config.prices.get(spec.name)
        if flat is not None:
            coins = int(flat)
        elif video_coins is not None:
            coins = video_coins
        elif output_pixels is not None and spec.pricing in PRICE_TIERS:
            coins = coins_for_output(spec.pricing, output_pixels)
        else:
            coins = 0
        if not self.state.ledger.try_charge(request.headers[API_KEY_HEADER], coins):
            raise RequestRefused(replies.COINS_NOT_ENOUGH)
        return coins

    def _new_job(
        self, request: web.Request, owner: str, url: str, model_name: str, coins: int, result_name: str
    ) -> Job:
        job = Job(
            job_id=str(uuid.uuid4()),
            owner=owner,
            original_url=url,
            started=time.monotonic(),
            duration=self.state.job_seconds,
            result_name=result_name,
        )
        if self.state.faults.roll_fail_job():
            job.final_status = self.state.faults.config.fail_job_status
        self.state.jobs.add(job)
        self.state.job_started(job)
        record = SubmissionRecord(job.job_id, owner, url, model_name, coins, time.time())
        self.state.record_submission(record)
        request[RECORD_KEY] = record
        return job

    async def photo_enhancer(self, request: web.Request) -> web.Response:
        owner = self._owner(request)
        photo = parse_photo_request(await read_json_object(request))
        spec = get_model(photo.model_name, video=False)
        if spec is None:
            raise RequestRefused(replies.MODEL_NOT_SUPPORTED)
        ext = output_extension(photo.extension, spec)
        if not is_http_url(photo.img_url):
            raise RequestRefused(replies.INVALID_URL)
        config = self.state.config
        try:
            data = await fetch_bytes(
                self.server.client_session,
                photo.img_url,
                timeout=config.fetch_timeout,
                max_bytes=config.max_fetch_bytes,
            )
            # Header parsing only, but on untrusted bytes: kept off the event loop.
            info = await asyncio.to_thread(imaging.probe_image, data)
        except (FetchError, imaging.NotAnImageError):
            raise RequestRefused(replies.INVALID_URL) from None
        if math.isinf(info.megapixels):  # a header too large for Pillow: over every limit
            raise RequestRefused(
                replies.INPUT_RESOLUTION_OVER_LIMIT
                if spec.max_input_pixels is not None
                else replies.TARGET_RESOLUTION_OVER_LIMIT
            )
        input_pixels = info.width * info.height
        if spec.max_input_pixels is not None and input_pixels > spec.max_input_pixels:
            raise RequestRefused(replies.INPUT_RESOLUTION_OVER_LIMIT)
        output_pixels = input_pixels * spec.scale**2
        output_megapixels = output_pixels / 1_000_000
        if output_pixels > spec.max_output_pixels:
            raise RequestRefused(replies.TARGET_RESOLUTION_OVER_LIMIT)
        coins = self._charge(request, spec, output_pixels)
        job = self._new_job(request, owner, photo.img_url, photo.model_name, coins, f"result.{ext}")
        if job.final_status == COMPLETED and output_megapixels > config.max_work_megapixels:
            log.warning(
                "job %s: a %.0f MP result is over the sandbox's max_work_megapixels; it ends in ERROR",
                job.job_id,
                output_megapixels,
            )
            job.final_status = ERROR
        if job.final_status == COMPLETED:
            job.result_path = self.state.job_dir(job.job_id) / job.result_name
            work = partial(
                imaging.enhance_image,
                data,
                job.result_path,
                model_name=spec.name,
                model_kind=spec.kind.value,
                scale=spec.scale,
                extension=ext,
                keep_exif=photo.exif,
                dpi=photo.dpi,
            )
            self.server.run_job_work(job, work)
        return replies.ok({"job_id": job.job_id, "consume_coins": coins})

    async def video_enhancer(self, request: web.Request) -> web.Response:
        """A video job: fetched, read and refused as HitPaw does, charged per output second, then
        scaled for real (:mod:`.video`)."""
        owner = self._owner(request)
        clip = parse_video_request(await read_json_object(request))
        spec = get_model(clip.model_name, video=True)
        if spec is None:
            raise RequestRefused(replies.MODEL_NOT_SUPPORTED)
        ext = output_extension(clip.extension, spec)
        if clip.width * clip.height > spec.max_output_pixels:
            raise RequestRefused(replies.TARGET_RESOLUTION_OVER_LIMIT)
        if not is_http_url(clip.video_url):
            raise RequestRefused(replies.VIDEO_URL_NOT_VALID)
        config = self.state.config
        try:
            data = await fetch_bytes(
                self.server.client_session, clip.video_url, timeout=config.fetch_timeout, max_bytes=config.max_fetch_bytes
            )
            info = await asyncio.to_thread(video.probe_video, data)  # header only, on untrusted bytes
        except (FetchError, UnreadableVideoError, video.PyAVMissingError) as err:
            log.info("sandbox: video %s refused: %s", clip.video_url[:200], err)
            raise RequestRefused(replies.VIDEO_URL_NOT_VALID) from None
        if not VIDEO_MIN_DURATION_SECONDS <= info.duration <= VIDEO_MAX_DURATION_SECONDS:
            raise RequestRefused(replies.VIDEO_DURATION_OVER_LIMIT)
        try:
            price = estimate_video_coins(spec.name, clip.width, clip.height, info.fps, info.duration)
        except (UnpricedModelError, ValueError):  # no published price (generative over 4K)
            raise RequestRefused(replies.TARGET_RESOLUTION_OVER_LIMIT) from None
        coins = self._charge(request, spec, video_coins=price)
        job = self._new_job(request, owner, clip.video_url, clip.model_name, coins, f"result.{ext}")
        megapixels = clip.width * clip.height / 1_000_000
        work = megapixels * info.duration * info.fps  # megapixels x frames
        if job.final_status == COMPLETED and (
            megapixels > config.max_work_megapixels or work > video.MAX_WORK_MEGAPIXEL_FRAMES
        ):
            log.warning("job %s: a %.0f MP video of %.0f frames is over the sandbox's work limits; it ends in ERROR",
                        job.job_id, megapixels, info.duration * info.fps)
            job.final_status = ERROR
        if job.final_status == COMPLETED:
            job.result_path = self.state.job_dir(job.job_id) / job.result_name
            self.server.run_job_work(job, partial(
                video.enhance_video, data, job.result_path, width=clip.width, height=clip.height, extension=ext
            ))
        else:
            job.work_done = True
            self.state.work_ended(job)
        return replies.ok({"job_id": job.job_id, "consume_coins": coins})

    async def task_status(self, request: web.Request) -> web.Response:
        owner = self._owner(request)
        job_id = (await read_json_object(request)).get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise RequestRefused(replies.BAD_REQUEST)
        job = self.state.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise RequestRefused(replies.TASK_NOT_FOUND)
        status = job.status()
        res_url = ""
        if status == COMPLETED:
            res_url = f"{self.server.public_base_url(request)}/results/{job.job_id}/{job.result_name}"
        return replies.ok(
            {"job_id": job.job_id, "status": status, "res_url": res_url, "original_url": job.original_url}
        )

    async def result_file(self, request: web.Request) -> web.StreamResponse:
        """A COMPLETED job's result, streamed from disk (or generated, for a synthetic job).

        404 once the result's lifetime is over, as HitPaw's links do once its outputs are deleted.
        """
        job = self.state.jobs.get(request.match_info["job_id"])
        if job is None or request.match_info["name"] != job.result_name or job.status() != COMPLETED:
            raise web.HTTPNotFound()
        if self.state.result_expired(job):
            raise web.HTTPNotFound()
        if job.result_bytes is not None:
            return BlobResponse(job.result_bytes)
        if job.result_path is None or not job.result_path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            job.result_path, headers={"Content-Type": imaging.content_type_for(job.result_name)}
        )
