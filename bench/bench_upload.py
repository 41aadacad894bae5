"""Benchmark 7 -- upload: a large private file sent by ``HitPawHook.upload_file`` (presign, then a
streamed PUT), against ``curl -T`` of the same file to a URL presigned the same way.

Each hook upload runs in a fresh process, so that its RSS high-water mark (VmHWM, reset right before
the upload) minus its RSS just before is the memory the upload needed. Hook and curl alternate; both
write into the same sandbox, which streams the body to disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

import requests

from bench.common import BENCH_KEY, BenchResult, Row, conn_env, median, run_json

GB = 1_000_000_000
FULL = {"size": GB, "rounds": 3}
QUICK = {"size": 200_000_000, "rounds": 2}
SMOKE = {"size": 5_000_000, "rounds": 1}
MEMORY_TARGET = 32 * 1024 * 1024
THROUGHPUT_TARGET = 0.8


def _presign(base_url: str, name: str) -> dict[str, Any]:
    reply = requests.post(f"{base_url}/api/oss/presign-put", headers={"Apikey": BENCH_KEY},
                          json={"filename": name, "content_type": "image/png"}, timeout=30)
    reply.raise_for_status()
    data: dict[str, Any] = reply.json()["data"]
    return data


def run(sandbox: Any, size: int, rounds: int, log: Any = print) -> BenchResult:
    curl = shutil.which("curl")
    env = conn_env(sandbox.base_url)
    hook_runs: list[dict[str, Any]] = []
    curl_secs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hitpaw-bench-up-") as tmp:
        path = os.path.join(tmp, "big.png")
        with open(path, "wb") as handle:  # real bytes, not a sparse file: both sides read them from disk
            block = os.urandom(1 << 20)
            for _ in range(size // len(block)):
                handle.write(block)
            handle.write(block[: size % len(block)])
        for r in range(rounds):
            for who in (("hook", "curl") if r % 2 == 0 else ("curl", "hook")):
                if who == "hook":
                    hook_runs.append(run_json("upload_client", path, env=env))
                elif curl:
                    signed = _presign(sandbox.base_url, "big.png")
                    t0 = time.perf_counter()
                    subprocess.run([curl, "-sS", "-f", "-o", os.devnull, "-T", path,
                                    "-H", f"Content-Type: {signed['content_type']}", signed["upload_url"]],
                                   check=True)
                    curl_secs.append(time.perf_counter() - t0)

    hook_s = median([o["seconds"] for o in hook_runs])
    growth = max(o["peak_after"] - o["rss_before"] for o in hook_runs)
    hook_mbs = size / hook_s / 1e6
    log(f"  upload {size / 1e6:.0f} MB: hook {hook_mbs:.0f} MB/s, peak growth {growth / 2**20:.1f} MiB"
        + (f", curl {size / median(curl_secs) / 1e6:.0f} MB/s" if curl_secs else ", no curl"))
    result = BenchResult("upload")
    tag = f"{size / 1e6:,.0f} MB"
    result.rows.append(Row("upload", f"peak RSS growth, {tag}", f"{growth / 2**20:.1f} MiB", "", None,
                           "<= 32 MiB (for 1 GB)", growth <= MEMORY_TARGET))
    if curl_secs:
        curl_mbs = size / median(curl_secs) / 1e6
        ratio = hook_mbs / curl_mbs
        result.rows.append(Row("upload", f"throughput, {tag}", f"{hook_mbs:.0f} MB/s",
                               f"{curl_mbs:.0f} MB/s (curl -T)", ratio, f">= {THROUGHPUT_TARGET}x",
                               ratio >= THROUGHPUT_TARGET))
    else:
        result.notes.append("curl was not found: no throughput baseline.")
    result.notes.append(
        f"Upload: {rounds} alternating rounds, medians, presign included for the hook (curl's URL is "
        "presigned before its clock starts); RSS growth is the worst round (VmHWM, reset before the "
        "upload, minus VmRSS before, in a fresh process).")
    return result
