"""``python -m bench.upload_client PATH``: one upload through ``HitPawHook.upload_file`` in a fresh
process; reports its RSS before, its RSS high-water mark (VmHWM, reset just before the upload) after,
and the time taken."""

from __future__ import annotations

import sys
import time

from bench.common import CONN_ID, emit, hwm_bytes, rss_bytes


def main() -> None:
    path = sys.argv[1]
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    hook = HitPawHook(CONN_ID)
    hook.settings
    hook.session
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")  # the peak read afterwards is the upload's own
    rss_before = rss_bytes()
    started = time.perf_counter()
    uploaded = hook.upload_file(path)
    seconds = time.perf_counter() - started
    emit({"seconds": seconds, "rss_before": rss_before, "peak_after": hwm_bytes(), "access_url": uploaded.access_url})


if __name__ == "__main__":
    main()
