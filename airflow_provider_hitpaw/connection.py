"""Reading a ``hitpaw`` Airflow connection into the settings both hooks use."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_hitpaw.api import DEFAULT_BASE_URL
from airflow_provider_hitpaw.errors import HitPawAuthError, HitPawValidationError
from airflow_provider_hitpaw.retries import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_CONN_ID = "hitpaw_default"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
#: The most one result download may take in all, however its bytes arrive.
DEFAULT_DOWNLOAD_TIMEOUT = 900.0


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """The API's base URL from a connection's host (and port).

    A host without a scheme is taken as https. Plain http is refused unless the host is a loopback
    address (a local sandbox), since the API key travels in a header.
    """
    raw = (host or "").strip()
    if not raw:
        return DEFAULT_BASE_URL
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    try:
        url_port = parts.port
    except ValueError:
        raise HitPawValidationError(f"The connection's host {host!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HitPawValidationError(
            f"The connection's host must be an https URL such as {DEFAULT_BASE_URL}, got {host!r}"
        )
    if parts.username or parts.password:
        raise HitPawValidationError(
            "The connection's host must not carry credentials; put the API key in the password field"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise HitPawValidationError(
            f"Refusing plain http for {parts.hostname!r}: the API key would travel unencrypted. "
            "Use https (only loopback addresses such as a local sandbox may use http)."
        )
    netloc = parts.netloc
    if port and url_port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{netloc}{path}"


#: Upper bounds on the connection's numbers: beyond them a value is a typo, and an infinite or
#: enormous timeout breaks the libraries that get it only after a paid request went out.
MAX_TIMEOUT_SECONDS = 3600.0
MAX_ATTEMPTS = 100
MAX_RETRY_SECONDS = 86_400.0


def _number(extra: dict[str, Any], key: str, default: float, *, minimum: float, maximum: float) -> float:
    """A finite number from the extras, within [minimum, maximum]; checked before any request."""
    value = extra.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise HitPawValidationError(f"Connection extra {key!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise HitPawValidationError(
            f"Connection extra {key!r} must be a number, got {str(value)[:40]!r}"
        ) from None
    if not math.isfinite(number) or not minimum <= number <= maximum:
        raise HitPawValidationError(
            f"Connection extra {key!r} must be a number from {minimum:g} to {maximum:g}, got {str(value)[:40]!r}"
        )
    return number


def _whole_number(extra: dict[str, Any], key: str, default: int, *, minimum: int, maximum: int) -> int:
    number = _number(extra, key, default, minimum=minimum, maximum=maximum)
    if number != int(number):
        raise HitPawValidationError(f"Connection extra {key!r} must be a whole number, got {extra.get(key)!r}")
    return int(number)


def check_api_key(api_key: str, conn_id: str | None) -> str:
    """Refuse a key that could not travel in an HTTP header (found before any request is sent)."""
    if not api_key:
        raise HitPawAuthError(f"Connection {conn_id!r} has no HitPaw API key: put it in the password field")
    if not api_key.isascii() or not api_key.isprintable() or any(ch.isspace() for ch in api_key):
        raise HitPawAuthError(
            f"Connection {conn_id!r} has an API key with spaces, control or non-ASCII characters; "
            "paste the key exactly as HitPaw shows it"
        )
    return api_key


@dataclass(frozen=True)
class HitPawSettings:
    """What a hook needs from its connection.

    :param api_key: the HitPaw API key (kept out of ``repr``).
    :param base_url: e.g. ``https://api-base.hitpaw.com``.
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds to wait for each read of a reply.
    :param download_timeout: seconds one result download may take in all.
    :param retry: the retry policy for status, download and connection test.
    """

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_connection(cls, conn: Connection) -> HitPawSettings:
        api_key = (conn.password or "").strip()
        if api_key:
            _register_secret(api_key)
        check_api_key(api_key, conn.conn_id)
        extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
        base = RetryPolicy()
        retry = RetryPolicy(
            max_attempts=_whole_number(extra, "max_attempts", base.max_attempts, minimum=1, maximum=MAX_ATTEMPTS),
            max_retry_seconds=_number(
                extra, "max_retry_seconds", base.max_retry_seconds, minimum=0, maximum=MAX_RETRY_SECONDS
            ),
        )
        return cls(
            api_key=api_key,
            base_url=normalize_base_url(conn.host, conn.port),
            connect_timeout=_number(
                extra, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, minimum=0.1, maximum=MAX_TIMEOUT_SECONDS
            ),
            read_timeout=_number(extra, "read_timeout", DEFAULT_READ_TIMEOUT, minimum=0.1, maximum=MAX_TIMEOUT_SECONDS),
            download_timeout=_number(
                extra, "download_timeout", DEFAULT_DOWNLOAD_TIMEOUT, minimum=1, maximum=MAX_RETRY_SECONDS
            ),
            retry=retry,
        )


def _register_secret(api_key: str) -> None:
    """Have Airflow mask the key in every log line and rendered field, whatever reads it later."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return
    mask_secret(api_key)
