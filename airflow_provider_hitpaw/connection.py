"""Reading a ``hitpaw`` Airflow connection into the settings both hooks use."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_hitpaw.connection_fields import (
    CONNECT_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DOWNLOAD_TIMEOUT,
    MAX_ATTEMPTS,
    MAX_RETRY_SECONDS,
    READ_TIMEOUT,
    ExtraField,
)
from airflow_provider_hitpaw.connection_fields import (
    DEFAULT_CONN_ID as DEFAULT_CONN_ID,  # where the operators look it up
)
from airflow_provider_hitpaw.contract.endpoints import DEFAULT_BASE_URL
from airflow_provider_hitpaw.errors import HitPawAuthError, HitPawValidationError
from airflow_provider_hitpaw.retries import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection


_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    # The scheme's own port adds nothing (the form asks for 443 on Airflow versions whose Test button
    # needs a port), and port 0 is no port.
    if port and url_port is None and port != _DEFAULT_PORTS[parts.scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{netloc}{path}"


def _read(field: ExtraField, extra: dict[str, Any]) -> float:
    try:
        return field.read(extra)
    except ValueError as err:
        raise HitPawValidationError(str(err)) from None


def check_api_key(api_key: str, conn_id: str | None) -> str:
    """Refuse a key that could not travel in an HTTP header (found before any request is sent).

    :param conn_id: the connection named in the message; None says "The connection" (a connection
        test runs on a copy with a random id the user never saw).
    """
    which = f"Connection {conn_id!r}" if conn_id is not None else "The connection"
    if not api_key:
        raise HitPawAuthError(
            f"{which} has no HitPaw API key: put it in the password field (API Key in the form)"
        )
    if not api_key.isascii() or not api_key.isprintable() or any(ch.isspace() for ch in api_key):
        raise HitPawAuthError(
            f"{which} has an API key with spaces, control or non-ASCII characters; "
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
        retry = RetryPolicy(
            max_attempts=int(_read(MAX_ATTEMPTS, extra)), max_retry_seconds=_read(MAX_RETRY_SECONDS, extra)
        )
        return cls(
            api_key=api_key,
            base_url=normalize_base_url(conn.host, conn.port),
            connect_timeout=_read(CONNECT_TIMEOUT, extra),
            read_timeout=_read(READ_TIMEOUT, extra),
            download_timeout=_read(DOWNLOAD_TIMEOUT, extra),
            retry=retry,
        )


def _register_secret(api_key: str) -> None:
    """Have Airflow mask the key in every log line and rendered field, whatever reads it later."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return
    mask_secret(api_key)
