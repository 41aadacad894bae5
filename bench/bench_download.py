"""Benchmark 3 -- download: a large result streamed to disk by ``HitPawHook.download_result``,
against ``curl -o`` of the same URL (a synthetic sandbox job with ``result_bytes``).

Each hook download runs in a fresh process, so that its RSS high-water mark (VmHWM, reset right before
the download) minus its
RSS just before the download is the memory the download needed. Hook and curl alternate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from bench.common import BENCH_KEY, BenchResult, Row, conn_env, median, run_json

GB = 1_000_000_000
FULL = {"size": GB, "rounds": 3}
QUICK = {"size": 200_000_000, "rounds": 2}
SMOKE = {"size": 5_000_000, "rounds": 1}
MEMORY_TARGET = 32 * 1024 * 1024
THROUGHPUT_TARGET = 0.8


def run(sandbox: Any, size: int, rounds: int, log: Any = print) -> BenchResult:
    curl = shutil.which("curl")
    job_id = sandbox.create_jobs(BENCH_KEY, 1, 0.0, result_bytes=size)[0]
    url = f"{sandbox.base_url}/results/{job_id}/result.bin"
    env = conn_env(sandbox.base_url)
    hook_runs: list[dict[str, Any]] = []
    curl_secs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hitpaw-bench-dl-") as tmp:
        dest = os.path.join(tmp, "result.bin")
        for r in range(rounds):
            order = ("hook", "curl") if r % 2 == 0 else ("curl", "hook")
            for who in order:
                if who == "hook":
                    out = run_json("download_client", url, dest, env=env)
                    hook_runs.append(out)
                elif curl:
                    t0 = time.perf_counter()
                    subprocess.run([curl, "-sS", "-f", "-o", dest, url], check=True)
                    curl_secs.append(time.perf_counter() - t0)
                if os.path.getsize(dest) != size:
                    raise RuntimeError(f"{who} wrote {os.path.getsize(dest)} bytes, expected {size}")
                os.remove(dest)

    hook_s = median([o["seconds"] for o in hook_runs])
    growth = max(o["peak_after"] - o["rss_before"] for o in hook_runs)
    hook_mbs = size / hook_s / 1e6
    log(f"  download {size / 1e6:.0f} MB: hook {hook_mbs:.0f} MB/s, peak growth {growth / 2**20:.1f} MiB"
        + (f", curl {size / median(curl_secs) / 1e6:.0f} MB/s" if curl_secs else ", no curl"))
    result = BenchResult("download")
    tag = f"{size / 1e6:,.0f} MB"
    result.rows.append(
        Row("download", f"peak RSS growth, {tag}", f"{growth / 2**20:.1f} MiB", "", None,
            "<= 32 MiB (for 1 GB)", growth <= MEMORY_TARGET))
    if curl_secs:
        curl_mbs = size / median(curl_secs) / 1e6
        ratio = hook_mbs / curl_mbs
        result.rows.append(
            Row("download", f"throughput, {tag}", f"{hook_mbs:.0f} MB/s", f"{curl_mbs:.0f} MB/s (curl -o)",
                ratio, f">= {THROUGHPUT_TARGET}x", ratio >= THROUGHPUT_TARGET))
    else:
        result.notes.append("curl was not found: no throughput baseline.")
    result.notes.append(
        f"Download: {rounds} alternating rounds, medians; RSS growth is the worst round "
        f"(VmHWM, reset before the download, minus VmRSS before, in a fresh process).")
    return result
