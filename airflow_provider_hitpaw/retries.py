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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_hitpaw.connection_fields import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_RETRY_SECONDS
from airflow_provider_hitpaw.errors import HitPawError, HitPawRateLimitError

T = TypeVar("T")

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

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_seconds: float = DEFAULT_MAX_RETRY_SECONDS
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0

    def backoff(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        wait += random.uniform(0, self.jitter)
        if isinstance(error, HitPawRateLimitError) and error.retry_after is not None:
            wait = max(wait, float(error.retry_after))
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


def call_with_retries(
    policy: RetryPolicy, log: Any, what: str, fn: Callable[[], T], deadline: float | None = None
) -> T:
    """Call ``fn`` under the policy. The first attempt runs bare, so that the usual case (it works)
    pays nothing for tenacity; a retryable failure hands over to :func:`sync_retrying`, which sees
    that failure as its first attempt (replayed, not sent again) and counts and waits from there."""
    try:
        return fn()
    except Exception as err:
        if not is_retryable(err) or policy.max_attempts <= 1:
            raise
        first_failure: BaseException | None = err

    def replay_then_call() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return fn()

    return sync_retrying(policy, log, what, deadline)(replay_then_call)


async def acall_with_retries(
    policy: RetryPolicy, log: Any, what: str, fn: Callable[[], Awaitable[T]], deadline: float | None = None
) -> T:
    """The asyncio twin of :func:`call_with_retries`."""
    try:
        return await fn()
    except Exception as err:
        if not is_retryable(err) or policy.max_attempts <= 1:
            raise
        first_failure: BaseException | None = err

    async def replay_then_call() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await fn()

    return await async_retrying(policy, log, what, deadline)(replay_then_call)
