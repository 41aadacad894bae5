"""Benchmark 2 -- sync hook overhead: submit + status round trips, HitPawHook against raw requests.

Both send the same payloads to the same sandbox process (model ``sharpen_denoise``, which keeps the
photo's size, on the sandbox's own ``/samples/portrait.jpg``). The clients alternate in rounds of N
round trips to cancel drifts in machine load; figures are medians over rounds.

``HitPawHook.submit`` deliberately opens a fresh connection (a pooled one the server has just closed
would fail in a way indistinguishable from a lost reply). A third client, raw requests with a fresh
connection for each submit, shows that choice's share.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import BENCH_KEY, CONN_ID, BenchResult, Row, median, set_conn_env

MODEL = "sharpen_denoise"
FULL = {"rounds": 10, "n": 100}
QUICK = {"rounds": 4, "n": 30}
SMOKE = {"rounds": 1, "n": 2}
TARGET = 1.1


def _payload(base_url: str, i: int) -> dict[str, Any]:
    return {
        "model_name": MODEL,
        "img_url": f"{base_url}/samples/portrait.jpg?hook={i}",
        "extension": ".jpg",
        "exif": False,
    }


def hook_round(hook: Any, base_url: str, n: int, start: int, preflight: bool = False) -> tuple[float, float]:
    """n submit + status round trips through the hook; returns (submit seconds, status seconds).

    With ``preflight``, each submission first reads the photo's size from its header, as the operator
    does before paying (``preflight.photo_dimensions``): its time counts as the submission's.
    """
    from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH
    from airflow_provider_hitpaw.preflight import photo_dimensions

    submit_s = status_s = 0.0
    for i in range(start, start + n):
        payload = _payload(base_url, i)
        t0 = time.perf_counter()
        if preflight:
            assert photo_dimensions(hook, payload["img_url"]) is not None
        job = hook.submit(PHOTO_ENHANCER_PATH, payload)
        t1 = time.perf_counter()
        hook.get_task_status(job.job_id)
        submit_s += t1 - t0
        status_s += time.perf_counter() - t1
    return submit_s, status_s


def raw_round(session: Any, base_url: str, n: int, start: int, fresh_submit: bool) -> tuple[float, float]:
    """The same with a raw ``requests.Session`` (pooled, or a fresh connection per submit)."""
    headers = {"Apikey": BENCH_KEY, "Content-Type": "application/json"}
    submit_s = status_s = 0.0
    for i in range(start, start + n):
        t0 = time.perf_counter()
        if fresh_submit:
            session.close()
        reply = session.post(base_url + "/api/photo-enhancer", json=_payload(base_url, i), headers=headers,
                             timeout=(10, 30))
        job_id = reply.json()["data"]["job_id"]
        t1 = time.perf_counter()
        status = session.post(base_url + "/api/task-status", json={"job_id": job_id}, headers=headers,
                              timeout=(10, 30))
        status.json()["data"]["status"]
        submit_s += t1 - t0
        status_s += time.perf_counter() - t1
    return submit_s, status_s


def run(sandbox: Any, rounds: int, n: int, log: Any = print) -> BenchResult:
    import requests

    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    set_conn_env(sandbox.base_url)
    base = sandbox.base_url
    hook = HitPawHook(CONN_ID)
    session = requests.Session()
    clients = {
        "hook": lambda s: hook_round(hook, base, n, s),
        "raw": lambda s: raw_round(session, base, n, s, fresh_submit=False),
        "raw_fresh": lambda s: raw_round(session, base, n, s, fresh_submit=True),
        "hook_preflight": lambda s: hook_round(hook, base, n, s, preflight=True),
    }
    for name, client in clients.items():  # warm up: imports, connection, the sandbox's sample cache
        client(10_000_000 + hash(name) % 1000 * 10)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    counter = 0
    for r in range(rounds):
        names = list(clients) if r % 2 == 0 else list(reversed(clients))
        for name in names:
            times[name].append(clients[name](counter))
            counter += n
    hook.close()
    session.close()

    def per_trip(name: str, part: int | None = None) -> float:
        values = [(t[0] + t[1]) if part is None else t[part] for t in times[name]]
        return median(values) / n * 1000

    hook_ms, raw_ms, fresh_ms = per_trip("hook"), per_trip("raw"), per_trip("raw_fresh")
    log(f"  hook: {hook_ms:.2f} ms/round trip, raw requests {raw_ms:.2f}, raw with fresh submit {fresh_ms:.2f}")
    result = BenchResult("hook")
    result.rows += [
        Row("hook", "submit+status round trip", f"{hook_ms:.2f} ms", f"{raw_ms:.2f} ms (raw requests)",
            hook_ms / raw_ms, f"<= {TARGET}x", hook_ms / raw_ms <= TARGET),
        Row("hook", "  ... vs raw with fresh submit conn", f"{hook_ms:.2f} ms", f"{fresh_ms:.2f} ms",
            hook_ms / fresh_ms, "(info)"),
        Row("hook", "  submit only", f"{per_trip('hook', 0):.2f} ms", f"{per_trip('raw', 0):.2f} ms",
            per_trip("hook", 0) / per_trip("raw", 0)),
        Row("hook", "  status only", f"{per_trip('hook', 1):.2f} ms", f"{per_trip('raw', 1):.2f} ms",
            per_trip("hook", 1) / per_trip("raw", 1)),
        Row("hook", "submission with its preflight (header read)", f"{per_trip('hook_preflight', 0):.2f} ms",
            f"{per_trip('hook', 0):.2f} ms (submission alone)",
            per_trip("hook_preflight", 0) / per_trip("hook", 0), "(info)"),
    ]
    share = (fresh_ms - raw_ms) / hook_ms
    result.notes.append(
        f"Fresh connection per submit: raw requests {fresh_ms:.2f} ms vs {raw_ms:.2f} ms pooled per round "
        f"trip, i.e. {share:+.0%} of the hook's round trip; hook vs raw with the same fresh-connection "
        f"policy: {hook_ms / fresh_ms:.2f}x. {rounds} alternating rounds of {n} round trips.")
    return result
