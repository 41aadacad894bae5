"""The retry policy's arithmetic: backoff bounds, Retry-After, attempt and time limits."""

from __future__ import annotations

import logging
import time

import pytest

from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawConnectionError,
    HitPawRateLimitError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
)
from airflow_provider_hitpaw.retries import RetryPolicy, is_retryable, sync_retrying

log = logging.getLogger("test")


@pytest.mark.parametrize("attempt", range(1, 9))
def test_backoff_is_exponential_capped_and_jittered(attempt):
    policy = RetryPolicy(backoff_initial=1, backoff_max=30, jitter=1)
    low = min(30, 2 ** (attempt - 1))
    for _ in range(50):
        assert low <= policy.backoff(attempt) <= low + 1


def test_retry_after_is_honoured_beyond_the_cap():
    policy = RetryPolicy(backoff_initial=1, backoff_max=2, jitter=0)
    assert policy.backoff(1, HitPawRateLimitError("slow down", retry_after=45)) == 45
    assert policy.backoff(1, HitPawRateLimitError("slow down", retry_after=None)) == 1


def test_what_is_retryable():
    assert is_retryable(HitPawRateLimitError("x"))
    assert is_retryable(HitPawServerError("x"))
    assert is_retryable(HitPawConnectionError("x"))
    assert not is_retryable(HitPawAuthError("x"))
    assert not is_retryable(HitPawSubmitOutcomeUnknownError("x"))
    assert not is_retryable(ValueError("x"))


def failing(errors):
    calls = []

    def call():
        calls.append(time.monotonic())
        error = errors[min(len(calls) - 1, len(errors) - 1)]
        if error is None:
            return "ok"
        raise error

    return call, calls


def test_stops_after_max_attempts():
    call, calls = failing([HitPawServerError("down")])
    with pytest.raises(HitPawServerError):
        sync_retrying(RetryPolicy(max_attempts=4, backoff_initial=0.001, jitter=0), log, "t")(call)
    assert len(calls) == 4


def test_non_retryable_is_tried_once():
    call, calls = failing([HitPawAuthError("bad key")])
    with pytest.raises(HitPawAuthError):
        sync_retrying(RetryPolicy(max_attempts=4, backoff_initial=0.001), log, "t")(call)
    assert len(calls) == 1


def test_transient_then_success():
    call, calls = failing([HitPawServerError("a"), HitPawConnectionError("b"), None])
    assert sync_retrying(RetryPolicy(backoff_initial=0.001, jitter=0), log, "t")(call) == "ok"
    assert len(calls) == 3


def test_time_budget_stops_before_a_wait_that_would_pass_it():
    call, calls = failing([HitPawServerError("down")])
    policy = RetryPolicy(max_attempts=100, max_retry_seconds=0.5, backoff_initial=0.2, backoff_max=0.2, jitter=0)
    started = time.monotonic()
    with pytest.raises(HitPawServerError):
        sync_retrying(policy, log, "t")(call)
    assert time.monotonic() - started < 0.6
    assert 2 <= len(calls) <= 4


def test_deadline_stops_retries():
    call, calls = failing([HitPawServerError("down")])
    policy = RetryPolicy(max_attempts=100, max_retry_seconds=100, backoff_initial=0.3, jitter=0)
    with pytest.raises(HitPawServerError):
        sync_retrying(policy, log, "t", deadline=time.time() + 0.5)(call)
    assert len(calls) <= 3


def test_retry_after_longer_than_the_budget_gives_up_at_once():
    call, calls = failing([HitPawRateLimitError("later", retry_after=60)])
    with pytest.raises(HitPawRateLimitError):
        sync_retrying(RetryPolicy(max_retry_seconds=10), log, "t")(call)
    assert len(calls) == 1


def test_each_retry_is_logged_with_its_reason(caplog):
    call, _ = failing([HitPawServerError("gateway hiccup"), None])
    with caplog.at_level(logging.WARNING, logger="test"):
        sync_retrying(RetryPolicy(backoff_initial=0.001, jitter=0), log, "status request")(call)
    assert "HitPaw status request failed (attempt 1 of 5): HitPawServerError: gateway hiccup" in caplog.text


def test_call_with_retries_counts_the_bare_first_attempt():
    from airflow_provider_hitpaw.retries import call_with_retries

    call, calls = failing([HitPawServerError("down")])
    with pytest.raises(HitPawServerError):
        call_with_retries(RetryPolicy(max_attempts=3, backoff_initial=0.001, jitter=0), log, "t", call)
    assert len(calls) == 3
    call, calls = failing([None])
    assert call_with_retries(RetryPolicy(), log, "t", call) == "ok" and len(calls) == 1
    call, calls = failing([HitPawAuthError("no")])
    with pytest.raises(HitPawAuthError):
        call_with_retries(RetryPolicy(), log, "t", call)
    assert len(calls) == 1


async def test_acall_with_retries_counts_the_bare_first_attempt():
    from airflow_provider_hitpaw.retries import acall_with_retries

    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise HitPawConnectionError("reset")
        return "ok"

    assert await acall_with_retries(RetryPolicy(backoff_initial=0.001, jitter=0), log, "t", flaky) == "ok"
    assert len(calls) == 3
