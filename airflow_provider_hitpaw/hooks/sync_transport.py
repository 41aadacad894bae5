"""The sync hook's HTTP transport: a ``requests`` session that knows whether a request left this machine
and that holds every exchange to a hard time limit, and the one place its failures are classified.

Two facts decide whether a failed submission may be sent again, and ``requests`` tells neither:

- *Was anything sent?* A connection class records the moment the request starts to go out, after the
  TCP connection and the TLS handshake. A failure before that point (no route, refused, a broken
  handshake, a bad certificate) cannot have created a job; after it, any failure is an unknown outcome.
- *Did the reply take too long in all?* ``requests`` only bounds each read, so a server that trickles
  header or body bytes could hold a task forever. A watchdog thread shuts down the socket of an
  exchange that passes its limit; the blocked read then fails, and the failure is reported as a timeout.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from airflow_provider_hitpaw.hooks.transport import MAX_REPLY_BYTES, BoundedBody, Failure, brief

if TYPE_CHECKING:
    import requests

MAX_REDIRECTS = 5
_RAW_READ_BYTES = 64 * 1024


class Exchange:
    """One request and its reply, as seen by the socket: what was sent, and whether time ran out."""

    def __init__(self, limit_seconds: float) -> None:
        self.deadline = time.monotonic() + limit_seconds
        self.sent = False
        self.tracked = False
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._open = True

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self.tracked = True
            self._sock = sock
            expired = self.expired
        if expired:
            _shutdown(sock)

    def expire(self) -> None:
        """Called by the watchdog at the deadline: cut the socket so a blocked read returns."""
        with self._lock:
            if not self._open:
                return
            self.expired = True
            sock = self._sock
        _shutdown(sock)

    def close(self) -> None:
        with self._lock:
            self._open = False
            self._sock = None

    def check_time(self) -> None:
        if self.expired or time.monotonic() > self.deadline:
            self.expired = True
            raise ReplyTooSlow("the reply did not arrive within its time limit")


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for an SSLSocket: it only cuts the stream, it does not
        # touch the TLS state another thread may be reading.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class ReplyTooSlow(Exception):
    """The exchange passed its time limit (the watchdog cut it, or it kept trickling)."""


class _Watchdog:
    """One daemon thread that expires exchanges at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Exchange]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, exchange: Exchange) -> None:
        with self._cond:
            heapq.heappush(self._heap, (exchange.deadline, next(self._counter), exchange))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hitpaw-http-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is exchange:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    deadline, _, exchange = self._heap[0]
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            exchange.expire()


_watchdog = _Watchdog()
_current = threading.local()


@contextmanager
def exchange(limit_seconds: float) -> Iterator[Exchange]:
    """Run one request under a hard limit; the tracked connections report to the yielded Exchange."""
    current = Exchange(limit_seconds)
    _current.exchange = current
    _watchdog.watch(current)
    try:
        yield current
    finally:
        _current.exchange = None
        current.close()


def _current_exchange() -> Exchange | None:
    return getattr(_current, "exchange", None)


class _TrackingMixin:
    sock: Any

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        current = _current_exchange()
        if current is not None:
            current.attach(sock)  # a TLS handshake that trickles is cut too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]  # connect and handshake first: nothing sent yet
        current = _current_exchange()
        if current is not None:
            current.attach(self.sock)
            current.sent = True
        super().request(*args, **kwargs)  # type: ignore[misc]


class _TrackedHTTPConnection(_TrackingMixin, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_TrackingMixin, HTTPSConnection):
    pass


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


_POOL_CLASSES = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


def new_session() -> requests.Session:
    """A ``requests`` session whose connections report to the current :func:`exchange`."""
    import requests
    from requests.adapters import HTTPAdapter

    class TrackedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            manager.pool_classes_by_scheme = dict(_POOL_CLASSES)
            return manager

    session = requests.Session()
    session.headers["User-Agent"] = "airflow-provider-hitpaw"
    session.max_redirects = MAX_REDIRECTS
    for prefix in ("https://", "http://"):
        session.mount(prefix, TrackedAdapter())
    return session


def read_reply(response: requests.Response, current: Exchange, limit: int = MAX_REPLY_BYTES) -> bytes:
    """A streamed reply's body, decoded and capped, read before the exchange's deadline."""
    body = BoundedBody(response.headers.get("Content-Encoding"), limit)
    while True:
        chunk = response.raw.read1(_RAW_READ_BYTES, decode_content=False)
        if not chunk:
            current.check_time()  # a reply cut by the watchdog can look complete to http.client
            return body.finish()
        body.feed(chunk)
        current.check_time()


def classify(err: BaseException, current: Exchange) -> Failure:
    """The one reading of a failure of this transport, whatever library raised it."""
    if current.expired or isinstance(err, ReplyTooSlow):
        return Failure(not current.sent and current.tracked, "the reply did not arrive within its time limit")
    return Failure(_nothing_sent(err, current), f"{type(err).__name__}: {brief(err)}")


def _nothing_sent(err: BaseException, current: Exchange) -> bool:
    if current.tracked:
        return not current.sent
    # An untracked connection: only a failure to connect proves nothing was sent.
    import requests
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(err, requests.exceptions.ConnectionError) and err.args:
        reason = getattr(err.args[0], "reason", None)
        return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too
    return False
