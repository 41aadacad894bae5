"""Trigger that waits for many HitPaw jobs at once, from one coroutine loop (the batch operator's)."""

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
    jobs_event,
    request_error_event,
    success_event,
)
from airflow_provider_hitpaw.triggers.hitpaw import SINGLE_ATTEMPT, error_pause

if TYPE_CHECKING:
    from airflow_provider_hitpaw.connection import HitPawSettings
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook


class HitPawJobsTrigger(BaseTrigger):
    """Poll ``/api/task-status`` for many jobs until enough of them end, all do, or the deadline.

    It yields one event (see :func:`airflow_provider_hitpaw.events.jobs_event`) listing the jobs that
    ended: completed, failed, or whose status requests failed for good (a non-retryable error, or
    ``max_consecutive_errors`` transient ones in a row; a 429 is none of them). Jobs still running are
    left out: the task polls them again. Polls run at most ``max_concurrency`` at a time over the
    shared session; a 429 ends the round's polls and pauses the next round (doubling while 429s go
    on, ``Retry-After`` honoured).

    :param job_ids: the jobs to wait for.
    :param deadline: epoch seconds; the event comes then at the latest, with ``timed_out`` true.
    :param fire_after: the number of ended jobs that ends the wait early (the batch refills then).
    :param hitpaw_conn_id: the connection; the API key is read from it in the triggerer.
    :param poll_interval: seconds between two rounds of polls (raised to 1 s when lower).
    :param max_concurrency: status requests in flight at once.
    :param max_consecutive_errors: transient errors in a row that end one job's wait with ``error``.
    """

    def __init__(
        self,
        job_ids: list[str],
        deadline: float,
        fire_after: int = 1,
        hitpaw_conn_id: str = "hitpaw_default",
        poll_interval: float = 5.0,
        max_concurrency: int = 10,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.job_ids = [str(job_id) for job_id in job_ids]
        self.deadline = float(deadline)
        self.fire_after = max(1, int(fire_after))
        self.hitpaw_conn_id = hitpaw_conn_id
        poll_interval = float(poll_interval)
        self.poll_interval = poll_interval if poll_interval >= MIN_POLL_INTERVAL_SECONDS else MIN_POLL_INTERVAL_SECONDS
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_consecutive_errors = int(max_consecutive_errors)
        # Set by the first 429 of a round: the round's other polls are not sent.
        self._throttled_at: float | None = None
        self._throttle_error: BaseException = HitPawRateLimitError("rate limited")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_ids": self.job_ids,
                "deadline": self.deadline,
                "fire_after": self.fire_after,
                "hitpaw_conn_id": self.hitpaw_conn_id,
                "poll_interval": self.poll_interval,
                "max_concurrency": self.max_concurrency,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _hook(self) -> HitPawAsyncHook:
        from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook

        return HitPawAsyncHook(self.hitpaw_conn_id, retry_policy=SINGLE_ATTEMPT)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self.wait())  # type: ignore[no-untyped-call,unused-ignore]

    async def wait(self, settings: HitPawSettings | None = None, *, max_rounds: int | None = None) -> dict[str, Any]:
        """The wait itself: also what the batch operator runs in the worker when not deferrable.

        :param settings: the connection as a worker's sync hook read it (no async lookup then).
        :param max_rounds: stop after this many rounds of polls (the worker's one look before deferring).
        """
        rounds = 0
        hook = self._hook()
        if settings is not None:
            hook.use_settings(settings)
        gate = asyncio.Semaphore(self.max_concurrency)
        pending = list(dict.fromkeys(self.job_ids))
        ended: list[dict[str, Any]] = []
        errors_in_a_row: dict[str, int] = {}
        throttled_rounds = 0
        while pending:
            if time.time() >= self.deadline:
                return jobs_event(ended, timed_out=True)
            self._throttled_at = None
            outcomes = await asyncio.gather(*(self._poll(hook, gate, job_id) for job_id in pending))
            still_pending: list[str] = []
            not_asked: list[str] = []
            answered = 0
            pause = self.poll_interval
            for job_id, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, TaskStatus):
                    answered += 1
                    errors_in_a_row.pop(job_id, None)
                    if outcome.is_success:
                        ended.append(success_event(outcome))
                    elif outcome.is_failure:
                        ended.append(job_failed_event(outcome))
                    else:
                        still_pending.append(job_id)
                elif outcome is None or isinstance(outcome, HitPawRateLimitError):
                    # Not asked (the deadline, or a 429 earlier in the round), or asked to slow down:
                    # the API's limit, not this job's error. Asked first in the next round.
                    not_asked.append(job_id)
                elif not getattr(outcome, "retryable", False):
                    ended.append(request_error_event(job_id, outcome))
                else:
                    count = errors_in_a_row[job_id] = errors_in_a_row.get(job_id, 0) + 1
                    if count >= self.max_consecutive_errors:
                        ended.append(request_error_event(job_id, outcome, f" ({count} transient errors in a row)"))
                        continue
                    still_pending.append(job_id)
                    pause = max(pause, error_pause(self.poll_interval, count, outcome))
            if self._throttled_at is not None:
                # Back off further only while whole rounds are refused; a round that got answers
                # just waits as asked.
                throttled_rounds = 1 if answered else throttled_rounds + 1
                pause = max(pause, error_pause(self.poll_interval, throttled_rounds, self._throttle_error))
                self.log.info("HitPaw asked to slow down (429): next round of polls in %.1f s", pause)
            else:
                throttled_rounds = 0
            pending = not_asked + still_pending
            rounds += 1
            if not pending or len(ended) >= self.fire_after or (max_rounds is not None and rounds >= max_rounds):
                break
            await asyncio.sleep(max(0.0, min(pause, self.deadline - time.time())))
        self.log.info("%d of %d HitPaw jobs ended; %d still running", len(ended), len(self.job_ids), len(pending))
        return jobs_event(ended, timed_out=False)

    async def _poll(self, hook: HitPawAsyncHook, gate: asyncio.Semaphore, job_id: str) -> TaskStatus | BaseException | None:
        async with gate:
            remaining = self.deadline - time.time()
            if remaining <= 0 or self._throttled_at is not None:  # past the deadline, or told to slow down
                return None
            try:
                async with asyncio.timeout(remaining):
                    return await hook.get_task_status(job_id)
            except TimeoutError:
                return None
            except HitPawRateLimitError as err:
                self._throttled_at, self._throttle_error = time.monotonic(), err
                return err
            except HitPawError as err:
                return err
            except Exception as err:  # a bug must still end this job's wait with an event, not a hang
                self.log.exception("Unexpected error while polling HitPaw job %s", job_id)
                return err

