"""The memory side of the batch benchmark: ``python -m bench.batch_memory_client SPEC.json``.

Two processes, as in a deployment: this one is the worker, and it starts a triggerer child
(``python -m bench.batch_memory_client --triggerer``). The worker runs one ``EnhancePhotoBatchOperator``
over N photo URLs against the sandbox: ``execute`` until it defers; the trigger's serialized kwargs go
to the child, which rebuilds the ``HitPawJobsTrigger`` and runs its wait in one long-lived event loop
(as the triggerer does); its event comes back and goes to ``execute_complete``; and so on until the
batch returns. Each resume builds a fresh ``_Attempt`` from the ledger, as a new worker process would.

Each process resets the kernel's high-water mark of its memory (VmHWM) once its imports are done and
reports its peak above that point: the worker's for its items, the ledger it reads at each resume,
submitting, recording and the manifest; the triggerer's for the waits.

The sandbox's jobs end in ERROR without image work (``max_work_megapixels`` tiny, so that 10,000 jobs
cost it nothing) and the batch tolerates them (``max_failed_items=N``): downloads are not part of this
figure (the download benchmark measures their memory).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.common import CONN_ID, REPO, emit, hwm_bytes, rss_bytes

EVENT, STATS = "EVENT ", "STATS "


def reset_peak() -> int:
    """Reset VmHWM to the current RSS and return that RSS."""
    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    return rss_bytes()


class TriggererChild:
    """The triggerer: a child process that runs one trigger wait per line of serialized kwargs."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.batch_memory_client", "--triggerer"], cwd=REPO, env=dict(os.environ),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith((EVENT, STATS)):  # anything else is its log
                self.lines.put(line)
        self.lines.put("")

    def _line(self, prefix: str, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the triggerer child said nothing for {timeout:.0f} s") from None
        if not line.startswith(prefix):
            raise RuntimeError(f"the triggerer child exited with {self.process.wait(5)}, or said {line[:200]!r}")
        return line[len(prefix):]

    def wait(self, trigger: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        _, kwargs = trigger.serialize()
        self.process.stdin.write(json.dumps(kwargs) + "\n")
        self.process.stdin.flush()
        event: dict[str, Any] = json.loads(self._line(EVENT, max(0.0, trigger.deadline - time.time()) + 60))
        return event

    def close(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        stats: dict[str, Any] = json.loads(self._line(STATS, 60))
        self.process.wait(30)
        return stats


def triggerer_main() -> None:
    import airflow_provider_hitpaw.hooks.hitpaw  # noqa: F401 - imported before the baseline
    from airflow_provider_hitpaw.hooks.session import close_shared_session
    from airflow_provider_hitpaw.triggers.jobs import HitPawJobsTrigger

    loop = asyncio.new_event_loop()
    baseline = reset_peak()
    waits = 0
    for line in sys.stdin:
        event = loop.run_until_complete(HitPawJobsTrigger(**json.loads(line)).wait())
        waits += 1
        print(EVENT + json.dumps(event), flush=True)
    peak = hwm_bytes()
    loop.run_until_complete(close_shared_session())
    print(STATS + json.dumps({"baseline": baseline, "peak_growth": peak - baseline, "waits": waits}), flush=True)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    # What the operator imports on its first use, so that the baseline holds it already.
    import airflow_provider_hitpaw.hooks.hitpaw
    import airflow_provider_hitpaw.triggers.jobs  # noqa: F401
    from airflow_provider_hitpaw.batch.ledger import Ledger
    from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator
    from airflow_provider_hitpaw.version_compat import TaskDeferred

    n = int(spec["items"])
    output = Path(spec["output"])
    triggerer = TriggererChild()
    baseline = reset_peak()
    urls = [f"{spec['base_url']}/samples/portrait.jpg?mem={n}-{i}" for i in range(n)]
    operator = EnhancePhotoBatchOperator(
        task_id="bench_batch_memory", img_urls=urls, output_path=str(output), model_name="face_2x",
        hitpaw_conn_id=CONN_ID, max_in_flight=int(spec["max_in_flight"]), submits_per_second=100,
        preflight=False, poll_interval=1, timeout=3600, deferrable=True, max_failed_items=n, max_failed_fraction=1.0,
    )
    ti = SimpleNamespace(dag_id="bench", run_id=f"memory-{n}", task_id="bench_batch_memory", map_index=-1,
                         try_number=1)
    context: Any = {"ti": ti}
    started = time.monotonic()
    stretches = 0
    event: dict[str, Any] | None = None
    try:
        while True:
            stretches += 1
            try:
                result = operator.execute(context) if event is None else operator.execute_complete(context, event)
                break
            except TaskDeferred as deferred:
                event = triggerer.wait(deferred.trigger)
    finally:
        triggerer_stats = triggerer.close()
    wall = time.monotonic() - started
    worker_peak = hwm_bytes() - baseline
    load_started = time.perf_counter()
    Ledger(str(output)).load()
    ledger_load = time.perf_counter() - load_started
    return {
        "items": n,
        "counts": result["counts"],
        "stretches": stretches,
        "wall_s": wall,
        "worker_baseline_rss": baseline,
        "worker_peak_growth": worker_peak,
        "triggerer_peak_growth": triggerer_stats["peak_growth"],
        "triggerer_waits": triggerer_stats["waits"],
        "ledger_load_s": ledger_load,
        "ledger_bytes": (output / ".hitpaw" / "ledger.jsonl").stat().st_size,
    }


def main() -> None:
    if sys.argv[1] == "--triggerer":
        triggerer_main()
        return
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    with tempfile.TemporaryDirectory(prefix="hitpaw-bench-batch-") as tmp:
        spec.setdefault("output", str(Path(tmp) / "out"))
        emit(run(spec))


if __name__ == "__main__":
    main()
