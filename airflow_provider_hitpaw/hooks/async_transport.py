"""The async hook's HTTP transport: one POST on an ``aiohttp`` session, and the one place its failures
are classified.

``aiohttp`` tells by its exception types whether a request failed before it was sent: a
``ClientConnectorError`` (refused, unreachable, a broken TLS handshake, a bad certificate) or a connect
timeout means nothing left this machine; any other failure may follow a request HitPaw received.
The session's own decompression is off: bodies are decoded here, capped (see :mod:`.transport`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from airflow_provider_hitpaw.api import Reply
from airflow_provider_hitpaw.hooks.transport import IDENTITY_HEADERS, BoundedBody, Failure, brief


async def post(
    session: aiohttp.ClientSession, url: str, payload: dict[str, Any], headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
) -> Reply:
    """POST ``payload`` as JSON and read the whole reply (decoded, capped) within ``timeout``."""
    async with session.post(
        url, json=payload, headers={**headers, **IDENTITY_HEADERS}, timeout=timeout, allow_redirects=False
    ) as response:
        body = BoundedBody(response.headers.get("Content-Encoding"))
        async for chunk in response.content.iter_any():
            body.feed(chunk)
        return Reply(response.status, body.finish(), response.headers)


def classify(err: BaseException) -> Failure:
    """The one reading of a failure of this transport, whatever raised it."""
    nothing_sent = isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    if isinstance(err, asyncio.TimeoutError):
        return Failure(nothing_sent, f"{type(err).__name__}: the reply did not arrive within its time limit")
    return Failure(nothing_sent, f"{type(err).__name__}: {brief(err)}")
