"""A pytest plugin (registered through the ``pytest11`` entry point) to test DAGs against the sandbox.

The ``hitpaw_sandbox`` fixture starts a sandbox for one test and points a ``hitpaw`` connection at it
(``hitpaw_default`` unless told otherwise), through its ``AIRFLOW_CONN_*`` environment variable, so
the hooks, operators and sensors of a DAG under test talk to it as they would to HitPaw::

    def test_my_dag(hitpaw_sandbox):
        dag.test()
        assert sum(hitpaw_sandbox.stats()["coins_charged_by_key"].values()) == 2

Settings go through the ``hitpaw_sandbox`` marker::

    @pytest.mark.hitpaw_sandbox(coins=10, job_seconds=0.5, conn_id="hitpaw_test", error_5xx=0.2)
    def test_under_faults(hitpaw_sandbox): ...

Any keyword other than ``coins``, ``api_key`` and ``conn_id`` is a :class:`SandboxConfig` field or a
fault (:class:`FaultConfig`). It needs the ``sandbox`` extra (Pillow).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import pytest

DEFAULT_API_KEY = "sandbox-test-key"
DEFAULT_COINS = 1000
DEFAULT_JOB_SECONDS = 0.3


@dataclass
class SandboxConnection:
    """A started sandbox and the connection pointing at it.

    :param handle: the sandbox (see :class:`~airflow_provider_hitpaw.sandbox.runner.SandboxHandle`:
        ``stats()``, ``set_faults()``, ``configure()``, ``reset()``...).
    :param conn_id: the ``hitpaw`` connection that points at it.
    :param api_key: the connection's API key, known to the sandbox.
    """

    handle: Any
    conn_id: str
    api_key: str

    @property
    def base_url(self) -> str:
        return str(self.handle.base_url)

    def url(self, path: str) -> str:
        """An absolute URL on the sandbox, e.g. ``url("/samples/portrait.jpg")`` for a photo to enhance."""
        return str(self.handle.url(path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hitpaw_sandbox(**settings): settings of the hitpaw_sandbox fixture (coins, api_key, conn_id, "
        "job_seconds, faults...)",
    )


@pytest.fixture
def hitpaw_sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxConnection]:
    """A HitPaw sandbox for one test, with a ``hitpaw`` connection pointing at it."""
    from airflow_provider_hitpaw.sandbox.config import FaultConfig
    from airflow_provider_hitpaw.sandbox.runner import start_sandbox

    marker = request.node.get_closest_marker("hitpaw_sandbox")
    settings: dict[str, Any] = dict(marker.kwargs) if marker else {}
    api_key = settings.pop("api_key", DEFAULT_API_KEY)
    coins = settings.pop("coins", DEFAULT_COINS)
    conn_id = settings.pop("conn_id", "hitpaw_default")
    fault_names = {f.name for f in fields(FaultConfig)}
    faults = {k: settings.pop(k) for k in list(settings) if k in fault_names}
    settings.setdefault("job_seconds", DEFAULT_JOB_SECONDS)
    handle = start_sandbox(api_keys={api_key: coins}, **settings)
    try:
        if faults:
            handle.set_faults(**faults)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "hitpaw", "host": handle.base_url, "password": api_key}),
        )
        yield SandboxConnection(handle, conn_id, api_key)
    finally:
        handle.stop()


__all__ = ["SandboxConnection", "hitpaw_sandbox"]
