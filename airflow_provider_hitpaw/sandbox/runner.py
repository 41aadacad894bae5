"""Starting a sandbox from Python: in a background thread, or in a process of its own.

Both handles offer the same methods (``stats``, ``set_faults``, ``add_key``, ``reset``, ...). The
thread handle calls the server's state through its event loop; the process handle goes through the
``/admin/`` endpoints with ``urllib`` (so the process must serve them: it binds loopback by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from airflow_provider_hitpaw.sandbox import workdirs
from airflow_provider_hitpaw.sandbox.config import SandboxConfig

T = TypeVar("T")

DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 10.0
_CALL_TIMEOUT = 30.0


def _make_config(config: SandboxConfig | None, overrides: dict[str, Any]) -> SandboxConfig:
    if config is None:
        return SandboxConfig(**overrides)
    if overrides:
        raise TypeError("pass either a SandboxConfig or keyword arguments, not both")
    return config


class _HandleBase(ABC):
    """What both handles share: the base URL and the context manager protocol."""

    base_url: str

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on the sandbox (``handle.url("/api/task-status")``)."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @abstractmethod
    def stop(self) -> None:
        """Stop the sandbox; safe to call twice."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SandboxHandle(_HandleBase):
    """A sandbox running in a background thread with its own event loop.

    Build it with :func:`start_sandbox`.

    :param config: the server's settings.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._stopped = False

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> SandboxHandle:
        """Start the server and wait until it listens.

        :param timeout: seconds allowed for starting.
        :raises imaging.PillowMissingError: when Pillow is not installed.
        :raises OSError: when the address cannot be bound.
        """
        from airflow_provider_hitpaw.sandbox.server import SandboxServer

        ready: Future[None] = Future()
        self._loop = asyncio.new_event_loop()
        self._server = SandboxServer(self.config)
        self._thread = threading.Thread(target=self._run, args=(ready,), name="hitpaw-sandbox", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout)
        except BaseException:
            if ready.done():  # the server failed to start: the thread cleans up and ends by itself
                self._stopped = True
                self._thread.join(timeout)
            else:
                self.stop()
            raise
        self.base_url = self._server.base_url
        return self

    def _run(self, ready: Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.start())
        except BaseException as err:
            ready.set_exception(err)
        else:
            ready.set_result(None)
            loop.run_forever()
        finally:
            loop.run_until_complete(self._server.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server and delete its result files. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive() and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._server.stop(), loop).result(timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)

    def _call(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the server's event loop (the only thread that touches its state)."""
        if self._loop is None or self._stopped:
            raise RuntimeError("the sandbox is not running")

        async def call() -> T:
            return func()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(_CALL_TIMEOUT)

    def stats(self) -> dict[str, Any]:
        """What ``GET /admin/stats`` returns."""
        return self._call(lambda: self._server.state.stats())

    def faults(self) -> dict[str, Any]:
        """The fault settings, as ``GET /admin/faults`` returns them."""
        return self._call(lambda: self._server.state.faults.config.to_dict())

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change some fault settings (the fields of :class:`FaultConfig`). Returns all of them."""
        return self._call(lambda: self._server.state.set_faults(**changes))

    def add_key(self, api_key: str, coins: int) -> dict[str, Any]:
        """Add an API key or set its balance. Returns ``{"key_id", "balance"}``."""
        return self._call(lambda: self._server.state.add_key(api_key, coins))

    def rotate_key(self, old_key: str, new_key: str) -> dict[str, Any]:
        """Revoke ``old_key``; its account (jobs, coins) answers to ``new_key`` from now on."""
        return self._call(lambda: self._server.state.rotate_key(old_key, new_key))

    def configure(
        self,
        *,
        error_shape: str | None = None,
        job_seconds: float | None = None,
        result_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Change the error body shape, the duration of new jobs or the lifetime of results.
        Returns the settings."""
        return self._call(
            lambda: self._server.state.update_settings(
                error_shape=error_shape, job_seconds=job_seconds, result_seconds=result_seconds
            )
        )

    def create_jobs(
        self,
        api_key: str,
        count: int = 1,
        complete_after_seconds: float | list[float] = 0.0,
        status: str = "COMPLETED",
        result_bytes: int | None = None,
    ) -> list[str]:
        """Synthetic jobs with no image work and no charge. Returns their ids."""
        server = self._server
        return self._call(
            lambda: server.state.create_synthetic_jobs(
                api_key,
                count,
                complete_after_seconds,
                status,
                result_bytes,
                original_url=f"{server.base_url}/samples/portrait.jpg",
                sample_path=server.sample_path("portrait.jpg"),
            )
        )

    def reset(self) -> None:
        """Back to the state at start: no jobs, records or counters; starting keys, balances and faults."""
        self._call(lambda: self._server.state.reset())

    def forget_jobs(self) -> None:
        """Forget every job, as a restarted server would; keep the ledger and records."""
        self._call(lambda: self._server.state.forget_jobs())


def start_sandbox(config: SandboxConfig | None = None, **kwargs: Any) -> SandboxHandle:
    """Start a sandbox in a background thread and return its handle (also a context manager).

    :param config: the settings; or pass :class:`SandboxConfig` fields as keyword arguments.
    """
    return SandboxHandle(_make_config(config, kwargs)).start()


