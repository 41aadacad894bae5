"""The PyAV work of the sandbox: reading a video's header, enhancing a video, drawing the sample clips.

A video job decodes the source, scales every frame to the requested resolution and encodes the result
in the requested container (H.264 in mp4, mov, mkv and m4v, MPEG-4 Part 2 in avi, a palette in gif),
at the source's frame rate and with one output frame per source frame, so the result keeps the
source's duration and frame count. The "enhancement" is a plain bicubic scale.

The duration and frame rate are read from the container's header by the client's preflight's own
reading (:func:`probe_video`, :mod:`airflow_provider_hitpaw.video_header`), so that the sandbox charges
what the client estimated (:func:`airflow_provider_hitpaw.contract.pricing.estimate_video_coins`).

PyAV is an optional dependency (the ``sandbox`` extra): without it a video job is refused as a video
HitPaw cannot read, with a log line.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from airflow_provider_hitpaw.video_header import VideoHeader, read_video_header

log = logging.getLogger(__name__)

PYAV_MISSING_MESSAGE = (
    "The HitPaw sandbox needs PyAV to process video: pip install 'airflow-provider-hitpaw[sandbox]'"
)

#: Container and encoder per output extension.
_OUTPUTS: dict[str, tuple[str, str]] = {
    "mp4": ("mp4", "libx264"),
    "mov": ("mov", "libx264"),
    "m4v": ("mp4", "libx264"),
    "mkv": ("matroska", "libx264"),
    "avi": ("avi", "mpeg4"),
    "gif": ("gif", "gif"),
}
CONTENT_TYPES: dict[str, str] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "m4v": "video/x-m4v",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "gif": "image/gif",
}

#: The sample clip served as ``/samples/clip.mp4``: small, a few seconds.
SAMPLE_CLIP = "clip.mp4"
#: ``/samples/clip-<W>x<H>-<FPS>fps-<MS>ms.<ext>``: a clip drawn to order, for tests.
SAMPLE_CLIP_PATTERN = re.compile(r"clip-(\d{1,4})x(\d{1,4})-(\d{1,3})fps-(\d{1,6})ms\.(mp4|mov|mkv|avi)\Z")
#: The most work the sandbox does for one video, in megapixels times frames (a 1080p clip of 3 s at
#: 24 fps is 149): a larger job is charged, then ends in ERROR without being scaled, as a photo over
#: ``max_work_megapixels`` does.
MAX_WORK_MEGAPIXEL_FRAMES = 400.0
MAX_SAMPLE_SIDE = 640
MAX_SAMPLE_FRAMES = 1200


class PyAVMissingError(RuntimeError):
    """PyAV is not installed."""


def require_av() -> Any:
    """Import PyAV, or raise :class:`PyAVMissingError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise PyAVMissingError(PYAV_MISSING_MESSAGE) from None
    return av


def probe_video(data: bytes) -> VideoHeader:
    """Read a video's size, frame rate and duration from its container, without decoding its frames.

    :raises PyAVMissingError: without PyAV.
    :raises ~airflow_provider_hitpaw.video_header.UnreadableVideoError: when the bytes are no video PyAV can read, or it tells no size,
        duration or rate.
    """
    require_av()
    return read_video_header(io.BytesIO(data))


def enhance_video(data: bytes, out_path: Path, *, width: int, height: int, extension: str) -> None:
    """Decode ``data``, scale every frame to ``width`` x ``height`` and write ``out_path`` as ``extension``.

    One output frame per source frame, at the source's frame rate: the result keeps the duration.
    The file is written under a temporary name and renamed.
    """
    av = require_av()
    container_format, codec = _OUTPUTS[extension]
    part = out_path.with_name(out_path.name + ".part")
    with av.open(io.BytesIO(data), mode="r") as source, av.open(
        str(part), mode="w", format=container_format
    ) as target:
        stream_in = source.streams.video[0]
        stream_in.thread_type = "AUTO"
        rate = stream_in.average_rate or stream_in.guessed_rate or Fraction(25)
        rate = Fraction(rate).limit_denominator(1001)
        stream_out = target.add_stream(codec, rate=rate)
        stream_out.width, stream_out.height = width, height
        # The frames' time base, fixed: the stream's own changes once the muxer writes its header.
        time_base = 1 / rate
        stream_out.time_base = time_base
        if codec == "gif":
            stream_out.pix_fmt = "rgb8"
        elif codec == "libx264":
            # 4:2:0 needs even sides; an odd one is encoded 4:4:4.
            stream_out.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            stream_out.options = {"preset": "ultrafast", "crf": "23"}
        else:
            stream_out.pix_fmt = "yuv420p"
            stream_out.bit_rate = max(200_000, width * height * 4)
        scaled = (
            frame.reformat(width=width, height=height, format=stream_out.pix_fmt, interpolation="BICUBIC")
            for frame in source.decode(stream_in)
        )
        _encode_all(target, stream_out, scaled, time_base)
    part.replace(out_path)


def _encode_all(target: Any, stream: Any, frames: Iterable[Any], time_base: Fraction) -> None:
    """Encode ``frames`` into ``stream`` of ``target`` one after the other (frame ``n`` at ``n *
    time_base``), then flush the encoder."""
    for index, frame in enumerate(frames):
        frame.pts = index
        frame.time_base = time_base
        for packet in stream.encode(frame):
            target.mux(packet)
    for packet in stream.encode():
        target.mux(packet)


def _sample_in_limits(width: int, height: int, fps: int, milliseconds: int) -> bool:
    frames = round(fps * milliseconds / 1000)
    return 2 <= width <= MAX_SAMPLE_SIDE and 2 <= height <= MAX_SAMPLE_SIDE and 1 <= fps <= 240 and (
        1 <= frames <= MAX_SAMPLE_FRAMES
    )


def sample_clip(
    width: int = 160, height: int = 120, fps: int = 12, milliseconds: int = 3000, extension: str = "mp4"
) -> bytes:
    """A clip of a ball crossing a gradient, ``milliseconds`` long at ``fps`` (H.264 or MPEG-4).

    :raises ValueError: for a size, rate or length outside the sample limits.
    """
    if not _sample_in_limits(width, height, fps, milliseconds):
        raise ValueError("sample clip outside its limits")
    frames = round(fps * milliseconds / 1000)
    av = require_av()
    from airflow_provider_hitpaw.sandbox.imaging import require_pillow

    image_module = require_pillow()
    from PIL import ImageDraw

    container_format, codec = _OUTPUTS[extension]
    codec = "mpeg4"  # fast, any even or odd size, in every container of the samples
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as target:
        stream = target.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = max(100_000, width * height * fps // 2)
        time_base = Fraction(1, fps)
        stream.time_base = time_base
        background = image_module.linear_gradient("L").resize((width, height)).convert("RGB")
        radius = max(2, min(width, height) // 6)

        def draw(index: int) -> Any:
            img = background.copy()
            x = radius + round((width - 2 * radius) * index / max(1, frames - 1))  # left to right
            ImageDraw.Draw(img).ellipse(
                (x - radius, height // 2 - radius, x + radius, height // 2 + radius), fill=(220, 60, 40)
            )
            return av.VideoFrame.from_image(img).reformat(format="yuv420p")

        _encode_all(target, stream, (draw(index) for index in range(frames)), time_base)
    return buffer.getvalue()


def sample_maker(name: str) -> tuple[Callable[[], bytes], str] | None:
    """How to draw the sample clip called ``name``, and its Content-Type; None for a name that is no
    sample clip, or one whose numbers are outside the sample limits."""
    if name == SAMPLE_CLIP:
        return sample_clip, CONTENT_TYPES["mp4"]
    match = SAMPLE_CLIP_PATTERN.match(name)
    if match is None:
        return None
    width, height, fps, milliseconds = (int(g) for g in match.groups()[:4])
    extension = match.group(5)
    if not _sample_in_limits(width, height, fps, milliseconds):
        return None
    return partial(sample_clip, width, height, fps, milliseconds, extension), CONTENT_TYPES[extension]
