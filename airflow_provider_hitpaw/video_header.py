"""A video's size, frame rate and duration as its container's header tells them, read with PyAV.

One reading for both sides: the client's preflight estimates a video's price from it
(:mod:`~airflow_provider_hitpaw.video_preflight`) and the sandbox charges from it
(``airflow_provider_hitpaw.sandbox.video``), so the sandbox charges what the client estimated. No
Airflow here, and nothing else of the package: the sandbox imports it.

PyAV is optional (the extras ``video`` and ``sandbox``); each caller says which extra installs it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO


class UnreadableVideoError(Exception):
    """The video's header could not be read; the message says why."""


@dataclass(frozen=True)
class VideoHeader:
    """What a video's container says.

    :param width: of its first video stream, in pixels.
    :param height: in pixels.
    :param fps: its average frame rate.
    :param duration: seconds: the container's duration, else the stream's.
    """

    width: int
    height: int
    fps: float
    duration: float


def read_video_header(handle: IO[bytes] | io.RawIOBase) -> VideoHeader:
    """Read a video's size, frame rate and duration from an open file, without decoding a frame: the
    container's duration if it has one, else the first video stream's; the stream's average frame
    rate, else FFmpeg's guess.

    :param handle: a readable, seekable file, e.g. ``io.BytesIO``.
    :raises ImportError: without PyAV.
    :raises UnreadableVideoError: when the file is no video PyAV can read, or it tells no size, frame
        rate or duration. One raised by ``handle``'s own reads goes through unchanged.
    """
    import av

    try:
        with av.open(handle, mode="r") as container:
            if not container.streams.video:
                raise UnreadableVideoError("the file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            if container.duration is not None:
                duration = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
    except UnreadableVideoError:
        raise
    except Exception as err:  # av.error.FFmpegError and its kin, on untrusted bytes, or the reader's own limit
        cause = err.__context__ if isinstance(err.__context__, UnreadableVideoError) else err
        raise UnreadableVideoError(f"no video header PyAV can read ({str(cause)[:200]})") from None
    if not width or not height or not rate or duration <= 0:
        raise UnreadableVideoError("the container tells no size, frame rate or duration")
    return VideoHeader(int(width), int(height), float(rate), float(duration))
