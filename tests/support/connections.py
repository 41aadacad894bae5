"""``hitpaw`` connections for tests, defined the way users can: an ``AIRFLOW_CONN_<ID>`` variable."""

from __future__ import annotations

import json

import pytest

#: The sandbox of the ``sandbox`` fixtures (tests/conftest.py): its key, coins and job duration.
SANDBOX_API_KEY = "test-key"
SANDBOX_COINS = 1000
SANDBOX_JOB_SECONDS = 0.3


def set_hitpaw_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, base_url: str, api_key: str,
                          **extra: object) -> None:
    """Define a ``hitpaw`` connection through its ``AIRFLOW_CONN_<ID>`` environment variable."""
    conn: dict[str, object] = {"conn_type": "hitpaw", "host": base_url, "password": api_key}
    if extra:
        conn["extra"] = extra
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
