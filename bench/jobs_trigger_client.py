"""The batch trigger's side of the trigger CPU comparison: ``python -m bench.jobs_trigger_client SPEC.json``.

The counterpart of ``bench/trigger_client.py``'s ``ours`` mode (K ``HitPawTaskStatusTrigger``, one per
job) with the same spec and the same jobs (same seed, same completion times): one
``HitPawJobsTrigger`` waits for all K jobs (``fire_after`` = K), as the batch operator's trigger does for
its jobs in flight. It reports CPU seconds per status request.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from bench.common import BENCH_KEY, CONN_ID, emit, proc_cpu_seconds, status_requests
from bench.trigger_client import admin


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_hitpaw.hooks.session import close_shared_session
    from airflow_provider_hitpaw.triggers.jobs import HitPawJobsTrigger

    k, interval, base_url = spec["k"], spec["interval"], spec["base_url"]

    def trigger(job_ids: list[str], deadline: float) -> HitPawJobsTrigger:
        return HitPawJobsTrigger(job_ids, deadline, fire_after=len(job_ids), hitpaw_conn_id=CONN_ID,
                                 poll_interval=interval)

    warm = admin(base_url, "POST", "/admin/jobs", {"api_key": BENCH_KEY, "count": 1})["job_ids"]
    async for _ in trigger(warm, time.time() + 60).run():
        break

    rng = random.Random(spec.get("seed", 4))
    span = spec.get("span", 4.0)
    offsets = [1.5 * interval + rng.uniform(0, span * interval) for _ in range(k)]
    created = time.time()
    job_ids = admin(base_url, "POST", "/admin/jobs",
                    {"api_key": BENCH_KEY, "count": k, "complete_after_seconds": offsets})["job_ids"]
    deadline = created + 3 * interval + max(offsets) + 60

    requests_before = status_requests(admin(base_url, "GET", "/admin/stats"))
    cpu_before = proc_cpu_seconds()
    wall_start = time.time()
    event: dict[str, Any] = {}
    async for fired in trigger(job_ids, deadline).run():
        event = fired.payload
        break
    wall = time.time() - wall_start
    cpu = proc_cpu_seconds() - cpu_before
    requests = status_requests(admin(base_url, "GET", "/admin/stats")) - requests_before
    await close_shared_session()
    ended = event.get("ended", [])
    return {
        "mode": "jobs",
        "k": k,
        "interval": interval,
        "requests": requests,
        "cpu_s": cpu,
        "cpu_per_request_us": cpu / max(1, requests) * 1e6,
        "not_success": k - sum(1 for e in ended if e.get("status") == "success"),
        "wall_s": wall,
        "client_util": cpu / wall,
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    emit(asyncio.run(run(spec)))


if __name__ == "__main__":
    main()
