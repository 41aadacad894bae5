"""Benchmark 4 -- rate limit: N submissions from C threads, each with its own ``HitPawHook``, against
a sandbox limited to R requests a second (``rate_limit_rps``: a token bucket, burst R, 429 with
``Retry-After: 1`` when empty).

Reports achieved throughput / R (accepted submissions over the wall time of the whole batch),
failed submissions (the hook gave up) and duplicate submissions (an ``img_url`` the sandbox charged
more than once; each job has its own). The hook retries a 429 with exponential backoff and jitter,
at least ``Retry-After``, for at most ``max_attempts`` (default 5).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from bench.common import CONN_ID, BenchResult, Row, set_conn_env

MODEL = "sharpen_denoise"
# (R, N, C)
FULL = [(20.0, 600, 4), (20.0, 600, 16)]
QUICK = [(20.0, 200, 8)]
SMOKE = [(20.0, 10, 2)]
TARGET = 0.85


def submit_all(base_url: str, n: int, c: int, tag: str) -> dict[str, Any]:
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    lock = threading.Lock()
    next_index = [0]
    failures: Counter[str] = Counter()
    accepted = [0]
    done_at: list[float] = []

    def worker() -> None:
        hook = HitPawHook(CONN_ID)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= n:
                break
            try:
                hook.enhance_photo(f"{base_url}/samples/portrait.jpg?rl={tag}-{i}", MODEL, ".jpg")
            except Exception as err:  # a failed task, counted by kind
                with lock:
                    failures[type(err).__name__] += 1
            else:
                with lock:
                    accepted[0] += 1
                    done_at.append(time.perf_counter())
        hook.close()

    threads = [threading.Thread(target=worker) for _ in range(c)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "seconds": time.perf_counter() - started,
        "accepted": accepted[0],
        "failures": dict(failures),
    }


def run(sandbox: Any, configs: list[tuple[float, int, int]], log: Any = print) -> BenchResult:
    set_conn_env(sandbox.base_url)
    result = BenchResult("ratelimit")
    for k, (rps, n, c) in enumerate(configs):
        sandbox.reset()
        sandbox.set_faults(rate_limit_rps=rps)
        time.sleep(1.1)  # a full bucket to start with, the same for every configuration
        out = submit_all(sandbox.base_url, n, c, f"{k}")
        stats = sandbox.stats()
        sandbox.set_faults(rate_limit_rps=None)
        by_url = stats["submissions_by_img_url"]
        duplicates = sum(count - 1 for count in by_url.values() if count > 1)
        refused = int(stats["faults_injected"].get("rate_limit", 0))
        # The bucket starts full (a burst of R), which a long run amortises: count it out.
        throughput = max(0, out["accepted"] - rps) / out["seconds"]
        ratio = throughput / rps
        failed = sum(out["failures"].values())
        log(f"  rate limit R={rps:g}/s N={n} C={c}: {throughput:.1f}/s ({ratio:.2f} R), "
            f"{failed} failed {out['failures']}, {duplicates} duplicates, {refused} 429s, {out['seconds']:.1f} s")
        tag = f"R={rps:g}/s N={n} C={c}"
        result.rows += [
            Row("ratelimit", f"throughput / R, {tag}", f"{throughput:.1f}/s", f"{rps:g}/s", ratio,
                f">= {TARGET}x", ratio >= TARGET),
            Row("ratelimit", f"failed / duplicate submissions, {tag}", f"{failed} / {duplicates}", "", None,
                "0 / 0", failed == 0 and duplicates == 0),
        ]
        result.notes.append(
            f"{tag}: {out['accepted']} accepted in {out['seconds']:.1f} s, {refused} answered 429, "
            f"failures {out['failures'] or 'none'}, charged submissions {len(stats['submissions'])}.")
    return result
