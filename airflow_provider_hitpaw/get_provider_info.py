"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_hitpaw import __version__
from airflow_provider_hitpaw.connection_fields import conn_fields, connection_form

INTEGRATION = "HitPaw"
#: Shown on the Providers page. The page links the package name to the ``Documentation`` URL of the
#: package's metadata (``[project.urls]`` in pyproject.toml), which Airflow reads itself.
DESCRIPTION = (
    "HitPaw photo and video enhancement API: a hook, deferrable operators for a photo, a video or a "
    "batch of photos, a sensor, and a local HitPaw sandbox for tests."
)


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-hitpaw",
        "name": "HitPaw",
        # Plain text: Airflow shows it as is, after dropping every ` _ < > character.
        "description": DESCRIPTION,
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://developer.hitpaw.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_hitpaw.hooks.hitpaw"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_hitpaw.operators.hitpaw",
                    "airflow_provider_hitpaw.operators.batch",
                    "airflow_provider_hitpaw.operators.video",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_hitpaw.sensors.hitpaw"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_hitpaw.triggers.hitpaw", "airflow_provider_hitpaw.triggers.jobs"],
            }
        ],
        "extra-links": ["airflow_provider_hitpaw.links.hitpaw.HitPawResultLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_hitpaw.hooks.hitpaw.HitPawHook",
                "hook-name": "HitPaw",
                "connection-type": "hitpaw",
                "conn-fields": conn_fields(),
                "ui-field-behaviour": _dashed(connection_form(extra_fields_in_form=True)),
            }
        ],
    }


def _dashed(form: dict[str, Any]) -> dict[str, Any]:
    """The provider-info spelling (``hidden-fields``) of a ``get_ui_field_behaviour`` form."""
    return {key.replace("_", "-"): value for key, value in form.items()}
