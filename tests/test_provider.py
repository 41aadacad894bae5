"""Provider metadata, connection settings, and Airflow seeing the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_hitpaw.connection import HitPawSettings, normalize_base_url
from airflow_provider_hitpaw.connection_fields import port_needed_by_test_button
from airflow_provider_hitpaw.errors import HitPawAuthError, HitPawValidationError
from airflow_provider_hitpaw.get_provider_info import get_provider_info
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from tests.support.connections import set_hitpaw_connection


def test_provider_info_validates_against_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_provider_info_declares_the_connection_type():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-hitpaw"
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "hitpaw"
    assert conn["hook-class-name"] == "airflow_provider_hitpaw.hooks.hitpaw.HitPawHook"
    behaviour = conn["ui-field-behaviour"]
    assert behaviour["relabeling"]["password"] == "API Key"
    assert behaviour["placeholders"]["host"] == "https://api-base.hitpaw.com"
    assert {"login", "schema"} <= set(behaviour["hidden-fields"])
    # The port is shown only where Airflow's Test button needs one (tests/test_first_hour.py).
    assert ("port" in behaviour["hidden-fields"]) is not port_needed_by_test_button()


def test_every_module_named_in_provider_info_imports():
    import importlib

    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for dotted in [c["hook-class-name"] for c in info["connection-types"]] + info.get("extra-links", []):
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name)


def test_hook_class_attributes():
    assert HitPawHook.conn_type == "hitpaw"
    assert HitPawHook.default_conn_name == "hitpaw_default"
    assert HitPawHook.get_ui_field_behaviour()["relabeling"]["password"] == "API Key"


def test_connection_from_env_var(monkeypatch):
    set_hitpaw_connection(monkeypatch, "hitpaw_default", "https://api-base.hitpaw.com", "secret-key-1",
                          read_timeout=12, max_attempts=2)
    settings = HitPawHook().settings
    assert settings.api_key == "secret-key-1"
    assert settings.base_url == "https://api-base.hitpaw.com"
    assert settings.read_timeout == 12 and settings.retry.max_attempts == 2
    assert "secret-key-1" not in repr(settings)


def test_connection_uri_form(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HP_URI", "hitpaw://:uri-key-123@api-base.hitpaw.com")
    settings = HitPawHook("hp_uri").settings
    assert settings.api_key == "uri-key-123"
    assert settings.base_url == "https://api-base.hitpaw.com"


def test_missing_key_is_an_auth_error(monkeypatch):
    set_hitpaw_connection(monkeypatch, "nokey", "https://api-base.hitpaw.com", "")
    with pytest.raises(HitPawAuthError, match="password field"):
        HitPawHook("nokey").settings


def test_connection_is_not_read_in_init(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NEVER_DEFINED", raising=False)
    HitPawHook("never_defined")  # no lookup, no error until used


@pytest.mark.parametrize(("host", "port", "expected"), [
    (None, None, "https://api-base.hitpaw.com"),
    ("", None, "https://api-base.hitpaw.com"),
    ("api-base.hitpaw.com", None, "https://api-base.hitpaw.com"),
    ("https://api-base.hitpaw.com/", None, "https://api-base.hitpaw.com"),
    ("http://127.0.0.1:8899", None, "http://127.0.0.1:8899"),
    ("http://localhost", 8899, "http://localhost:8899"),
    ("http://[::1]:9000", None, "http://[::1]:9000"),
    ("https://proxy.example.com/hitpaw", None, "https://proxy.example.com/hitpaw"),
])
def test_base_url(host, port, expected):
    assert normalize_base_url(host, port) == expected


@pytest.mark.parametrize("host", ["http://api-base.hitpaw.com", "http://10.0.0.5:8899", "ftp://x",
                                  "https://user:pw@api-base.hitpaw.com", "https://x:notaport"])
def test_unsafe_or_bad_base_url_is_refused(host):
    with pytest.raises(HitPawValidationError):
        normalize_base_url(host)


@pytest.mark.parametrize("extra", [{"read_timeout": "abc"}, {"connect_timeout": 0}, {"max_attempts": 0}])
def test_bad_extras(monkeypatch, extra):
    set_hitpaw_connection(monkeypatch, "badextra", "https://api-base.hitpaw.com", "k-12345", **extra)
    with pytest.raises(HitPawValidationError):
        HitPawHook("badextra").settings


def test_settings_from_connection_object():
    from airflow.sdk import Connection

    conn = Connection(conn_id="c", conn_type="hitpaw", password="abc-12345", host="https://h.example")
    assert HitPawSettings.from_connection(conn).base_url == "https://h.example"


def test_airflow_providers_list_shows_the_package(tmp_path):
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    airflow_bin = Path(sys.executable).parent / "airflow"
    result = subprocess.run([str(airflow_bin), "providers", "list", "-o", "json"], env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-hitpaw" in result.stdout


def test_the_docs_table_lists_every_connection_extra_with_its_default_and_range():
    """One source for the defaults: the documented table (docs/hook.md) is checked against the declaration."""
    from pathlib import Path

    from airflow_provider_hitpaw.connection_fields import EXTRA_FIELDS

    readme = (Path(__file__).parent.parent / "docs" / "hook.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    for field in EXTRA_FIELDS:
        row = rows.get(f"`{field.key}`")
        assert row is not None, f"docs/hook.md's connection table has no row for {field.key}"
        assert f"default {field.default:g}" in row, row
        assert f"{field.minimum:g} to {field.maximum:g}" in row, row


def test_the_form_is_declared_once_for_both_airflow_lines():
    from airflow_provider_hitpaw.connection_fields import EXTRA_FIELDS

    info = get_provider_info()["connection-types"][0]
    old_form = HitPawHook.get_ui_field_behaviour()
    assert list(info["conn-fields"]) == [f.key for f in EXTRA_FIELDS]
    assert "extra" in info["ui-field-behaviour"]["hidden-fields"]
    assert "extra" not in old_form["hidden_fields"]  # before 3.2 the extras are typed as JSON
    assert json.loads(old_form["placeholders"]["extra"]) == {
        f.key: info["conn-fields"][f.key]["schema"]["default"] for f in EXTRA_FIELDS
    }
    assert info["ui-field-behaviour"]["relabeling"] == old_form["relabeling"]


def test_the_providers_page_shows_a_plain_description_and_links_to_the_projects_docs():
    """What Airflow's Providers page shows: the description after Airflow drops RST characters, and the
    link it takes from the package's ``Documentation`` URL (not a page under airflow.apache.org)."""
    from importlib.metadata import metadata

    from airflow.providers_manager import ProvidersManager

    from airflow_provider_hitpaw.get_provider_info import DESCRIPTION

    provider = ProvidersManager().providers["airflow-provider-hitpaw"]
    urls = dict(entry.split(", ", 1) for entry in metadata("airflow-provider-hitpaw").get_all("Project-URL") or [])
    assert {"Documentation", "Source", "Changelog"} <= set(urls)
    # Airflow 3.1 keeps the space after the comma (a browser drops it from a link) and splits each entry
    # at every comma: a URL holding one would break the provider's discovery there.
    assert provider.data["documentation-url"].strip() == urls["Documentation"]
    assert not any("," in url for url in urls.values())
    assert "airflow.apache.org" not in urls["Documentation"]
    assert not set("`_<>") & set(DESCRIPTION)  # Airflow would drop them: shown as written
    assert provider.data["description"] == DESCRIPTION
