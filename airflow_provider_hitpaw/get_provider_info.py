"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_hitpaw import __version__

INTEGRATION = "HitPaw"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-hitpaw",
        "name": "HitPaw",
        "description": "`HitPaw <https://www.hitpaw.com/hitpaw-api.html>`__ photo enhancement API.",
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
                "python-modules": ["airflow_provider_hitpaw.operators.hitpaw"],
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
                "python-modules": ["airflow_provider_hitpaw.triggers.hitpaw"],
            }
        ],
        "extra-links": ["airflow_provider_hitpaw.links.hitpaw.HitPawResultLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_hitpaw.hooks.hitpaw.HitPawHook",
                "hook-name": "HitPaw",
                "connection-type": "hitpaw",
                "conn-fields": {
                    "connect_timeout": {
                        "label": "Connect timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "read_timeout": {
                        "label": "Read timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "max_attempts": {
                        "label": "Attempts per request (status, download, test)",
                        "schema": {"type": ["integer", "null"], "default": 5},
                        "description": "Submissions are only retried when nothing can have been charged.",
                    },
                    "max_retry_seconds": {
                        "label": "Give up retrying after (seconds)",
                        "schema": {"type": ["number", "null"], "default": 120},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api-base.hitpaw.com",
                        "password": "Your HitPaw API key",
                    },
                },
            }
        ],
    }
