"""What the sync and the async transport share: the reading of a failure, and a capped reply body.

Both hooks ask for ``Accept-Encoding: identity`` and turn their HTTP library's own decompression off,
then feed the raw bytes through :class:`BoundedBody`. A server that sends gzip anyway is still read,
but 100 KiB on the wire can no longer become 100 MiB in memory: inflating stops at the cap.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from airflow_provider_hitpaw.errors import HitPawResponseError

#: The largest API reply read, after decoding. HitPaw's replies are a few hundred bytes.
MAX_REPLY_BYTES = 1024 * 1024
#: Sent with every API request: HitPaw's replies are small, compression buys nothing.
IDENTITY_HEADERS = {"Accept-Encoding": "identity"}


class BoundedBody:
    """Collects a body chunk by chunk, decoding ``Content-Encoding`` and refusing one past ``limit``.

    :param content_encoding: the reply's ``Content-Encoding`` header (None or "identity" for none).
    :param limit: the most decoded bytes accepted.
    :raises HitPawResponseError: on an unknown encoding, a corrupt stream or a body past ``limit``.
    """

    def __init__(self, content_encoding: str | None, limit: int = MAX_REPLY_BYTES) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        self.limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        if encoding in ("identity", ""):
            self._inflater = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise HitPawResponseError(f"HitPaw's reply uses an unsupported Content-Encoding {encoding[:40]!r}")

    def feed(self, data: bytes) -> None:
        if self._inflater is None:
            self._keep(data)
            return
        try:
            while data:
                # max_length bounds what one call may inflate: the rest waits in unconsumed_tail.
                out = self._inflater.decompress(data, self.limit - self._size + 1)
                self._keep(out)
                data = self._inflater.unconsumed_tail
        except zlib.error as err:
            raise HitPawResponseError(f"HitPaw's compressed reply is corrupt: {err}") from None

    def finish(self) -> bytes:
        if self._inflater is not None:
            try:
                self._keep(self._inflater.flush())
            except zlib.error as err:
                raise HitPawResponseError(f"HitPaw's compressed reply is corrupt: {err}") from None
            if not self._inflater.eof:
                raise HitPawResponseError("HitPaw's compressed reply ends in the middle of its stream")
        return b"".join(self._chunks)

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise HitPawResponseError(f"HitPaw's reply is larger than {self.limit} bytes once decoded")
        if data:
            self._chunks.append(data)


@dataclass(frozen=True)
class Failure:
    """What a request that failed below HTTP means.

    :param nothing_sent: the request certainly did not leave this machine (so it created nothing).
    :param reason: a short description (the API key never travels in a transport error).
    """

    nothing_sent: bool
    reason: str


# A URL's query string, whole (scheme://host/path?...) or as urllib3 quotes it ("with url: /path?...").
_QUERY = re.compile(r"(\w+://[^\s?#'\"]+|url: [^\s?#'\"]+)\?[^\s'\")]*")


def brief(err: BaseException) -> str:
    """A short, one-line description of a transport error, without URL query strings (a presigned URL's
    signature must not reach a log)."""
    text = _QUERY.sub(r"\1?...", " ".join(str(err).split()))
    return text[:300] + ("..." if len(text) > 300 else "")
