"""A private Redis server for tests: ``with RedisServer() as redis: redis.url``.

Debian's ``redis-server`` (``.ci/run`` installs it when missing) on a free port of 127.0.0.1, in the
foreground, without persistence, its working folder a temporary one deleted on exit. It is the Celery
broker of the system tests' deployment.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.deployment import free_port, kill_tree


def find_redis_server() -> str | None:
    return shutil.which("redis-server")


class RedisError(RuntimeError):
    """Redis did not start; the message ends with its log."""


class RedisServer:
    """A throw-away Redis server; a context manager.

    :param start_timeout: seconds allowed until it answers ``PING``.
    """

    def __init__(self, start_timeout: float = 30.0) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RedisError("redis-server not found: apt-get install redis-server")
        self.binary = binary
        self.start_timeout = start_timeout
        self.root = Path(tempfile.mkdtemp(prefix="hitpaw-redis-"))
        self.log_path = self.root / "redis.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self, timeout: float = 2.0) -> bool:
        """True when the server answers ``PING`` with ``+PONG`` (plain RESP over a socket)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> RedisServer:
        atexit.register(self.stop)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        end = time.monotonic() + self.start_timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > end:
                raise RedisError(f"redis-server did not answer PING:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        try:
            if self.process is not None:
                kill_tree(self.process, grace=5.0)
                self.process = None
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
