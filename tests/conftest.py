"""Shared fixtures: the scripted HTTP server, hitpaw connections from env vars, and the sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# First: it points AIRFLOW_HOME at a throw-away folder before anything imports Airflow.
from tests.support.airflow_home import airflow_db  # noqa: F401
from tests.support.connections import (
    SANDBOX_API_KEY,
    SANDBOX_COINS,
    SANDBOX_JOB_SECONDS,
    set_hitpaw_connection,
)
from tests.support.scripted_server import ScriptedServer


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scripted_conn(monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> str:
    """A connection id pointing at the scripted server, with fast retries."""
    set_hitpaw_connection(monkeypatch, "hitpaw_scripted", scripted.base_url, "scripted-key",
                          read_timeout=2, connect_timeout=2)
    return "hitpaw_scripted"




# -- HitPaw sandbox ---------------------------------------------------------------------------------



def _start_sandbox():  # type: ignore[no-untyped-def]
    from airflow_provider_hitpaw.sandbox import start_sandbox

    return start_sandbox(api_keys={SANDBOX_API_KEY: SANDBOX_COINS}, job_seconds=SANDBOX_JOB_SECONDS)


@pytest.fixture
def sandbox() -> Iterator[object]:
    """A fresh HitPaw sandbox (a ``SandboxHandle``) for one test.

    API key ``test-key`` with 1000 coins; jobs take 0.3 s; no faults. ``sandbox.base_url`` is its
    address, ``sandbox.url(path)`` builds URLs; see ``airflow_provider_hitpaw.sandbox.runner``.
    """
    handle = _start_sandbox()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sandbox_conn(monkeypatch: pytest.MonkeyPatch, sandbox: object) -> str:
    """The ``hitpaw_sandbox`` connection, pointing at the ``sandbox`` fixture with its key."""
    set_hitpaw_connection(monkeypatch, "hitpaw_sandbox", sandbox.base_url, SANDBOX_API_KEY)  # type: ignore[attr-defined]
    return "hitpaw_sandbox"


@pytest.fixture(scope="module")
def sandbox_module() -> Iterator[object]:
    """Like ``sandbox`` but shared by a module's tests: call ``sandbox_module.reset()`` for a clean state."""
    handle = _start_sandbox()
    try:
        yield handle
    finally:
        handle.stop()
