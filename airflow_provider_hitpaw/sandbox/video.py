"""The PyAV work of the sandbox: reading a video's header, enhancing a video, drawing the sample clips.

A video job decodes the source, scales every frame to the requested resolution and encodes the result
in the requested container (H.264 in mp4, mov, mkv and m4v, MPEG-4 Part 2 in avi, a palette in gif),
at the source's frame rate and with one output frame per source frame, so the result keeps the
source's duration and frame count. The "enhancement" is a plain bicubic scale.

The duration and frame rate are read from the container's header the way the client's preflight reads
them (:func:`probe_video`), so that the sandbox charges what the client estimated
(:func:`airflow_provider_hitpaw.contract.pricing.estimate_video_coins`).

PyAV is an optional dependency (the ``sandbox`` extra): without it a video job is refused as a video
HitPaw cannot read, with a log line.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

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


class NotAVideoError(ValueError):
    """The bytes are not a video PyAV can read."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says.

    :param width: of the first video stream, in pixels.
    :param height: in pixels.
    :param fps: its average frame rate.
    :param duration: seconds: the container's duration, else the stream's.
    """

    width: int
    height: int
    fps: float
    duration: float


def require_av() -> Any:
    """Import PyAV, or raise :class:`PyAVMissingError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise PyAVMissingError(PYAV_MISSING_MESSAGE) from None
    return av


def probe_video(data: bytes) -> VideoInfo:
    """Read a video's size, frame rate and duration from its container, without decoding its frames.

    :raises NotAVideoError: when the bytes are no video PyAV can read, or it tells no duration or rate.
    """
    av = require_av()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise NotAVideoError("no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            if container.duration is not None:
                duration = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
    except NotAVideoError:
        raise
    except Exception as err:  # av.error.FFmpegError and its kin, on untrusted bytes
        raise NotAVideoError(f"not a video: {err}") from None
    if not width or not height or not rate or duration <= 0:
        raise NotAVideoError("the container tells no size, frame rate or duration")
    return VideoInfo(int(width), int(height), float(rate), float(duration))


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
        for index, frame in enumerate(source.decode(stream_in)):
            scaled = frame.reformat(width=width, height=height, format=stream_out.pix_fmt, interpolation="BICUBIC")
            scaled.pts = index
            scaled.time_base = time_base
            for packet in stream_out.encode(scaled):
                target.mux(packet)
        for packet in stream_out.encode():
            target.mux(packet)
    part.replace(out_path)


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
        for index in range(frames):
            img = background.copy()
            x = radius + round((width - 2 * radius) * index / max(1, frames - 1))  # left to right
            ImageDraw.Draw(img).ellipse(
                (x - radius, height // 2 - radius, x + radius, height // 2 + radius), fill=(220, 60, 40)
            )
            frame = av.VideoFrame.from_image(img).reformat(format="yuv420p")
            frame.pts = index
            frame.time_base = time_base
            for packet in stream.encode(frame):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
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
