"""The memory side of the batch benchmark, run in a process of its own: ``python -m bench.batch_memory_client SPEC.json``.

It runs one ``EnhancePhotoBatchOperator`` over N photo URLs against the sandbox the way a deployment
would, but in this one process: ``execute`` until it defers, the trigger's ``wait()`` (what the
triggerer runs), ``execute_complete`` with its event, and so on until the batch returns. A thread reads
this process's resident memory every 10 ms and keeps the peak of each phase:

- ``worker``: the operator's own code (the items, the ledger read at each resume, submitting, saving,
  the manifest);
- ``trigger``: the wait for the jobs in flight; its growth is counted from the RSS at its start.

Each resume builds a fresh ``_Attempt`` from the ledger, as a new worker process would. The sandbox's
jobs end in ERROR without image work (``max_work_megapixels`` tiny, so that 10,000 jobs cost it
nothing) and the batch tolerates them (``max_failed_items=N``): downloads are not part of this
figure (the download benchmark measures their memory). It reports the peaks above the RSS measured
before the operator was built, and how long the last resume took to read the ledger.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.common import CONN_ID, emit, rss_bytes

SAMPLE_SECONDS = 0.01


class PhaseMemory:
    """Peak RSS of each phase, sampled by a thread."""

    def __init__(self) -> None:
        self.phase = "idle"
        self.phase_start_rss = rss_bytes()
        self.peaks: dict[str, int] = {}
        self.growth: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def enter(self, phase: str) -> None:
        self._record()
        self.phase = phase
        self.phase_start_rss = rss_bytes()

    def _record(self) -> None:
        rss = rss_bytes()
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
        self.growth[self.phase] = max(self.growth.get(self.phase, 0), rss - self.phase_start_rss)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._record()

    def stop(self) -> None:
        self._record()
        self._stop.set()
        self._thread.join(5)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    # What the operator imports on its first use, so that the baseline holds it already.
    import airflow_provider_hitpaw.hooks.hitpaw
    import airflow_provider_hitpaw.triggers.jobs  # noqa: F401
    from airflow_provider_hitpaw.batch.ledger import Ledger
    from airflow_provider_hitpaw.hooks.session import close_shared_session
    from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator
    from airflow_provider_hitpaw.version_compat import TaskDeferred

    n = int(spec["items"])
    output = Path(spec["output"])
    urls = [f"{spec['base_url']}/samples/portrait.jpg?mem={n}-{i}" for i in range(n)]
    gc.collect()
    memory = PhaseMemory()
    baseline = rss_bytes()
    memory.enter("worker")
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
    while True:
        stretches += 1
        try:
            result = operator.execute(context) if event is None else operator.execute_complete(context, event)
            break
        except TaskDeferred as deferred:
            memory.enter("trigger")

            async def wait(trigger: Any = deferred.trigger) -> dict[str, Any]:
                try:
                    waited: dict[str, Any] = await trigger.wait()
                    return waited
                finally:
                    await close_shared_session()

            event = asyncio.run(wait())
            memory.enter("worker")
    wall = time.monotonic() - started
    load_started = time.perf_counter()
    Ledger(str(output)).load()
    ledger_load = time.perf_counter() - load_started
    memory.stop()
    ledger_bytes = (output / ".hitpaw" / "ledger.jsonl").stat().st_size
    return {
        "items": n,
        "counts": result["counts"],
        "stretches": stretches,
        "wall_s": wall,
        "baseline_rss": baseline,
        "worker_peak_growth": memory.peaks.get("worker", baseline) - baseline,
        "trigger_growth": memory.growth.get("trigger", 0),
        "trigger_peak_growth": memory.peaks.get("trigger", baseline) - baseline,
        "ledger_load_s": ledger_load,
        "ledger_bytes": ledger_bytes,
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    with tempfile.TemporaryDirectory(prefix="hitpaw-bench-batch-") as tmp:
        spec.setdefault("output", str(Path(tmp) / "out"))
        emit(run(spec))


if __name__ == "__main__":
    main()
