"""The client side of the trigger benchmark, run in a process of its own.

``python -m bench.trigger_client SPEC.json`` waits on K sandbox jobs in one event loop, in one of
three ways, and prints one JSON line with its CPU time, memory and event delays:

- ``ours``: K ``HitPawTaskStatusTrigger(...).run()`` async generators, consumed as the triggerer does
  (one task per trigger, ``async for event in trigger.run()``), with the connection read from an
  ``AIRFLOW_CONN_...`` variable;
- ``bare``: K coroutines polling the same endpoint on one shared ``aiohttp.ClientSession`` and
  nothing else (same poll interval, same connection limit);
- ``session_per_poll``: the HTTP provider's ``HttpSensorTrigger`` pattern (see
  :mod:`bench.http_pattern`).

The jobs are created here, right before the triggers start, so that their completion times are
known on this process's clock. Triggers start over one poll interval (as deferrals arrive), the jobs
complete between 1.5 and 1.5 + ``span`` (default 4) intervals after creation, and memory is read at 1.25 intervals, when
every trigger has been started and is waiting.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bench.common import (
    BENCH_KEY,
    CONN_ID,
    HTTP_CONN_ID,
    emit,
    percentile,
    proc_cpu_seconds,
    rss_bytes,
    status_requests,
)

STATUS_PATH = "/api/task-status"
# make(job_id, deadline) -> the async generator to consume; cleanup() at the end.
Factory = tuple[Callable[[str, float], AsyncIterator[Any]], Callable[[], Awaitable[None]]]


def admin(base_url: str, method: str, path: str, payload: Any = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


# -- the three ways of waiting -------------------------------------------------------------------


def ours_factory(spec: dict[str, Any]) -> Factory:
    from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

    def make(job_id: str, deadline: float) -> AsyncIterator[Any]:
        trigger = HitPawTaskStatusTrigger(
            job_id=job_id, deadline=deadline, hitpaw_conn_id=CONN_ID, poll_interval=spec["interval"]
        )
        return trigger.run()

    async def cleanup() -> None:
        from airflow_provider_hitpaw.hooks.session import close_shared_session

        await close_shared_session()

    return make, cleanup


def bare_factory(spec: dict[str, Any]) -> Factory:
    import aiohttp

    from airflow_provider_hitpaw.hooks.session import CONNECTION_LIMIT

    state: dict[str, aiohttp.ClientSession] = {}
    url = spec["base_url"] + STATUS_PATH
    headers = {"Apikey": BENCH_KEY}
    interval = spec["interval"]

    async def poll(job_id: str, deadline: float) -> AsyncIterator[Any]:
        session = state.get("session")
        if session is None:
            session = state["session"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT)
            )
        while True:
            async with session.post(url, json={"job_id": job_id}, headers=headers) as response:
                body = json.loads(await response.read())
            status = body["data"]["status"]
            if status in ("COMPLETED", "ERROR"):
                yield {"status": "success" if status == "COMPLETED" else "error"}
                return
            await asyncio.sleep(interval)

    async def cleanup() -> None:
        if "session" in state:
            await state["session"].close()

    return poll, cleanup


def session_per_poll_factory(spec: dict[str, Any]) -> Factory:
    from bench.http_pattern import make_session_per_poll_trigger

    def make(job_id: str, deadline: float) -> AsyncIterator[Any]:
        return make_session_per_poll_trigger(HTTP_CONN_ID, BENCH_KEY, job_id, spec["interval"]).run()

    async def cleanup() -> None:
        return None

    return make, cleanup


FACTORIES = {"ours": ours_factory, "bare": bare_factory, "session_per_poll": session_per_poll_factory}


# -- the run -------------------------------------------------------------------------------------


async def consume(gen: AsyncIterator[Any], done: list[float], outcome: list[str], index: int) -> None:
    """What the triggerer does with a trigger: iterate its events until it has one."""
    async for event in gen:
        done[index] = time.time()
        payload = getattr(event, "payload", event)
        outcome[index] = payload.get("status", "?") if isinstance(payload, dict) else str(payload)
        break
    await gen.aclose()  # type: ignore[attr-defined]  # the triggers are async generators


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    k, interval, base_url = spec["k"], spec["interval"], spec["base_url"]
    sandbox_pid = spec["sandbox_pid"]
    make, cleanup = FACTORIES[spec["mode"]](spec)

    # Warm up: imports, the connection, the shared session; one job polled to its end.
    warm = admin(base_url, "POST", "/admin/jobs", {"api_key": BENCH_KEY, "count": 1})["job_ids"]
    await consume(make(warm[0], time.time() + 60), [0.0], [""], 0)
    gc.collect()
    rss_before = rss_bytes()

    rng = random.Random(spec.get("seed", 4))
    span = spec.get("span", 4.0)
    offsets = [1.5 * interval + rng.uniform(0, span * interval) for _ in range(k)]
    created = time.time()
    job_ids = admin(
        base_url, "POST", "/admin/jobs",
        {"api_key": BENCH_KEY, "count": k, "complete_after_seconds": offsets},
    )["job_ids"]
    completes = [created + off for off in offsets]
    deadline = created + 3 * interval + max(offsets) + 60

    requests_before = status_requests(admin(base_url, "GET", "/admin/stats"))
    cpu_before = proc_cpu_seconds()
    sandbox_cpu_before = proc_cpu_seconds(sandbox_pid)
    wall_start = time.time()
    profiler = _start_profiler(spec)

    done = [0.0] * k
    outcome = [""] * k
    tasks: list[asyncio.Task[None]] = []
    for i, job_id in enumerate(job_ids):  # start them over one poll interval
        wait = wall_start + i * interval / k - time.time()
        if wait > 0.005:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(consume(make(job_id, deadline), done, outcome, i)))

    await asyncio.sleep(max(0.0, wall_start + 1.25 * interval - time.time()))
    rss_waiting = rss_bytes()
    waiting_now = sum(1 for t in tasks if not t.done())

    await asyncio.gather(*tasks)
    wall = time.time() - wall_start
    cpu = proc_cpu_seconds() - cpu_before
    sandbox_cpu = proc_cpu_seconds(sandbox_pid) - sandbox_cpu_before
    requests = status_requests(admin(base_url, "GET", "/admin/stats")) - requests_before
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    await cleanup()

    delays = [d - c for d, c in zip(done, completes, strict=True)]
    return {
        "mode": spec["mode"],
        "k": k,
        "interval": interval,
        "requests": requests,
        "cpu_s": cpu,
        "cpu_per_request_us": cpu / max(1, requests) * 1e6,
        "rss_before": rss_before,
        "rss_waiting": rss_waiting,
        "waiting_at_rss": waiting_now,
        "rss_per_trigger": (rss_waiting - rss_before) / k,
        "delay_p50": percentile(delays, 50),
        "delay_p99": percentile(delays, 99),
        "delay_max": max(delays),
        "not_success": sum(1 for o in outcome if o != "success"),
        "wall_s": wall,
        "sandbox_cpu_s": sandbox_cpu,
        "sandbox_util": sandbox_cpu / wall,
        "client_util": cpu / wall,
    }


def _start_profiler(spec: dict[str, Any]) -> Any:
    """For investigation only: ``"profile": PATH`` in the spec profiles the measured window."""
    if not spec.get("profile"):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    emit(asyncio.run(run(spec)))


if __name__ == "__main__":
    main()
