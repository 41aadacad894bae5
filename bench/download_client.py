"""``python -m bench.download_client URL DEST``: one download through ``HitPawHook.download_result``
in a fresh process; reports its RSS before, its RSS high-water mark (VmHWM, reset just before the
download) after, and the time taken."""

from __future__ import annotations

import sys
import time

from bench.common import CONN_ID, emit, hwm_bytes, rss_bytes


def main() -> None:
    url, dest = sys.argv[1], sys.argv[2]
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    hook = HitPawHook(CONN_ID)
    hook.settings
    hook.session
    # Reset the kernel's high-water mark (VmHWM) to the current RSS, so that the peak read afterwards
    # is the download's own, not one left by imports and start-up.
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    rss_before = rss_bytes()
    peak_before = hwm_bytes()
    started = time.perf_counter()
    hook.download_result(url, dest)
    seconds = time.perf_counter() - started
    emit({
        "seconds": seconds,
        "rss_before": rss_before,
        "peak_before": peak_before,
        "peak_after": hwm_bytes(),
    })


if __name__ == "__main__":
    main()
