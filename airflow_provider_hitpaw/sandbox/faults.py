"""Rolling the dice for injected faults, and the global rate limit.

The rolls come from one seeded ``random.Random`` and are drawn in a fixed order, so a run with a
given seed and the same sequence of requests injects the same faults.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from enum import Enum

from airflow_provider_hitpaw.sandbox.config import FaultConfig


class Fault(str, Enum):
    """A fault the sandbox can inject (the names used in the stats)."""

    ERROR_5XX = "error_5xx"
    RATE_429 = "rate_429"
    DROP = "drop"
    DROP_AFTER = "drop_after"
    SLOW = "slow"
    FAIL_JOB = "fail_job"
    RATE_LIMIT = "rate_limit"


# Faults decided before the request is processed, in the order they are rolled.
BEFORE_FAULTS = (Fault.ERROR_5XX, Fault.RATE_429, Fault.DROP)
# Faults decided after the request has been processed.
AFTER_FAULTS = (Fault.DROP_AFTER, Fault.SLOW)


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``max(1, rate)``.

    :param rate: tokens added per second.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._last = time.monotonic()

    def take(self) -> bool:
        """Take one token; False when the bucket is empty."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FaultInjector:
    """Decides which fault, if any, hits a request, and counts what it injected.

    :param config: the fault settings.
    """

    def __init__(self, config: FaultConfig) -> None:
        self.injected: Counter[str] = Counter()
        self.config = config
        self._rng = random.Random(config.seed)
        self._bucket = _bucket_for(config)

    def reconfigure(self, config: FaultConfig) -> None:
        """Use new settings. The random sequence restarts only when the seed changes."""
        if config.seed != self.config.seed:
            self._rng = random.Random(config.seed)
        if config.rate_limit_rps != self.config.rate_limit_rps:
            self._bucket = _bucket_for(config)
        self.config = config

    def reset(self, config: FaultConfig) -> None:
        """New settings, a fresh random sequence and a fresh bucket; counters back to zero."""
        self.injected.clear()
        self.config = config
        self._rng = random.Random(config.seed)
        self._bucket = _bucket_for(config)

    def rate_limited(self) -> bool:
        """Whether an ``/api/*`` request is over the rate limit (counted when it is)."""
        if self._bucket is None or self._bucket.take():
            return False
        self.injected[Fault.RATE_LIMIT.value] += 1
        return True

    def roll_before(self, endpoint: str) -> Fault | None:
        """The fault that stops a request before it is processed, if any."""
        return self._roll(endpoint, BEFORE_FAULTS)

    def roll_after(self, endpoint: str) -> Fault | None:
        """The fault that hits a processed request's reply, if any."""
        return self._roll(endpoint, AFTER_FAULTS)

    def roll_fail_job(self) -> bool:
        """Whether a new job is to end in ``fail_job_status`` (ERROR by default)."""
        return self._hit(Fault.FAIL_JOB)

    def _roll(self, endpoint: str, faults: tuple[Fault, ...]) -> Fault | None:
        if endpoint not in self.config.fault_endpoints:
            return None
        for fault in faults:
            if self._hit(fault):
                return fault
        return None

    def _hit(self, fault: Fault) -> bool:
        probability = getattr(self.config, fault.value)
        # No draw for a fault that is off, so that turning faults on leaves other runs unchanged.
        if probability <= 0.0 or (probability < 1.0 and self._rng.random() >= probability):
            return False
        self.injected[fault.value] += 1
        return True


def _bucket_for(config: FaultConfig) -> TokenBucket | None:
    return TokenBucket(config.rate_limit_rps) if config.rate_limit_rps else None