class SandboxProcess(_HandleBase):
    """A sandbox running as ``python -m airflow_provider_hitpaw.sandbox`` in a process of its own.

    Build it with :func:`start_sandbox_process`. Its output goes to :attr:`log_path`.

    :param config: the server's settings.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.base_url = ""
        # Owned by this (launching) process: removed by a later sandbox if this process is killed.
        self._workdir = workdirs.make_owned_dir()
        self.log_path = self._workdir / "sandbox.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> SandboxProcess:
        """Start the process and wait until its ready file appears.

        :param timeout: seconds allowed for starting.
        :raises RuntimeError: when the process exits or is not ready in time.
        """
        from airflow_provider_hitpaw.sandbox.cli import config_to_argv, keys_env

        ready_file = self._workdir / "ready"
        argv = [sys.executable, "-m", "airflow_provider_hitpaw.sandbox", *config_to_argv(self.config)]
        argv += ["--ready-file", str(ready_file)]
        env = {**os.environ, **keys_env(self.config)}
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - argv is this interpreter and our own flags
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while not ready_file.exists():
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"the sandbox process exited with {self.process.returncode}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox process was not ready after {timeout} s: {self._log_tail()}")
            time.sleep(0.05)
        self.base_url = ready_file.read_text(encoding="utf-8").strip()
        return self

    def _log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no output)"

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; delete the work files. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        process = self.process
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _admin(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the URL is the sandbox's own http:// address
            self.url(path), data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_CALL_TIMEOUT) as response:  # noqa: S310
                result: Any = json.loads(response.read())
                return result
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:500]
            raise RuntimeError(f"sandbox admin {method} {path} failed: HTTP {err.code} {detail}") from None

    def stats(self) -> dict[str, Any]:
        """What ``GET /admin/stats`` returns."""
        reply: dict[str, Any] = self._admin("GET", "/admin/stats")
        return reply

    def faults(self) -> dict[str, Any]:
        """The fault settings, as ``GET /admin/faults`` returns them."""
        reply: dict[str, Any] = self._admin("GET", "/admin/faults")
        return reply

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change some fault settings (the fields of :class:`FaultConfig`). Returns all of them."""
        if "fault_endpoints" in changes:
            changes["fault_endpoints"] = sorted(changes["fault_endpoints"])
        reply: dict[str, Any] = self._admin("POST", "/admin/faults", changes)
        return reply

    def add_key(self, api_key: str, coins: int) -> dict[str, Any]:
        """Add an API key or set its balance. Returns ``{"key_id", "balance"}``."""
        reply: dict[str, Any] = self._admin("POST", "/admin/keys", {"api_key": api_key, "coins": coins})
        return reply

    def rotate_key(self, old_key: str, new_key: str) -> dict[str, Any]:
        """Revoke ``old_key``; its account (jobs, coins) answers to ``new_key`` from now on."""
        reply: dict[str, Any] = self._admin("POST", "/admin/keys/rotate", {"old_key": old_key, "new_key": new_key})
        return reply

    def configure(
        self,
        *,
        error_shape: str | None = None,
        job_seconds: float | None = None,
        result_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Change the error body shape, the duration of new jobs or the lifetime of results.
        Returns the settings."""
        changes = {"error_shape": error_shape, "job_seconds": job_seconds, "result_seconds": result_seconds}
        reply: dict[str, Any] = self._admin("POST", "/admin/settings", {k: v for k, v in changes.items() if v is not None})
        return reply

    def create_jobs(
        self,
        api_key: str,
        count: int = 1,
        complete_after_seconds: float | list[float] = 0.0,
        status: str = "COMPLETED",
        result_bytes: int | None = None,
    ) -> list[str]:
        """Synthetic jobs with no image work and no charge. Returns their ids."""
        payload: dict[str, Any] = {
            "api_key": api_key,
            "count": count,
            "complete_after_seconds": complete_after_seconds,
            "status": status,
        }
        if result_bytes is not None:
            payload["result_bytes"] = result_bytes
        job_ids: list[str] = self._admin("POST", "/admin/jobs", payload)["job_ids"]
        return job_ids

    def reset(self) -> None:
        """Back to the state at start: no jobs, records or counters; starting keys, balances and faults."""
        self._admin("POST", "/admin/reset", {})

    def forget_jobs(self) -> None:
        """Forget every job, as a restarted server would; keep the ledger and records."""
        self._admin("POST", "/admin/forget-jobs", {})


def start_sandbox_process(
    config: SandboxConfig | None = None, *, start_timeout: float = DEFAULT_START_TIMEOUT, **kwargs: Any
) -> SandboxProcess:
    """Start a sandbox in a process of its own and return its handle (also a context manager).

    The API keys are handed over in the environment, never on the command line.

    :param config: the settings; or pass :class:`SandboxConfig` fields as keyword arguments.
    :param start_timeout: seconds allowed for the process to be ready.
    """
    return SandboxProcess(_make_config(config, kwargs)).start(start_timeout)
