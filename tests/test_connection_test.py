"""The connection form and its Test button, through Airflow's own REST API (in this process) against the
sandbox: the request the UI's Test button sends, with the connection stored as the form stores it.

Airflow 3.3.0 to 3.3.2's connection list sends ``port: 0`` for a connection without a port, and the API
refuses the test (apache/airflow PR #73298 fixes it). There the form shows a port field; with the port
it asks for, the test reaches the hook. ``tests/system/test_ui_browser.py`` clicks the real button.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_hitpaw.connection_fields import (
    TEST_BUTTON_PORT,
    connection_form,
    port_needed_by_test_button,
)
from airflow_provider_hitpaw.get_provider_info import get_provider_info
from airflow_provider_hitpaw.hooks.hitpaw import CONNECTION_TEST_JOB_ID
from tests.support.connections import SANDBOX_API_KEY

REFUSED_PORT_MESSAGE = "The host or port to test differs from the stored connection"


@pytest.mark.parametrize(("version", "needed"), [
    ("3.1.8", False), ("3.2.2", False), ("3.3.0", True), ("3.3.2", True), ("3.3.2rc1", True),
])
def test_the_port_is_asked_for_only_where_the_test_button_needs_it(version, needed):
    assert port_needed_by_test_button(version) is needed
    form = connection_form(extra_fields_in_form=True, show_port=needed)
    assert ("port" not in form["hidden_fields"]) is needed
    if needed:
        assert str(TEST_BUTTON_PORT) in form["placeholders"]["port"]
        assert "Test button" in form["relabeling"]["port"]


def test_the_provider_info_follows_the_installed_airflow():
    (conn_type,) = get_provider_info()["connection-types"]
    hidden = conn_type["ui-field-behaviour"]["hidden-fields"]
    assert ("port" in hidden) is not port_needed_by_test_button()


# --- Airflow's /api/v2/connections/test, as the UI calls it -------------------------------------


@pytest.fixture(scope="module")
def airflow_api(airflow_db) -> Iterator[Any]:
    """Airflow's API app in this process (no server), with the Test button enabled and no login."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        patch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        with TestClient(create_app()) as client:
            token = client.get("/auth/token").json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            yield client


def _store(api, conn_id: str, host: str, api_key: str, port: int | None) -> None:
    """The connection as the Add dialog stores it (a hidden port is sent as nothing at all)."""
    api.delete(f"/api/v2/connections/{conn_id}")
    body: dict[str, Any] = {"connection_id": conn_id, "conn_type": "hitpaw", "host": host, "password": api_key}
    if port is not None:
        body["port"] = port
    reply = api.post("/api/v2/connections", json=body)
    assert reply.status_code == 201, reply.text


def _click_test(api, conn_id: str) -> Any:
    """The request the connection list's Test button sends: the listed row, its password masked and
    its port through JavaScript's ``Number()`` (``Number(null)`` is 0)."""
    row = api.get(f"/api/v2/connections/{conn_id}").json()
    body = {
        "connection_id": row["connection_id"],
        "conn_type": row["conn_type"],
        "description": row["description"] or "",
        "extra": row["extra"] or "{}",
        "host": row["host"] or "",
        "login": row["login"] or "",
        "password": row["password"] or "",
        "port": int(row["port"] or 0),
        "schema": row["schema"] or "",
    }
    return api.post("/api/v2/connections/test", json=body)


def test_with_the_port_the_form_asks_for_the_test_button_reaches_the_hook(airflow_api, sandbox):
    _store(airflow_api, "hitpaw_ui", sandbox.base_url, SANDBOX_API_KEY, TEST_BUTTON_PORT)
    reply = _click_test(airflow_api, "hitpaw_ui")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "status": True, "message": f"Connection to {sandbox.base_url} works: the API key was accepted",
    }

    _store(airflow_api, "hitpaw_ui", sandbox.base_url, "a-wrong-key", TEST_BUTTON_PORT)
    reply = _click_test(airflow_api, "hitpaw_ui")
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["status"] is False
    assert result["message"].startswith("HitPaw refused the API key: api_key is not valid")
    assert CONNECTION_TEST_JOB_ID not in result["message"] and "job" not in result["message"]


def test_without_a_port_the_test_button_fails_where_airflow_has_the_bug(airflow_api, sandbox):
    """What the port field works around: documents the Airflow bug, and notices its fix."""
    _store(airflow_api, "hitpaw_no_port", sandbox.base_url, SANDBOX_API_KEY, None)
    reply = _click_test(airflow_api, "hitpaw_no_port")
    if port_needed_by_test_button():
        assert reply.status_code == 400 and REFUSED_PORT_MESSAGE in reply.text, (
            "This Airflow tests a connection without a port: set TEST_BUTTON_NEEDS_PORT_UNTIL"
        )
    else:
        assert reply.status_code == 200 and reply.json()["status"] is True, reply.text


def test_a_connection_without_a_key_is_named_as_the_user_sees_it(airflow_api, sandbox):
    """The API tests a copy under a random id: the message must not name that id."""
    _store(airflow_api, "hitpaw_no_key", sandbox.base_url, "", TEST_BUTTON_PORT)
    row = airflow_api.get("/api/v2/connections/hitpaw_no_key").json()
    body = {"connection_id": "hitpaw_no_key", "conn_type": "hitpaw", "host": row["host"], "port": row["port"]}
    reply = airflow_api.post("/api/v2/connections/test", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "status": False,
        "message": "The connection has no HitPaw API key: put it in the password field (API Key in the form)",
    }
