"""Settings of the HitPaw sandbox: server options, coin prices and fault injection.

Plain dataclasses with no dependency beyond the standard library, so that a test or benchmark can
build a configuration without importing aiohttp, Pillow or Airflow.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

#: The endpoints a fault can be limited to: job submissions, status polls, result downloads and the
#: storage host's PUT of a presigned upload.
FAULT_ENDPOINTS: frozenset[str] = frozenset({"submit", "status", "result", "upload"})

#: The error body shapes HitPaw is known to use (see docs/hitpaw-api.md).
ERROR_SHAPES: tuple[str, ...] = ("error_code", "code", "code_msg")

#: Flat coins charged per job of a model, whatever its size. Empty by default: a photo job is charged
#: HitPaw's price for its result's size (:func:`airflow_provider_hitpaw.contract.pricing.estimate_coins`),
#: a video job HitPaw's price per output second for its resolution and frame rate
#: (:func:`~airflow_provider_hitpaw.contract.pricing.estimate_video_coins`), both from
#: ``docs/get-started/pricing.md``; a model given in ``prices`` (``--price MODEL=COINS``) is charged that
#: flat price instead.
DEFAULT_PRICES: dict[str, int] = {}

#: How long a result stays downloadable: HitPaw deletes enhancement outputs after 8 days
#: (``docs/faq.md`` of HitPaw's public developer docs, ``shiyao1122/hitpaw-developer-docs``).
DEFAULT_RESULT_SECONDS = 8 * 86400.0
#: The longest result lifetime accepted.
MAX_RESULT_SECONDS = 366 * 86400.0

_STATE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_PROBABILITIES = ("error_5xx", "rate_429", "drop", "drop_after", "slow", "fail_job")


@dataclass(frozen=True)
class FaultConfig:
    """Which faults the sandbox injects, and how often.

    Every probability is in [0, 1] and is rolled once per request (``fail_job`` once per job).

    :param error_5xx: reply 500/502/503 with an HTML gateway page; the request is not processed.
    :param rate_429: reply HTTP 429 with code 100429000 and ``Retry-After: 1``; not processed.
    :param drop: close the connection without a reply; not processed.
    :param drop_after: process the request (a submission is created and charged), then close the
        connection without a reply.
    :param slow: process the request, then wait ``slow_seconds`` before replying.
    :param slow_seconds: the delay of a ``slow`` reply.
    :param fail_job: the job ends in ``fail_job_status`` (it is charged all the same, like HitPaw does).
    :param fail_job_status: the state a ``fail_job`` job ends in: ERROR by default, or another
        upper-case state such as NSFW, REJECT or CANCEL.
    :param rate_limit_rps: requests per second allowed on ``/api/*`` across all keys (a token bucket
        with a burst of ``max(1, rate_limit_rps)``); None for no limit.
    :param rate_limit_status: whether status requests count against ``rate_limit_rps`` (True: one
        limit over the whole API); False limits the other ``/api/*`` requests only (submissions,
        presigns), e.g. to measure how fast a batch submits under a limit of R submissions a second.
    :param fault_endpoints: the endpoints the probabilities apply to, among ``submit``, ``status``,
        ``result`` and ``upload`` (the PUT of a presigned upload).
    :param seed: seed of the random rolls, for reproducible runs; None for a random one.
    """

    error_5xx: float = 0.0
    rate_429: float = 0.0
    drop: float = 0.0
    drop_after: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 35.0
    fail_job: float = 0.0
    fail_job_status: str = "ERROR"
    rate_limit_rps: float | None = None
    rate_limit_status: bool = True
    fault_endpoints: frozenset[str] = FAULT_ENDPOINTS
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fault_endpoints", frozenset(self.fault_endpoints))
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.fail_job_status, str) or not _STATE_NAME.match(self.fail_job_status):
            raise ValueError(f"fail_job_status must be an upper-case state such as NSFW, got {self.fail_job_status!r}")
        if not _is_number(self.slow_seconds) or not 0.0 <= self.slow_seconds <= 3600.0:
            raise ValueError(f"slow_seconds must be in [0, 3600], got {self.slow_seconds!r}")
        if self.rate_limit_rps is not None and (
            not _is_number(self.rate_limit_rps) or self.rate_limit_rps <= 0
        ):
            raise ValueError(f"rate_limit_rps must be a positive number or None, got {self.rate_limit_rps!r}")
        if not isinstance(self.rate_limit_status, bool):
            raise ValueError(f"rate_limit_status must be true or false, got {self.rate_limit_status!r}")
        unknown = set(self.fault_endpoints) - FAULT_ENDPOINTS
        if unknown:
            raise ValueError(
                f"unknown fault endpoints {sorted(unknown)}; choose among {sorted(FAULT_ENDPOINTS)}"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")

    def updated(self, **changes: Any) -> FaultConfig:
        """A copy with some fields changed (validated).

        :raises ValueError: for an unknown field or an invalid value.
        """
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        if "fault_endpoints" in changes:
            endpoints = changes["fault_endpoints"]
            if isinstance(endpoints, str):
                endpoints = [e for e in endpoints.split(",") if e.strip()]
            changes["fault_endpoints"] = frozenset(str(e).strip() for e in endpoints)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fault_endpoints"] = sorted(self.fault_endpoints)
        return data


@dataclass
class SandboxConfig:
    """Settings of one sandbox server.

    :param host: address to bind; loopback by default. Any other address needs ``allow_remote``.
    :param port: port to bind; 0 picks a free one.
    :param api_keys: the valid API keys, either as a mapping key -> starting coins or as a list of
        keys that all start with ``coins``.
    :param coins: starting balance of the keys given as a list.
    :param job_seconds: how long a job takes, from submission to COMPLETED.
    :param result_seconds: how long a result stays downloadable once the job is COMPLETED (8 days
        by default, like HitPaw); after it ``res_url`` answers 404 and a periodic sweep deletes the
        file, so disk use is bounded by this lifetime times the job rate. The job itself is still
        known (and still COMPLETED) to ``/api/task-status``.
    :param prices: flat coins charged per job of a model, whatever the photo's size; merged over
        :data:`DEFAULT_PRICES`. A photo model not listed is charged HitPaw's price for its result's
        size.
    :param error_shape: the error body: ``error_code`` -> ``{"error_code", "message"}``,
        ``code`` -> ``{"code", "message"}``, ``code_msg`` -> ``{"code", "msg"}``.
    :param faults: fault injection settings.
    :param allow_remote: allow binding an address other than loopback.
    :param admin: serve the ``/admin/`` endpoints; None serves them only on a loopback address.
    :param workers: threads doing the Pillow work (the event loop never runs it).
    :param fetch_timeout: seconds allowed for downloading an ``img_url``.
    :param max_fetch_bytes: largest ``img_url`` download accepted.
    :param max_work_megapixels: largest result the sandbox will actually compute; a bigger
        (but valid) job ends in ERROR instead of exhausting the host's memory.
    :param public_base_url: base of the ``res_url`` links; by default the address the server is
        bound to.
    :param access_log: log each request (never the API key: the log has no headers but User-Agent
        and Referer).
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_keys: Mapping[str, int] | Iterable[str] = field(default_factory=dict)
    coins: int = 1000
    job_seconds: float = 2.0
    result_seconds: float = DEFAULT_RESULT_SECONDS
    prices: Mapping[str, int] = field(default_factory=dict)
    error_shape: str = "error_code"
    faults: FaultConfig = field(default_factory=FaultConfig)
    allow_remote: bool = False
    admin: bool | None = None
    workers: int = 2
    fetch_timeout: float = 10.0
    max_fetch_bytes: int = 64 * 1024 * 1024
    max_work_megapixels: float = 200.0
    public_base_url: str | None = None
    access_log: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.api_keys, str):
            self.api_keys = [self.api_keys]
        if isinstance(self.api_keys, Mapping):
            keys = {str(k): int(v) for k, v in self.api_keys.items()}
        else:
            keys = {str(k): int(self.coins) for k in self.api_keys}
        if any(not k.strip() for k in keys):
            raise ValueError("API keys must be non-empty strings")
        if any(v < 0 for v in keys.values()):
            raise ValueError("starting coin balances must not be negative")
        self.api_keys = keys
        self.prices = {**DEFAULT_PRICES, **{str(k): int(v) for k, v in self.prices.items()}}
        if any(v < 0 for v in self.prices.values()):
            raise ValueError("prices must not be negative")
        if self.error_shape not in ERROR_SHAPES:
            raise ValueError(f"error_shape must be one of {ERROR_SHAPES}, got {self.error_shape!r}")
        if not _is_number(self.job_seconds) or self.job_seconds < 0:
            raise ValueError(f"job_seconds must be a number >= 0, got {self.job_seconds!r}")
        check_result_seconds(self.result_seconds)
        self.result_seconds = float(self.result_seconds)
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port!r}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.fetch_timeout <= 0 or self.max_fetch_bytes <= 0 or self.max_work_megapixels <= 0:
            raise ValueError("fetch_timeout, max_fetch_bytes and max_work_megapixels must be positive")
        if isinstance(self.faults, Mapping):
            self.faults = FaultConfig(**self.faults)
        if not self.is_loopback and not self.allow_remote:
            raise ValueError(
                f"refusing to bind {self.host!r}: the sandbox binds loopback only unless allow_remote=True"
            )

    @property
    def is_loopback(self) -> bool:
        """Whether ``host`` is a loopback address (or ``localhost``)."""
        return is_loopback_host(self.host)

    @property
    def admin_enabled(self) -> bool:
        """Whether the ``/admin/`` endpoints are served."""
        return self.is_loopback if self.admin is None else bool(self.admin)

    @property
    def balances(self) -> dict[str, int]:
        """The starting balance of each key (a copy)."""
        return dict(self.api_keys)  # type: ignore[arg-type]


def check_result_seconds(value: object) -> None:
    """:raises ValueError: unless ``value`` is a result lifetime in (0, :data:`MAX_RESULT_SECONDS`]."""
    if not _is_number(value) or not 0 < value <= MAX_RESULT_SECONDS:  # type: ignore[operator]
        raise ValueError(f"result_seconds must be a number in (0, {MAX_RESULT_SECONDS:g}], got {value!r}")


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address is loopback only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
