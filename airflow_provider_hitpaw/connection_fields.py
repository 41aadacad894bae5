"""The ``hitpaw`` connection's fields, declared once: defaults, bounds and the connection form.

Read by the connection reader (:mod:`airflow_provider_hitpaw.connection`), the retry policy, the
provider info (``conn-fields``, ``ui-field-behaviour``) and the older form (``get_ui_field_behaviour``);
the README's connection table is checked against it by a test. Imports nothing from Airflow: the
provider info is read while Airflow itself is starting.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_hitpaw.contract.endpoints import DEFAULT_BASE_URL

DEFAULT_CONN_ID = "hitpaw_default"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
#: The most one result download may take in all, however its bytes arrive.
DEFAULT_DOWNLOAD_TIMEOUT = 900.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MAX_RETRY_SECONDS = 120.0


@dataclass(frozen=True)
class ExtraField:
    """One number of the connection's extras: read by :meth:`HitPawSettings.from_connection`, shown
    in the connection form (:func:`connection_form`), listed in the README's table.

    Bounded above as well: an infinite or enormous value breaks the HTTP libraries only after a paid
    request went out, so it is refused when the connection is read.
    """

    key: str
    label: str
    default: float
    minimum: float
    maximum: float
    whole: bool = False
    description: str | None = None

    def read(self, extra: dict[str, Any]) -> float:
        """The value in ``extra`` (or the default), checked before any request is sent.

        :raises ValueError: for anything but a finite number within the bounds.
        """
        value = extra.get(self.key)
        if value is None or value == "":
            return self.default
        number = None
        if not isinstance(value, bool):
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                number = None
        if number is None or not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            kind = "a whole number" if self.whole else "a number"
            raise ValueError(
                f"Connection extra {self.key!r} must be {kind} from {self.minimum:g} to {self.maximum:g}, "
                f"got {str(value)[:40]!r}"
            )
        if self.whole and number != int(number):
            raise ValueError(f"Connection extra {self.key!r} must be a whole number, got {value!r}")
        return number


CONNECT_TIMEOUT = ExtraField("connect_timeout", "Connect timeout (seconds)", DEFAULT_CONNECT_TIMEOUT, 0.1, 3600)
READ_TIMEOUT = ExtraField("read_timeout", "Read timeout (seconds)", DEFAULT_READ_TIMEOUT, 0.1, 3600)
DOWNLOAD_TIMEOUT = ExtraField(
    "download_timeout", "Result download limit (seconds)", DEFAULT_DOWNLOAD_TIMEOUT, 1, 86_400,
    description="The most one result download may take in all, however slowly its bytes arrive.",
)
MAX_ATTEMPTS = ExtraField(
    "max_attempts", "Attempts per request (status, download, test)", DEFAULT_MAX_ATTEMPTS, 1, 100,
    whole=True, description="Submissions are only retried when nothing can have been charged.",
)
MAX_RETRY_SECONDS = ExtraField(
    "max_retry_seconds", "Give up retrying after (seconds)", DEFAULT_MAX_RETRY_SECONDS, 0, 86_400
)
#: Every extra the connection reads, in the order of the form.
EXTRA_FIELDS = (CONNECT_TIMEOUT, READ_TIMEOUT, DOWNLOAD_TIMEOUT, MAX_ATTEMPTS, MAX_RETRY_SECONDS)


#: The first Airflow release whose connection list sends ``port: 0`` for a connection without a port
#: when its Test button is clicked, and whose API then refuses the test ("The host or port to test
#: differs from the stored connection"). apache/airflow PR #73298 fixes it; no release with the fix
#: was out when this was written (3.3.2 is the newest), so the form keeps showing the port from 3.3.0 on.
TEST_BUTTON_NEEDS_PORT_SINCE = (3, 3, 0)
#: The first release with PR #73298, once known: the port is hidden again from there on.
TEST_BUTTON_NEEDS_PORT_UNTIL: tuple[int, int, int] | None = None
#: What the port field suggests: any port works for the Test button; HitPaw's https port reads best.
TEST_BUTTON_PORT = 443


def port_needed_by_test_button(airflow_version: str | None = None) -> bool:
    """Whether this Airflow's Test button fails for a connection without a port (see
    :data:`TEST_BUTTON_NEEDS_PORT_SINCE`). Reads the installed version without importing Airflow.

    :param airflow_version: the version to judge; by default the installed ``apache-airflow``'s.
    """
    if airflow_version is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            airflow_version = version("apache-airflow")
        except PackageNotFoundError:
            return False
    release = _release(airflow_version)
    if release < TEST_BUTTON_NEEDS_PORT_SINCE:
        return False
    return TEST_BUTTON_NEEDS_PORT_UNTIL is None or release < TEST_BUTTON_NEEDS_PORT_UNTIL


def _release(text: str) -> tuple[int, int, int]:
    """``(3, 3, 2)`` of ``"3.3.2"``, ``"3.3.2rc1"`` or ``"3.4.0.dev0"``; missing parts are 0."""
    found = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text.strip())
    if found is None:
        return (0, 0, 0)
    major, minor, micro = (int(part or 0) for part in found.groups())
    return major, minor, micro


def connection_form(*, extra_fields_in_form: bool, show_port: bool | None = None) -> dict[str, Any]:
    """The connection form: Airflow 3.2+ shows each extra as a field of its own (``conn-fields``) and
    hides the raw extra; older versions show the raw extra, with the defaults as its placeholder.

    :param show_port: show the port, labelled for the Test button (see :func:`port_needed_by_test_button`,
        which decides by default). The hooks accept a port and ignore one that adds nothing to the
        base URL (443 for https).
    """
    if show_port is None:
        show_port = port_needed_by_test_button()
    placeholders = {"host": DEFAULT_BASE_URL, "password": "Your HitPaw API key"}
    relabeling = {"password": "API Key", "host": "Base URL"}
    hidden = ["schema", "login"]
    if show_port:
        relabeling["port"] = "Port (for the Test button)"
        placeholders["port"] = f"{TEST_BUTTON_PORT}: Airflow's Test button fails on a connection without a port"
    else:
        hidden.insert(1, "port")
    if extra_fields_in_form:
        hidden.append("extra")
    else:
        placeholders["extra"] = json.dumps({f.key: _plain(f.default) for f in EXTRA_FIELDS})
    return {"hidden_fields": hidden, "relabeling": relabeling, "placeholders": placeholders}


def conn_fields() -> dict[str, Any]:
    """``conn-fields`` of the provider info: one form field per extra."""
    fields: dict[str, Any] = {}
    for f in EXTRA_FIELDS:
        entry: dict[str, Any] = {
            "label": f.label,
            "schema": {"type": ["integer" if f.whole else "number", "null"], "default": _plain(f.default)},
        }
        if f.description:
            entry["description"] = f.description
        fields[f.key] = entry
    return fields


def _plain(number: float) -> float | int:
    return int(number) if number == int(number) else number


