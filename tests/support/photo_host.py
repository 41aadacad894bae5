"""A photo host for the preflight tests: serves bytes by path, with or without ``Range`` support, and
records every request's headers; plus photo files of any size made of their header alone."""

from __future__ import annotations

import io
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")


def png_header(width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` whose pixel data is a few junk bytes: its header (all a size
    probe reads: imagesize, or Pillow's ``Image.open``) is exact, whatever the size, in 68 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def jpeg_with_late_header(width: int, height: int, padding: int) -> bytes:
    """A real JPEG whose frame header (SOF) comes after ``padding`` bytes of APP15 segments, as in a
    photo with a large EXIF thumbnail or ICC profile."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "JPEG")
    data = out.getvalue()
    segments = b""
    while padding > 0:
        size = min(padding, 65533)
        segments += b"\xff\xef" + struct.pack(">H", size + 2) + b"p" * size
        padding -= size
    return data[:2] + segments + data[2:]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class PhotoHost:
    """``files`` by path; ``ranges`` False answers every request 200 with the whole file;
    ``max_range_bytes`` answers a range with at most that many bytes (a header split across ranges)."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    max_range_bytes: int | None = None
    seen: list[Seen] = field(default_factory=list)
    sent_bytes: int = 0

    def __post_init__(self) -> None:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.seen.append(Seen(self.path, dict(self.headers.items())))
                body = host.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, start, payload = 200, 0, body
                match = _RANGE.match(self.headers.get("Range", ""))
                if host.ranges and match:
                    start = int(match.group(1))
                    end = int(match.group(2)) if match.group(2) else len(body) - 1
                    if host.max_range_bytes is not None:
                        end = min(end, start + host.max_range_bytes - 1)
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status, payload = 206, body[start : min(end, len(body) - 1) + 1]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{start + len(payload) - 1}/{len(body)}")
                self.end_headers()
                try:
                    for i in range(0, len(payload), 65536):
                        self.wfile.write(payload[i : i + 65536])
                        host.sent_bytes += min(65536, len(payload) - i)
                except OSError:
                    pass  # the client read what it needed and closed

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that closed after the header it needed

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PhotoHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"
