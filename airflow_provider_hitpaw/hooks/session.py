"""One ``aiohttp.ClientSession`` per event loop, shared by every HitPaw trigger in the process.

Creating a session per poll costs about three times the CPU of reusing one (and a TLS handshake per
poll against the real API), so triggers borrow this one and never close it themselves.
"""

from __future__ import annotations

import asyncio
import weakref

import aiohttp

# Enough parallel connections for thousands of waiting triggers; each request still has
# connect and read timeouts, so a request waiting for a free connection cannot wait forever.
CONNECTION_LIMIT = 256

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
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
        )
        _sessions[loop] = session
    return session


async def close_shared_session() -> None:
    """Close the running loop's shared session, if any (at shutdown, or between tests)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None and not session.closed:
        await session.close()


def client_timeout(connect_timeout: float, read_timeout: float) -> aiohttp.ClientTimeout:
    """Bounds on opening the socket, on each read, and on the whole request (so a reply that
    trickles in a byte at a time cannot hold a trigger past ``connect_timeout + read_timeout``)."""
    return aiohttp.ClientTimeout(
        total=connect_timeout + read_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
