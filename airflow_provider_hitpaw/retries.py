"""When a HitPaw request is tried again, and how long to wait first.

Reads (status, download, connection test) retry on 429, 5xx and network errors with exponential
backoff and jitter, honour ``Retry-After``, and stop after ``max_attempts`` or ``max_retry_seconds``
(or an absolute deadline). Other errors are never retried. Submissions cost coins and are only retried
when nothing can have been created: that decision is the hook's, through ``is_retryable``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_hitpaw.errors import HitPawError, HitPawRateLimitError

if TYPE_CHECKING:  # tenacity is imported on first use: DAG files that only build operators skip it
    from tenacity import AsyncRetrying, RetryCallState, Retrying


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings.

    :param max_attempts: attempts in all, the first included (1 disables retries).
    :param max_retry_seconds: no new attempt starts after this many seconds from the first.
    :param backoff_initial: the first wait, in seconds; it doubles on each retry.
    :param backoff_max: the longest wait between two attempts (a longer ``Retry-After`` is honoured
        as long as it fits in ``max_retry_seconds``).
    :param jitter: up to this many seconds are added at random to each wait.
    """

    max_attempts: int = 5
    max_retry_seconds: float = 120.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0

    def backoff(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        wait += random.uniform(0, self.jitter)
        if isinstance(error, HitPawRateLimitError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, HitPawError) and error.retryable


class _Stop:
    """Stop after max attempts, or when the next wait would pass the time budget or the deadline."""

    def __init__(self, policy: RetryPolicy, deadline: float | None) -> None:
        self.policy = policy
        self.deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.policy.max_attempts:
            return True
        wait = state.upcoming_sleep
        if (state.seconds_since_start or 0.0) + wait > self.policy.max_retry_seconds:
            return True
        return self.deadline is not None and time.time() + wait >= self.deadline


def _wait(policy: RetryPolicy):  # type: ignore[no-untyped-def]
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return policy.backoff(state.attempt_number, error)

    return wait


def _log_retry(log: logging.Logger | Any, what: str, policy: RetryPolicy):  # type: ignore[no-untyped-def]
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "HitPaw %s failed (attempt %d of %d): %s: %s; retrying in %.1f s",
            what,
            state.attempt_number,
            policy.max_attempts,
            type(error).__name__,
            error,
            state.upcoming_sleep,
        )

    return before_sleep


def _kwargs(policy: RetryPolicy, log: Any, what: str, deadline: float | None) -> dict[str, Any]:
    from tenacity import retry_if_exception

    return {
        "retry": retry_if_exception(is_retryable),
        "wait": _wait(policy),
        "stop": _Stop(policy, deadline),
        "before_sleep": _log_retry(log, what, policy),
        "reraise": True,
    }


def sync_retrying(policy: RetryPolicy, log: Any, what: str, deadline: float | None = None) -> Retrying:
    """A tenacity ``Retrying`` for one read request. ``deadline`` is epoch seconds."""
    from tenacity import Retrying

    return Retrying(**_kwargs(policy, log, what, deadline))


def async_retrying(
    policy: RetryPolicy, log: Any, what: str, deadline: float | None = None
) -> AsyncRetrying:
    """The asyncio twin of :func:`sync_retrying` (waits with ``asyncio.sleep``)."""
    from tenacity import AsyncRetrying

    return AsyncRetrying(**_kwargs(policy, log, what, deadline))
