"""Downloading a submitted ``img_url``, the way HitPaw's servers would.

The sandbox fetches any http(s) URL it is given: it is a local test tool bound to loopback by
default, not a service to expose to untrusted callers.
"""

from __future__ import annotations

import aiohttp

_CHUNK = 64 * 1024


class FetchError(Exception):
    """The URL could not be downloaded (unreachable, not 2xx, too slow or too large)."""


async def fetch_bytes(session: aiohttp.ClientSession, url: str, *, timeout: float, max_bytes: int) -> bytes:
    """Download ``url`` following redirects, within ``timeout`` seconds and ``max_bytes`` bytes.

    :param session: the client session to use.
    :param url: an http(s) URL.
    :param timeout: seconds allowed for the whole download.
    :param max_bytes: largest body accepted.
    :raises FetchError: for any failure.
    """
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=True, max_redirects=10
        ) as response:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}")
            if response.content_length is not None and response.content_length > max_bytes:
                raise FetchError("too large")
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError("too large")
            return bytes(body)
    except FetchError:
        raise
    except (TimeoutError, aiohttp.ClientError, ValueError, UnicodeError) as err:
        raise FetchError(type(err).__name__) from None
