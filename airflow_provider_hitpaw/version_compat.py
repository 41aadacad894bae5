"""What the running Airflow can do, decided once at import."""

from __future__ import annotations

from airflow import __version__ as _airflow_version
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)

#: Airflow 3.3 added ``context["task_state_store"]`` (kept across tries) and rendering of templated
#: trigger kwargs in the triggerer for ``start_from_trigger``.
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= Version("3.3.0")

if AIRFLOW_V_3_3_PLUS:
    from airflow.sdk.exceptions import (  # type: ignore[attr-defined,unused-ignore]  # (not in 3.1)
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
else:  # 3.1 and 3.2 only have them in airflow.exceptions (deprecated there since 3.3)
    from airflow.exceptions import (  # type: ignore[no-redef,unused-ignore]
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )

if AIRFLOW_V_3_3_PLUS:
    from airflow.sdk.exceptions import TaskDeferred  # type: ignore[attr-defined,unused-ignore]  # (not in 3.1)
else:
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,unused-ignore]

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
]
