"""HitPaw's prices: coins (credits, about $0.001 each) per photo by the result's megapixels, and per
output second of video by the result's resolution and frame rate.

Source: HitPaw's public developer documentation, https://github.com/shiyao1122/hitpaw-developer-docs,
``docs/get-started/pricing.md`` ("Image Enhancement Pricing", "Video Enhancement Pricing"). A photo is
billed once, at submission, by the **output** size: the input's width and height each times the
model's scale. A video is billed per second of output, at a rate set by the output resolution (the
request's ``resolution``) and the frame rate (the source's: the result keeps it).

Tier boundaries: HitPaw prints ranges such as "< 8 MP", "8 - 12 MP", "> 216 MP". Here every tier
includes its lower bound and excludes its upper one (``[8, 12)``), which is the reading "< 8 MP"
asks for: a result of exactly 8,000,000 pixels costs the 8-12 MP price, and one of exactly 216 MP the
"> 216 MP" price. A megapixel is 1,000,000 pixels, and sizes are compared as whole pixel counts, so
no rounding decides a tier. The generative tables end at the generative output limit (34 MP, see
:mod:`.catalog`): a larger result is refused before it is priced.

The Generative Enhance table's first tier prints 80 credits next to $0.05; the credits are taken (the
dollar column of every other row is credits / 1000).

Video, read as follows where the table is not explicit (:func:`video_coins_per_second`):

- resolution: a row names a size (HD 1280x720, FHD 1920x1080, 2K 2560x1440, 4K 3840x2160, 8K
  7680x4320). A result is billed at the smallest row with at least its pixel count (the orientation
  does not matter: 1080x1920 is FHD); one smaller than HD at the HD rate; one over 8K (the limit is
  36 MP, 8K is 33.2 MP) at the 8K rate. The Generative table stops at 4K: a larger generative result
  has no documented price (:class:`UnpricedModelError`).
- frame rate: "<= 30 fps", "30 - 60 fps", "60 - 120 fps", "120 fps" are read as fps <= 30, 30 < fps
  <= 60, 60 < fps < 120, fps >= 120.
- seconds: the output's duration rounded up to a whole second (a 2.4 s clip is billed 3 s): HitPaw
  does not say how it rounds, and rounding up keeps an estimate checked against ``max_coins`` on the
  safe side. Durations are rounded to the millisecond first, so that a container's 2.0000001 s is 2 s.

No Airflow here: the client estimates with :func:`estimate_coins` and :func:`estimate_video_coins`,
and the sandbox charges with the same functions, so an estimate and the sandbox's charge cannot drift
apart.
"""

from __future__ import annotations

import math

from airflow_provider_hitpaw.contract.catalog import ModelSpec, PriceTable, get_model

_MP = 1_000_000

#: ``(lowest output pixel count of the tier, coins)``, in ascending order; the first starts at 0.
PRICE_TIERS: dict[PriceTable, tuple[tuple[int, int], ...]] = {
    # Face Clear, Face Natural, General Enhance, High Fidelity, Sharp Denoise, Detail Denoise.
    PriceTable.STANDARD: (
        (0, 10), (8 * _MP, 20), (12 * _MP, 30), (24 * _MP, 70), (48 * _MP, 140), (108 * _MP, 240),
        (216 * _MP, 480),
    ),
    PriceTable.GENERATIVE_PORTRAIT: ((0, 20), (8 * _MP, 30), (12 * _MP, 40), (24 * _MP, 60)),
    PriceTable.GENERATIVE_ENHANCE: ((0, 80), (8 * _MP, 60), (12 * _MP, 80), (24 * _MP, 150)),
}


#: The video tables' rows: ``(name, width, height)`` of each output resolution, smallest first.
VIDEO_RESOLUTIONS: tuple[tuple[str, int, int], ...] = (
    ("HD", 1280, 720), ("FHD", 1920, 1080), ("2K", 2560, 1440), ("4K", 3840, 2160), ("8K", 7680, 4320),
)
#: Coins per output second: one row per resolution of :data:`VIDEO_RESOLUTIONS` (a table may stop
#: before 8K), one column per frame-rate band (<= 30, 30-60, 60-120, 120 fps).
VIDEO_RATES: dict[PriceTable, tuple[tuple[int, int, int, int], ...]] = {
    # Face Soft, Portrait Restore, General Restore.
    PriceTable.VIDEO_STANDARD: (
        (10, 20, 40, 60), (15, 30, 60, 90), (20, 39, 78, 117), (25, 51, 101, 152), (33, 66, 132, 198),
    ),
    PriceTable.VIDEO_ULTRA_HD: (
        (15, 31, 62, 92), (20, 40, 80, 120), (26, 52, 104, 156), (34, 68, 135, 203), (44, 88, 176, 264),
    ),
    PriceTable.VIDEO_GENERATIVE: (
        (15, 30, 60, 90), (25, 50, 100, 150), (38, 75, 150, 225), (56, 113, 225, 338),
    ),
}


class UnpricedModelError(ValueError):
    """The model is not in the catalog, is billed otherwise (a photo model priced per second or the
    other way round), or HitPaw's table has no price for the result."""


