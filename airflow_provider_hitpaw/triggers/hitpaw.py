"""Trigger that waits for a HitPaw job in the triggerer, freeing the worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hitpaw.api import TaskStatus
from airflow_provider_hitpaw.errors import HitPawError, HitPawRateLimitError
from airflow_provider_hitpaw.events import (
    MIN_POLL_INTERVAL_SECONDS,
    job_failed_event,
    request_error_event,
    success_event,
    timeout_event,
)
from airflow_provider_hitpaw.retries import RetryPolicy

if TYPE_CHECKING:  # the hook module is imported when a trigger runs, not when a DAG is parsed
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook

#: The longest pause after a run of transient errors.
MAX_ERROR_BACKOFF_SECONDS = 60.0
# One attempt per poll: the triggers count transient errors themselves, across polls.
SINGLE_ATTEMPT = RetryPolicy(max_attempts=1, max_retry_seconds=0)


def error_pause(poll_interval: float, errors_in_a_row: int, err: BaseException) -> float:
    """The pause after a run of transient errors: doubling from the poll interval, at most
    :data:`MAX_ERROR_BACKOFF_SECONDS`, never shorter than a 429's ``Retry-After``."""
    pause = min(MAX_ERROR_BACKOFF_SECONDS, poll_interval * 2.0 ** (errors_in_a_row - 1))
    if isinstance(err, HitPawRateLimitError) and err.retry_after is not None:
        pause = max(pause, float(err.retry_after))
    return pause


class HitPawTaskStatusTrigger(BaseTrigger):
    """Poll ``/api/task-status`` until the job ends, the deadline passes, or errors persist.

    It yields exactly one event, a dict with ``status``:

    - ``success``: ``job_id``, ``hitpaw_status``, ``res_url``, ``original_url``;
    - ``error``: ``job_id``, ``hitpaw_status`` (when the job failed) or ``error_code`` and
      ``error_class`` (when a request failed), and ``message``;
    - ``timeout``: ``job_id``, ``hitpaw_status`` (the last one seen) and ``message``.

    Intermediate and undocumented statuses keep it polling. Transient errors (429, 5xx, network)
    back off and fail only after ``max_consecutive_errors`` of them in a row.

    :param job_id: the HitPaw job.
    :param hitpaw_conn_id: the connection; the API key is read from it in the triggerer.
    :param poll_interval: seconds between two status requests; raised to ``MIN_POLL_INTERVAL_SECONDS``
        (1 s) when lower, since the kwargs come from serialized data (a task's, or an older version's)
        that cannot be refused without losing the wait.
    :param deadline: epoch seconds after which it yields ``timeout``.
    :param max_consecutive_errors: transient errors in a row that end the wait with ``error``.
    """

    def __init__(
        self,
        job_id: str,
        deadline: float,
        hitpaw_conn_id: str = "hitpaw_default",
        poll_interval: float = 5.0,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.job_id = job_id
        self.deadline = float(deadline)
        self.hitpaw_conn_id = hitpaw_conn_id
        poll_interval = float(poll_interval)
        # "not >=": NaN is raised to the floor too (it would make every pause zero).
        self.poll_interval = poll_interval if poll_interval >= MIN_POLL_INTERVAL_SECONDS else MIN_POLL_INTERVAL_SECONDS
        self.max_consecutive_errors = int(max_consecutive_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "deadline": self.deadline,
                "hitpaw_conn_id": self.hitpaw_conn_id,
                "poll_interval": self.poll_interval,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _hook(self) -> HitPawAsyncHook:
        from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook

        return HitPawAsyncHook(self.hitpaw_conn_id, retry_policy=SINGLE_ATTEMPT)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())  # type: ignore[no-untyped-call,unused-ignore]

    async def _wait(self) -> dict[str, Any]:
        hook = self._hook()
        errors_in_a_row = 0
        last_status: str | None = None
        while True:
            if time.time() >= self.deadline:
                return self._timeout(last_status)
            try:
                status = await self._status_before_deadline(hook)
            except TimeoutError:
                return self._timeout(last_status)
            except HitPawError as err:
                if not err.retryable:
                    return self._request_error(err)
                errors_in_a_row += 1
                if errors_in_a_row >= self.max_consecutive_errors:
                    return self._request_error(err, f" ({errors_in_a_row} transient errors in a row)")
                pause = error_pause(self.poll_interval, errors_in_a_row, err)
                self.log.warning(
                    "HitPaw status of job %s failed (%d of %d allowed in a row): %s; next try in %.1f s",
                    self.job_id, errors_in_a_row, self.max_consecutive_errors, err, pause,
                )
            except Exception as err:  # a bug must still end the wait with an event, not a silent hang
                self.log.exception("Unexpected error while polling HitPaw job %s", self.job_id)
                return self._request_error(err)
            else:
                errors_in_a_row = 0
                if status.raw_status != last_status:
                    # INFO for the first and the final state, DEBUG in between: with thousands of
                    # triggers in one process, log lines are a good part of the cost of a poll.
                    first_or_last = last_status is None or status.is_terminal
                    log = self.log.info if first_or_last else self.log.debug
                    log("HitPaw job %s is %s", self.job_id, status.raw_status)
                    last_status = status.raw_status
                if status.is_success:
                    return success_event(status)
                if status.is_failure:
                    return job_failed_event(status)
                pause = self.poll_interval
            await asyncio.sleep(max(0.0, min(pause, self.deadline - time.time())))

    async def _status_before_deadline(self, hook: HitPawAsyncHook) -> TaskStatus:
        """One status request, cut off at the deadline whatever the connection's timeouts say."""
        remaining = self.deadline - time.time()
        limit = hook.request_time_limit
        if limit is not None and remaining > limit + 1:
            # The request's own time limit ends first: no second timer needed on this poll.
            return await hook.get_task_status(self.job_id)
        async with asyncio.timeout(remaining):  # costs no extra task per poll, unlike wait_for
            return await hook.get_task_status(self.job_id)


    def _request_error(self, err: BaseException, note: str = "") -> dict[str, Any]:
        return request_error_event(self.job_id, err, note)

    def _timeout(self, last_status: str | None) -> dict[str, Any]:
        return timeout_event(self.job_id, last_status)
