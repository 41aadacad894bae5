"""The checks made on the photo itself before paying: its size, read from the first bytes of its file,
against the model's limits, and the price HitPaw will charge for it against a budget.

The size comes from the image header only (``imagesize``, no decoding): a ranged GET of the first
64 KiB (``Range: bytes=0-65535``), then further ranges while the header is not complete, never past
:data:`MAX_READ_BYTES` (1 MiB) in all. A host that ignores ranges and answers 200 with the whole file
is read up to that cap too, and the connection closed. Everything goes through the sync hook's
transport, so the whole preflight, however slowly the host sends, ends within the connection's
``connect_timeout + read_timeout``; only identity headers are sent, never the API key.

When the size cannot be told (the host does not answer in time, answers an error, the file is no
image imagesize knows or its header lies past the cap) the preflight is skipped with a log line and
the photo is submitted anyway: HitPaw refuses a photo it cannot fetch or that is too large without
charging for it.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_hitpaw.contract.catalog import ModelSpec, get_model
from airflow_provider_hitpaw.contract.pricing import UnpricedModelError, estimate_coins, highest_coins
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks import sync_transport
from airflow_provider_hitpaw.hooks.transport import IDENTITY_HEADERS

if TYPE_CHECKING:
    import requests

    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

log = logging.getLogger(__name__)

#: The first range asked for: enough for the header of nearly every photo (a JPEG with a large EXIF
#: thumbnail or ICC profile before its frame header needs more).
FIRST_READ_BYTES = 64 * 1024
#: The most read from one photo, over all its ranges (or of a host's whole-file answer).
MAX_READ_BYTES = 1024 * 1024
#: The most requests for one photo (a host answering ranges a few bytes at a time).
MAX_REQUESTS = 16
_CHUNK = 16 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*\Z", re.IGNORECASE)


class PreflightSkipped(Exception):
    """The photo's size could not be told; ``reason`` says why (for the log)."""


def dimensions_from_header(data: bytes | bytearray) -> tuple[int, int] | None:
    """``(width, height)`` from the first bytes of an image file, or None while they do not tell.

    The stored size, before any EXIF rotation (which does not change the pixel count).
    """
    import imagesize

    try:
        width, height = imagesize.get(io.BytesIO(bytes(data)), exif_rotation=False)
    except Exception:  # a malformed header: imagesize raises struct.error, ValueError...
        return None
    if width > 0 and height > 0:
        return int(width), int(height)
    return None


def read_photo_dimensions(
    session: requests.Session,
    url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    first_bytes: int = FIRST_READ_BYTES,
    max_bytes: int = MAX_READ_BYTES,
) -> tuple[int, int]:
    """Read a photo's ``(width, height)`` from the first bytes of its file.

    :param session: a session of :func:`~airflow_provider_hitpaw.hooks.sync_transport.new_session`.
    :param url: the photo's http(s) URL (already checked).
    :param connect_timeout: seconds to open a connection; with ``read_timeout``, the limit of the
        whole preflight.
    :param read_timeout: seconds allowed for each read.
    :param first_bytes: size of the first range asked for.
    :param max_bytes: the most read in all.
    :raises PreflightSkipped: when the size cannot be told, with the reason.
    """
    data = bytearray()
    requests_made = 0
    with sync_transport.exchange(connect_timeout + read_timeout) as current:
        try:
            while len(data) < max_bytes:
                start = len(data)
                end = min(start + (first_bytes if start == 0 else 2 * start), max_bytes) - 1
                headers = {**IDENTITY_HEADERS, "Range": f"bytes={start}-{end}"}
                with session.get(
                    url, headers=headers, stream=True, timeout=(connect_timeout, read_timeout), allow_redirects=True
                ) as response:
                    if response.status_code == 206:
                        total = _check_range(response.headers.get("Content-Range"), start)
                        limit = end + 1
                    elif response.status_code == 200:  # ranges ignored: the whole file, read up to the cap
                        data.clear()
                        total, limit = None, max_bytes
                    elif response.status_code == 416:  # past the end of the file
                        break
                    else:
                        raise PreflightSkipped(f"the photo's host answered HTTP {response.status_code}")
                    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                    if encoding not in ("", "identity"):
                        raise PreflightSkipped(f"the photo's host sent it {encoding}-encoded")
                    while len(data) < limit:
                        chunk = response.raw.read1(min(_CHUNK, limit - len(data)), decode_content=False)
                        current.check_time()
                        if not chunk:
                            break
                        data += chunk
                        size = dimensions_from_header(data)
                        if size is not None:
                            return size
                    current.check_time()  # a reply cut by the watchdog can look complete
                    requests_made += 1
                    if response.status_code == 200 or len(data) == start or requests_made >= MAX_REQUESTS:
                        break
                    if total is not None:  # a shorter range than asked for is read on, to the end
                        if len(data) >= total:
                            break
                    elif len(data) < limit:  # size unknown and a short answer: the end of the file
                        break
        except PreflightSkipped:
            raise
        except Exception as err:
            raise PreflightSkipped(sync_transport.classify(err, current).reason) from None
    raise PreflightSkipped(f"no image header imagesize can read in the first {len(data)} bytes")


def _check_range(content_range: str | None, start: int) -> int | None:
    """The file's total size from a 206 reply's ``Content-Range`` (None when ``*``).

    :raises PreflightSkipped: for a missing range, or one that does not start where asked.
    """
    match = _CONTENT_RANGE.match((content_range or "").strip())
    if match is None or int(match.group(1)) != start:
        raise PreflightSkipped(f"the photo's host answered a range it was not asked for ({content_range!r:.60})")
    return None if match.group(3) == "*" else int(match.group(3))


