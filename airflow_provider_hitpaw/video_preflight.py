"""The checks on a video before paying: its duration and size from its container's header, and HitPaw's
price for it against ``max_coins``.

HitPaw bills a video per second of its result, at a rate set by the result's resolution and the frame
rate (``docs/get-started/pricing.md`` of HitPaw's public developer documentation), and refuses one
shorter than 0.5 s or longer than an hour (``docs/enhance/video-enhancement.md``). A wrong submission
costs far more than a photo's, so the header is read first: with PyAV (the optional extra ``video``),
which reads the container's header and index and decodes no frame.

A URL is read through ranged GETs (the index of an MP4 file is often at its end), at most
:data:`MAX_READ_BYTES` in :data:`MAX_REQUESTS` requests, the whole within twice the connection's
``connect_timeout + read_timeout``, never with the API key. A local file (``video_path``) is read
before its upload. When the header cannot be read (no PyAV, a host that does not answer, a container
PyAV does not know) the preflight is skipped with a log line: HitPaw refuses a video it cannot read
without charging for it.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_hitpaw import video_header
from airflow_provider_hitpaw.contract.catalog import (
    VIDEO_MAX_DURATION_SECONDS,
    VIDEO_MIN_DURATION_SECONDS,
    get_model,
)
from airflow_provider_hitpaw.contract.pricing import (
    UnpricedModelError,
    billed_seconds,
    estimate_video_coins,
    video_coins_per_second,
)
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks import sync_transport
from airflow_provider_hitpaw.hooks.transport import IDENTITY_HEADERS
from airflow_provider_hitpaw.preflight import check_within_max_coins
from airflow_provider_hitpaw.video_header import UnreadableVideoError, VideoHeader

if TYPE_CHECKING:
    import requests

    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

log = logging.getLogger(__name__)

#: The most read of one video over all its ranges.
MAX_READ_BYTES = 16 * 1024 * 1024
#: The most ranged requests for one video.
MAX_REQUESTS = 32
#: The smallest range asked for.
BLOCK_BYTES = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*\Z", re.IGNORECASE)
_FASTEST = 120.0  # fps: the price tables' last column


class PreflightSkipped(UnreadableVideoError):
    """The video's header could not be read; the message says why (for the log)."""


def read_video_header(handle: IO[bytes] | io.RawIOBase) -> VideoHeader:
    """Read a video's size, frame rate and duration from an open file, without decoding a frame
    (:func:`airflow_provider_hitpaw.video_header.read_video_header`, the sandbox's reading too).

    :raises PreflightSkipped: without PyAV, or when the file is no video it can read.
    """
    try:
        return video_header.read_video_header(handle)
    except ImportError:
        raise PreflightSkipped(
            "PyAV is not installed (pip install 'airflow-provider-hitpaw[video]')"
        ) from None
    except PreflightSkipped:
        raise
    except UnreadableVideoError as err:
        raise PreflightSkipped(str(err)) from None