def coins_for_output(table: PriceTable, output_pixels: int) -> int:
    """The price of a result of ``output_pixels`` pixels in one of the tables.

    :raises UnpricedModelError: for the video table (billed per second, not per image).
    :raises ValueError: for a negative pixel count.
    """
    tiers = PRICE_TIERS.get(table)
    if tiers is None:
        raise UnpricedModelError(f"{table.value} models are billed per output second, not per image")
    if output_pixels < 0:
        raise ValueError(f"a pixel count cannot be negative, got {output_pixels}")
    coins = tiers[0][1]
    for lowest, price in tiers:
        if output_pixels >= lowest:
            coins = price
    return coins


def priced_spec(model_name: str, *, video: bool = False) -> ModelSpec:
    """The spec of a photo model (or alias), or with ``video`` of a video model, for pricing.

    :raises UnpricedModelError: for a name the catalog does not list as such a model.
    """
    spec = get_model(model_name, video=video)
    if spec is None:
        kind = "video" if video else "photo"
        raise UnpricedModelError(f"no HitPaw price is known for {kind} model {model_name[:64]!r}")
    return spec


def photo_spec(model_name: str) -> ModelSpec:
    """The spec of a photo model (or alias), for pricing: :func:`priced_spec` (kept under this name,
    which earlier releases had)."""
    return priced_spec(model_name)


def estimate_coins(model_name: str, width: int, height: int) -> int:
    """The coins HitPaw charges for enhancing a ``width`` x ``height`` photo with ``model_name``.

    The output is ``(width * scale) x (height * scale)``; its pixel count picks the tier. The size is
    not checked against the model's limits here (see ``preflight.check_photo_size``).

    :raises UnpricedModelError: for an unknown or video model.
    :raises ValueError: for a width or height that is not a positive whole number.
    """
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
            raise ValueError(f"width and height must be positive whole numbers, got {width!r} x {height!r}")
    spec = priced_spec(model_name)
    out_width, out_height = spec.output_size(width, height)
    return coins_for_output(spec.pricing, out_width * out_height)


def highest_coins(model_name: str) -> int:
    """The most a photo job of this model can cost: its table's highest tier that its output limit
    allows (for a budget check when the photo's size cannot be read).

    :raises UnpricedModelError: for an unknown or video model.
    """
    spec = priced_spec(model_name)
    tiers = PRICE_TIERS[spec.pricing]
    return max(price for lowest, price in tiers if lowest <= spec.max_output_pixels)


# --- video -------------------------------------------------------------------------------------------


def frame_rate_band(fps: float) -> int:
    """The column of a video table for a frame rate: 0 (<= 30), 1 (30-60], 2 (60-120), 3 (>= 120).

    :raises ValueError: for a frame rate that is not a positive finite number.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"a frame rate must be a positive number, got {fps!r}")
    if fps <= 30:
        return 0
    if fps <= 60:
        return 1
    return 2 if fps < 120 else 3


def video_resolution_row(width: int, height: int) -> int:
    """The row of :data:`VIDEO_RESOLUTIONS` that bills a ``width`` x ``height`` result."""
    pixels = width * height
    for row, (_name, row_width, row_height) in enumerate(VIDEO_RESOLUTIONS):
        if pixels <= row_width * row_height:
            return row
    return len(VIDEO_RESOLUTIONS) - 1


def video_coins_per_second(table: PriceTable, width: int, height: int, fps: float) -> int:
    """The per-second rate of a ``width`` x ``height`` result at ``fps`` frames a second.

    :raises UnpricedModelError: for a photo table, or a result larger than the table's last row
        (the Generative table stops at 4K).
    """
    rates = VIDEO_RATES.get(table)
    if rates is None:
        raise UnpricedModelError(f"{table.value} models are billed per image, not per second")
    row = video_resolution_row(width, height)
    if row >= len(rates):
        name = VIDEO_RESOLUTIONS[len(rates) - 1][0]
        raise UnpricedModelError(
            f"HitPaw's {table.value} price table stops at {name}: no price is published for a "
            f"{width} x {height} result"
        )
    return rates[row][frame_rate_band(fps)]


def billed_seconds(duration_seconds: float) -> int:
    """Whole seconds billed for an output of ``duration_seconds`` (rounded up, at least 1).

    :raises ValueError: for a duration that is not a positive finite number.
    """
    if (
        isinstance(duration_seconds, bool)
        or not isinstance(duration_seconds, (int, float))
        or not math.isfinite(duration_seconds)
        or duration_seconds <= 0
    ):
        raise ValueError(f"a duration must be a positive number of seconds, got {duration_seconds!r}")
    return max(1, math.ceil(round(duration_seconds, 3)))


def estimate_video_coins(model_name: str, width: int, height: int, fps: float, duration_seconds: float) -> int:
    """The coins HitPaw charges for a ``width`` x ``height`` result (the request's ``resolution``) of
    a video of ``duration_seconds`` at ``fps`` frames a second (the source's; the result keeps both).

    The limits (36 MP, 0.5 s to 1 hour) are not checked here (see ``validation`` and ``preflight``).

    :raises UnpricedModelError: for an unknown or photo model, or a result the table has no row for.
    :raises ValueError: for a size, frame rate or duration that is not positive.
    """
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
            raise ValueError(f"width and height must be positive whole numbers, got {width!r} x {height!r}")
    spec = priced_spec(model_name, video=True)
    return video_coins_per_second(spec.pricing, width, height, fps) * billed_seconds(duration_seconds)