def photo_dimensions(hook: HitPawHook, img_url: str) -> tuple[int, int] | None:
    """A photo's ``(width, height)`` read with ``hook``'s session and timeouts, or None (logged) when
    it cannot be told. Never sends the API key: the photo's host is not HitPaw."""
    settings = hook.settings
    try:
        return read_photo_dimensions(
            hook.session, img_url, connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout
        )
    except PreflightSkipped as skipped:
        hook.log.warning("Preflight skipped, the photo is submitted unchecked: %s", skipped)
        return None


def file_photo_dimensions(path: Any) -> tuple[int, int] | None:
    """A local photo's ``(width, height)`` from its first bytes (a local path, a ``file:`` URI or an
    ``ObjectStoragePath``), reading at most :data:`MAX_READ_BYTES`; None when they do not tell."""
    from airflow_provider_hitpaw.uploads import open_source

    source = open_source(path, photos_only=True)
    data = bytearray()
    with source.opener() as handle:
        while len(data) < MAX_READ_BYTES:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            data += chunk
            dimensions = dimensions_from_header(data)
            if dimensions is not None:
                return dimensions
    log.warning("Preflight skipped, the photo is submitted unchecked: %s has no size in its first bytes",
                source.label[:200])
    return None


def check_photo_size(spec: ModelSpec, width: int, height: int) -> None:
    """Refuse a photo over the model's input limit, or whose result would be over its output limit.

    :raises HitPawValidationError: saying which limit, before anything is sent.
    """
    pixels = width * height
    if spec.max_input_pixels is not None and pixels > spec.max_input_pixels:
        raise HitPawValidationError(
            f"The photo is {width} x {height} ({pixels / 1e6:.1f} MP), over the {spec.max_input_megapixels:g} MP "
            f"input limit of model {spec.name!r}: HitPaw would refuse it. Nothing was sent."
        )
    out_width, out_height = spec.output_size(width, height)
    if out_width * out_height > spec.max_output_pixels:
        raise HitPawValidationError(
            f"The photo is {width} x {height}: model {spec.name!r} would make it {out_width} x {out_height} "
            f"({out_width * out_height / 1e6:.1f} MP), over its {spec.max_output_megapixels:g} MP output "
            "limit: HitPaw would refuse it. Use a model of a smaller scale or a smaller photo. Nothing was sent."
        )


def check_within_max_coins(estimate: int, max_coins: int) -> None:
    """Refuse a job (photo or video) whose estimated price is over ``max_coins``.

    :raises HitPawValidationError: before anything is sent.
    """
    if estimate > max_coins:
        raise HitPawValidationError(
            f"This job would cost {estimate} coins, over max_coins={max_coins}. Nothing was sent."
        )


@dataclass(frozen=True)
class PreflightResult:
    """What the checks before paying found.

    :param dimensions: the photo's ``(width, height)``, or None when not read.
    :param estimated_coins: HitPaw's price for it, or None when it cannot be told.
    """

    dimensions: tuple[int, int] | None
    estimated_coins: int | None


def check_before_paying(
    hook: HitPawHook,
    img_url: str,
    model_name: str,
    *,
    preflight: bool = True,
    max_coins: int | None = None,
    logger: Any = None,
    dimensions: tuple[int, int] | None = None,
) -> PreflightResult:
    """The photo's size against its model's limits, and its price against ``max_coins``.

    With ``preflight`` the photo's header is read (:func:`photo_dimensions`; or ``dimensions``, already
    read from a local file by :func:`file_photo_dimensions`) and a photo over a limit refused. The estimate (:func:`~airflow_provider_hitpaw.contract.pricing.estimate_coins`) is logged.
    With ``max_coins``, a photo whose estimate is over it is refused; so is one whose price cannot be
    told (preflight off or skipped) when the model's highest price is over it, and one of a model this
    provider has no price for (``allow_unknown_model``).

    :raises HitPawValidationError: before anything is sent to HitPaw.
    """
    logger = logger or log
    spec = get_model(model_name, video=False)
    if preflight and dimensions is None:
        dimensions = photo_dimensions(hook, img_url)
    elif not preflight:
        dimensions = None
    estimate: int | None = None
    if dimensions is not None and spec is not None:
        check_photo_size(spec, *dimensions)
        estimate = estimate_coins(model_name, *dimensions)
        out_width, out_height = spec.output_size(*dimensions)
        logger.info(
            "Preflight: the photo is %d x %d; %s makes it %d x %d (%.1f MP): HitPaw's price is %d coins",
            *dimensions, model_name, out_width, out_height, out_width * out_height / 1e6, estimate,
        )
    elif dimensions is not None:
        logger.info("Preflight: the photo is %d x %d; no price is known for model %r", *dimensions, model_name)
    if max_coins is None:
        return PreflightResult(dimensions, estimate)
    if estimate is not None:
        check_within_max_coins(estimate, max_coins)
        return PreflightResult(dimensions, estimate)
    try:
        worst = highest_coins(model_name)
    except UnpricedModelError:
        raise HitPawValidationError(
            f"No price is known for model {model_name[:64]!r}, so max_coins={max_coins} cannot be "
            "guaranteed. Nothing was sent."
        ) from None
    if worst > max_coins:
        raise HitPawValidationError(
            f"The photo's size could not be read, and a {model_name!r} job can cost up to {worst} coins, "
            f"over max_coins={max_coins}. Nothing was sent."
        )
    logger.info("Preflight: the photo's size is unknown; a %s job costs at most %d coins", model_name, worst)
    return PreflightResult(dimensions, None)