class RangedReader(io.RawIOBase):
    """A seekable, read-only file over an http(s) URL, read in ranges (``Range: bytes=a-b``).

    A host that ignores ranges (HTTP 200) is read whole, if the file is at most :data:`MAX_READ_BYTES`.

    :param session: a session of :func:`~airflow_provider_hitpaw.hooks.sync_transport.new_session`.
    :param url: the video's URL.
    :param current: the exchange whose deadline bounds every read.
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds allowed for each read.
    """

    def __init__(
        self,
        session: requests.Session,
        url: str,
        current: sync_transport.Exchange,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        super().__init__()
        self._session, self._url, self._current = session, url, current
        self._timeouts = (connect_timeout, read_timeout)
        self._blocks: dict[int, bytes] = {}
        self._whole: bytes | None = None  # the file, from a host that ignores ranges
        self._position = 0
        self.size: int | None = None
        self.bytes_read = 0
        self.requests_made = 0
        self._fetch(0)  # learns the size; fails early for a host without ranges

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        assert self.size is not None
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        assert self.size is not None
        view = memoryview(buffer).cast("B")
        if self._position >= self.size or not len(view):
            return 0
        if self._whole is not None:
            start, block = 0, self._whole
        else:
            start, block = self._block_at(self._position)
        offset = self._position - start
        count = min(len(view), len(block) - offset)
        if count <= 0:
            return 0
        view[:count] = block[offset : offset + count]
        self._position += count
        return count

    def _block_at(self, position: int) -> tuple[int, bytes]:
        """A block read earlier that holds ``position``, else a new one starting there. A host may answer
        a shorter range than asked for: blocks are kept by where they start and what they hold."""
        for start, block in self._blocks.items():
            if start <= position < start + len(block):
                return start, block
        return position, self._fetch(position)

    def _fetch(self, start: int) -> bytes:
        """Up to :data:`BLOCK_BYTES` from ``start`` on."""
        if self.requests_made >= MAX_REQUESTS or self.bytes_read >= MAX_READ_BYTES:
            raise PreflightSkipped(
                f"the header was not found within {self.requests_made} ranges and {self.bytes_read} bytes"
            )
        self.requests_made += 1
        end = start + BLOCK_BYTES - 1
        headers = {**IDENTITY_HEADERS, "Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
        with self._session.get(
            self._url, headers=headers, stream=True, timeout=self._timeouts, allow_redirects=True
        ) as response:
            if response.status_code == 200 and start == 0:
                self._whole = self._read_body(response, MAX_READ_BYTES + 1)
                if len(self._whole) > MAX_READ_BYTES:
                    raise PreflightSkipped(f"the video's host ignores ranges and the file is over {MAX_READ_BYTES} bytes")
                self.size = self.bytes_read = len(self._whole)
                return self._whole
            if response.status_code != 206:
                raise PreflightSkipped(f"the video's host answered HTTP {response.status_code} to a range request")
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != start or match.group(3) == "*":
                raise PreflightSkipped("the video's host answered a range it was not asked for")
            self.size = int(match.group(3))
            data = self._read_body(response, min(end, self.size - 1) - start + 1)
        if not data:
            raise PreflightSkipped("the video's host answered an empty range")
        self.bytes_read += len(data)
        self._blocks[start] = data
        return data

    def _read_body(self, response: requests.Response, limit: int) -> bytes:
        """Up to ``limit`` bytes of a reply's body, as they are on the wire, within the deadline."""
        data = bytearray()
        while len(data) < limit:
            chunk = response.raw.read1(min(64 * 1024, limit - len(data)), decode_content=False)
            self._current.check_time()
            if not chunk:
                break
            data += chunk
        return bytes(data)


def url_video_header(hook: HitPawHook, video_url: str) -> VideoHeader | None:
    """A video's header read over ranged GETs with ``hook``'s session and timeouts, or None (logged)
    when it cannot be read. Never sends the API key: the video's host is not HitPaw."""
    settings = hook.settings
    budget = 2 * (settings.connect_timeout + settings.read_timeout)
    with sync_transport.exchange(budget) as current:
        try:
            reader = RangedReader(
                hook.session, video_url, current,
                connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
            )
            return read_video_header(reader)
        except PreflightSkipped as skipped:
            hook.log.warning("Preflight skipped, the video is submitted unchecked: %s", skipped)
        except Exception as err:
            reason = sync_transport.classify(err, current).reason
            hook.log.warning("Preflight skipped, the video is submitted unchecked: %s", reason)
    return None


def file_video_header(path: Any) -> VideoHeader | None:
    """A local video's header (a local path, a ``file:`` URI or an ``ObjectStoragePath``), read before
    its upload; None (logged) when it cannot be read."""
    from airflow_provider_hitpaw.uploads import open_source

    source = open_source(path)
    try:
        with source.opener() as handle:
            return read_video_header(handle)
    except PreflightSkipped as skipped:
        log.warning("Preflight skipped, the video is submitted unchecked: %s: %s", source.label[:200], skipped)
        return None


def check_video_duration(header: VideoHeader) -> None:
    """Refuse a video shorter than 0.5 s or longer than an hour (HitPaw's limits, code 110400011).

    :raises HitPawValidationError: before anything is sent.
    """
    if not VIDEO_MIN_DURATION_SECONDS <= header.duration <= VIDEO_MAX_DURATION_SECONDS:
        raise HitPawValidationError(
            f"The video lasts {header.duration:.3f} s; HitPaw takes {VIDEO_MIN_DURATION_SECONDS:g} s to "
            f"{VIDEO_MAX_DURATION_SECONDS / 3600:g} hour: it would refuse it. Nothing was sent."
        )


@dataclass(frozen=True)
class VideoPreflightResult:
    """What the checks before paying found.

    :param header: the video's size, rate and duration, or None when not read.
    :param estimated_coins: HitPaw's price for the job, or None when it cannot be told.
    """

    header: VideoHeader | None
    estimated_coins: int | None


def check_video_before_paying(
    hook: HitPawHook,
    video_url: str,
    model_name: str,
    resolution: list[int],
    *,
    preflight: bool = True,
    max_coins: int | None = None,
    logger: Any = None,
    header: VideoHeader | None = None,
) -> VideoPreflightResult:
    """The video's duration against HitPaw's limits, and its price against ``max_coins``.

    With ``preflight`` the header is read (:func:`url_video_header`; or ``header``, already read from a
    local file by :func:`file_video_header`) and a video too short or too long refused. The estimate
    (:func:`~airflow_provider_hitpaw.contract.pricing.estimate_video_coins`: the result's resolution
    and the source's frame rate, per second of the source's duration) is logged. With ``max_coins``, a
    job whose estimate is over it is refused; so is one whose price cannot be told (preflight off or
    skipped) when an hour at 120 fps would be over it, and one of a model with no published price.

    :raises HitPawValidationError: before anything is sent to HitPaw.
    """
    logger = logger or log
    width, height = resolution
    if preflight and header is None:
        header = url_video_header(hook, video_url)
    elif not preflight:
        header = None
    estimate: int | None = None
    unpriced: str | None = None
    if header is not None:
        check_video_duration(header)
        try:
            estimate = estimate_video_coins(model_name, width, height, header.fps, header.duration)
        except UnpricedModelError as err:
            unpriced = str(err)
        logger.info(
            "Preflight: the video is %d x %d, %.3f s at %.3g fps; %s makes it %d x %d: HitPaw's price is %s",
            header.width, header.height, header.duration, header.fps, model_name, width, height,
            f"{estimate} coins ({billed_seconds(header.duration)} s)" if estimate is not None else "not published",
        )
    if max_coins is None:
        return VideoPreflightResult(header, estimate)
    if estimate is not None:
        check_within_max_coins(estimate, max_coins)
        return VideoPreflightResult(header, estimate)
    spec = get_model(model_name, video=True)
    try:
        if spec is None or unpriced is not None:
            raise UnpricedModelError(unpriced or "unknown model")
        worst = video_coins_per_second(spec.pricing, width, height, _FASTEST) * int(VIDEO_MAX_DURATION_SECONDS)
    except UnpricedModelError:
        raise HitPawValidationError(
            f"No price is known for a {width} x {height} result of model {model_name[:64]!r}, so "
            f"max_coins={max_coins} cannot be guaranteed. Nothing was sent."
        ) from None
    if worst > max_coins:
        raise HitPawValidationError(
            f"The video's duration could not be read, and a {width} x {height} {model_name!r} job can cost "
            f"up to {worst} coins (an hour at 120 fps), over max_coins={max_coins}. Nothing was sent."
        )
    return VideoPreflightResult(header, None)
