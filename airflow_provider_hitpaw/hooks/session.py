"""One ``aiohttp.ClientSession`` per event loop, shared by every HitPaw trigger in the process.

Creating a session per poll costs about three times the CPU of reusing one (and a TLS handshake per
poll against the real API), so triggers borrow this one and never close it themselves.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

# Enough parallel connections for thousands of waiting triggers; each request still has
# connect and read timeouts, so a request waiting for a free connection cannot wait forever.
CONNECTION_LIMIT = 256

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
    weakref.WeakKeyDictionary()
)


async def get_shared_session() -> aiohttp.ClientSession:
    """The running loop's shared session, created on first use (or after it was closed)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT, enable_cleanup_closed=True),
            headers={"User-Agent": "airflow-provider-hitpaw"},
            auto_decompress=False,  # bodies are decoded by the hook, with a cap on their size
        )
        _sessions[loop] = session
        closer = _close_at_loop_shutdown(session)
        await closer.__anext__()
        _closers[loop] = closer
    return session


async def _close_at_loop_shutdown(session: aiohttp.ClientSession) -> AsyncIterator[None]:
    """An async generator left suspended: ``asyncio.run`` (and every orderly loop shutdown) closes
    unfinished generators, which runs this ``finally`` and closes the session with its loop."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


async def close_shared_session() -> None:
    """Close the running loop's shared session, if any (at shutdown, or between tests)."""
    loop = asyncio.get_running_loop()
    _closers.pop(loop, None)
    session = _sessions.pop(loop, None)
    if session is not None and not session.closed:
        await session.close()


@functools.lru_cache(maxsize=64)
def client_timeout(connect_timeout: float, read_timeout: float) -> aiohttp.ClientTimeout:
    """Bounds on opening the socket, on each read, and on the whole request (so a reply that
    trickles in a byte at a time cannot hold a trigger past ``connect_timeout + read_timeout``)."""
    return aiohttp.ClientTimeout(
        total=connect_timeout + read_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )


#: How long the settings read from a connection are reused by the triggers of a process. A rotated
#: key is picked up after at most this long; meanwhile thousands of triggers on one connection cost
#: one lookup instead of thousands.
SETTINGS_TTL_SECONDS = 60.0

_settings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[Any]]]] = (
    weakref.WeakKeyDictionary()
)


async def shared_settings(conn_id: str, read: Callable[[], Awaitable[T]], *, fresh: bool = False) -> T:
    """The settings of a connection, read once per ``SETTINGS_TTL_SECONDS`` per event loop.

    Concurrent callers wait on the same lookup; a failed lookup is not kept, so the next call tries
    again. ``fresh`` reads the connection again unless a read started less than a second ago.
    """
    loop = asyncio.get_running_loop()
    entries = _settings.setdefault(loop, {})
    entry = entries.get(conn_id)
    now = time.monotonic()
    stale = entry is not None and fresh and entry[0] - SETTINGS_TTL_SECONDS < now - 1.0
    if entry is not None and not stale and entry[0] >= now and entry[1].done() and not _failed(entry[1]):
        result: T = entry[1].result()  # the usual case, once per poll: no new future, no shield
        return result
    if entry is None or entry[0] < now or stale or _failed(entry[1]):
        future: asyncio.Future[Any] = asyncio.ensure_future(read())
        entries[conn_id] = (now + SETTINGS_TTL_SECONDS, future)
        entry = entries[conn_id]
    try:
        return await asyncio.shield(entry[1])
    except Exception:
        if entries.get(conn_id) is entry:
            del entries[conn_id]
        raise


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)

