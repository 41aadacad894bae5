"""Benchmark 7 -- batch: N photos through one ``EnhancePhotoBatchOperator`` in a real deployment, against
the same photos as mapped ``EnhancePhotoOperator`` tasks, and the batch's memory at 10,000 items.

1. **Wall time and task starts.** A real deployment (``tests/support/deployment.py``: scheduler,
   triggerer, DAG processor and API server as processes; LocalExecutor, SQLite, ``slots`` worker
   slots) runs one batch task over N photos against a sandbox (its own process) whose jobs take
   ``job_seconds`` and which accepts ``rate`` submissions a second (``rate_limit_rps`` on submissions
   only, ``rate_limit_status=False``: status polls are not what is measured). The batch paces itself at
   the same rate (``submits_per_second``) with ``max_in_flight`` chosen so that it is not the bottleneck:
   ``rate x job_seconds`` jobs would suffice in a steady stream, and the batch refills by halves
   (``refill_after`` = half of ``max_in_flight``), so ``max_in_flight`` is at least 2.5 times that. The
   figure is the DAG run's wall time (``start_date`` to ``end_date``) against the bound
   ``N / rate + job_seconds`` (target <= 1.3x); task starts are the audit log's ``running`` entries of
   the task (one per start and per resume; Airflow 3.1 writes none: there the task runner's one log
   line per start is counted); target under ``N / max_in_flight + 5``.
2. **Triggerer CPU per job poll.** The triggerer process's CPU time during the batch (less its idle rate,
   measured before) over the status requests the sandbox answered; the same for the mapped run below.
   Then, outside Airflow, one ``HitPawJobsTrigger`` over K jobs against K single-job
   ``HitPawTaskStatusTrigger`` (the trigger benchmark's client, ``bench/trigger_client.py``), each in a
   fresh process: CPU per status request.
3. **Mapped tasks.** The same photos as one mapped ``EnhancePhotoOperator`` (deferrable) in the same
   deployment, under the same limit, for as long as the batch took: how many photos it enhanced in
   that time.
4. **Memory.** ``bench/batch_memory_client.py`` runs the batch over each of ``memory_items`` photos in a
   worker process and a triggerer child process: the peak RSS growth of each.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench.common import (
    CONN_ID,
    BenchResult,
    Row,
    conn_env,
    proc_cpu_seconds,
    rss_bytes,
    run_json,
    start_sandbox,
    status_requests,
)

FULL: dict[str, Any] = {
    "deployment": True, "photos": 1000, "job_seconds": 15.0, "rate": 5.0, "max_in_flight": 200, "slots": 2, "poll_interval": 2.0,
    "memory_items": [1_000, 10_000], "trigger_k": 1_000, "trigger_interval": 1.0, "trigger_span": 20.0,
    "trigger_rounds": 2,
}
# CI, in well under a minute: no deployment (it alone takes 20 to 40 s to start on a 2-core machine; the
# smoke configuration runs it), the trigger CPU comparison and the memory at 100 and 1,000 items.
QUICK: dict[str, Any] = {
    "deployment": False, "photos": 60, "job_seconds": 3.0, "rate": 10.0, "max_in_flight": 80, "slots": 2, "poll_interval": 1.0,
    "memory_items": [100, 1_000], "trigger_k": 200, "trigger_interval": 1.0, "trigger_span": 4.0,
    "trigger_rounds": 1,
}
SMOKE: dict[str, Any] = {
    "deployment": True, "photos": 6, "job_seconds": 1.0, "rate": 10.0, "max_in_flight": 4, "slots": 2, "poll_interval": 1.0,
    "memory_items": [20, 40], "trigger_k": 10, "trigger_interval": 1.0, "trigger_span": 2.0,
    "trigger_rounds": 1,
}
WALL_TARGET = 1.3
MEMORY_TARGET = 1.5  # peak growth at the largest item count over the smallest: "flat"
BATCH_DAG, MAPPED_DAG, WARMUP_DAG = "bench_batch", "bench_batch_mapped", "bench_batch_warmup"
IDLE_SECONDS = 8.0

DAG_SOURCE = '''
"""Benchmark 7: {photos} photos in one batch task, and as mapped tasks (generated)."""
import pendulum
from airflow.sdk import DAG, task

from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

START = pendulum.datetime(2025, 1, 1, tz="UTC")

with DAG(dag_id={batch!r}, schedule=None, start_date=START, is_paused_upon_creation=False):
    EnhancePhotoBatchOperator(
        task_id="enhance_batch",
        img_urls=[f"{sample}?batch={{n}}" for n in range({photos})],
        output_path={output!r},
        model_name="face_2x",
        hitpaw_conn_id={conn_id!r},
        max_in_flight={max_in_flight},
        submits_per_second={rate},
        poll_interval={poll_interval},
        timeout=3600,
        deferrable=True,
    )

with DAG(dag_id={mapped!r}, schedule=None, start_date=START, max_active_tasks=1024,
         is_paused_upon_creation=False):
    EnhancePhotoOperator.partial(
        task_id="enhance",
        model_name="face_2x",
        hitpaw_conn_id={conn_id!r},
        output_path={mapped_output!r},
        deferrable=True,
        poll_interval={poll_interval},
        timeout=3600,
    ).expand(img_url=[f"{sample}?mapped={{n}}" for n in range({photos})])

# Run first: the LocalExecutor starts its worker processes on demand; neither measured run should pay.
with DAG(dag_id={warmup!r}, schedule=None, start_date=START, is_paused_upon_creation=False):
    @task
    def noop(n: int) -> int:
        return n

    noop.expand(n=list(range({slots})))
'''


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


class TriggererMeter:
    """CPU seconds and peak RSS of the deployment's triggerer process tree."""

    def __init__(self, deployment: Any, helper: Any) -> None:
        self.deployment = deployment
        self.helper = helper
        self.peak_rss = 0

    def pids(self) -> list[int]:
        # Every triggerer of the deployment (the Celery one has two, ``triggerer-1`` and ``triggerer-2``).
        return [pid for name in self.deployment.triggerer_names
                for pid in self.helper.process_tree(self.deployment.components[name].process.pid)]

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                total += proc_cpu_seconds(pid)
            except (OSError, ValueError):
                pass
        return total

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += rss_bytes(pid)
            except (OSError, RuntimeError):
                pass
        self.peak_rss = max(self.peak_rss, total)
        return total


def _wait_sampling(deployment: Any, run: Any, timeout: float, meter: TriggererMeter, what: str,
                   stop_after: float | None = None) -> None:
    """Wait for the run to end (or ``stop_after`` seconds), sampling the triggerer's RSS."""
    started = time.monotonic()

    def done(runs: list[Any]) -> bool:
        meter.rss()
        if stop_after is not None and time.monotonic() - started >= stop_after:
            return True
        return runs[0].state in ("success", "failed")

    deployment.wait_for_runs([run], timeout, until=done, what=what, interval=1.0)


#: Opens the deployment measured: ``(env, {file name: DAG source}, budget in seconds)`` to a context
#: manager yielding a started ``tests.support.deployment.Deployment``.
OpenDeployment = Callable[[dict[str, str], dict[str, str], float], AbstractContextManager[Any]]


@contextlib.contextmanager
def local_deployment(env: dict[str, str], dag_sources: dict[str, str], budget: float, slots: int) -> Any:
    """The LocalExecutor/SQLite deployment with ``slots`` worker slots (the default of :func:`measure_deployment`)."""
    from tests.support import deployment as helper

    with helper.Deployment(dag_files=[], dag_sources=dag_sources, env=env, parallelism=slots,
                           deadline_seconds=budget) as deployment:
        yield deployment


def measure_deployment(cfg: dict[str, Any], log: Any, open_deployment: OpenDeployment | None = None,
                       what: str = "an Airflow deployment") -> dict[str, Any]:
    """The batch, then the same photos as mapped tasks, in a deployment (part 1 and 3 above).

    :param cfg: photos, job_seconds, rate, max_in_flight, slots, poll_interval.
    :param log: where progress goes.
    :param open_deployment: opens the deployment; by default :func:`local_deployment` with ``slots``.
    :param what: the deployment's name in the progress lines.
    """
    from tests.support import deployment as helper
    from tests.support.task_processes import task_starts

    photos, job_seconds, rate = cfg["photos"], cfg["job_seconds"], cfg["rate"]
    bound = photos / rate + job_seconds
    sandbox = start_sandbox(job_seconds=job_seconds, max_work_megapixels=50.0)
    figures: dict[str, Any] = {"bound": bound}
    try:
        sandbox.set_faults(rate_limit_rps=rate, rate_limit_status=False)
        with tempfile.TemporaryDirectory(prefix="hitpaw-bench-batch-") as tmp:
            source = DAG_SOURCE.format(
                photos=photos, batch=BATCH_DAG, mapped=MAPPED_DAG, warmup=WARMUP_DAG, conn_id=CONN_ID,
                sample=sandbox.url("/samples/portrait.jpg"), output=f"{tmp}/batch", mapped_output=f"{tmp}/mapped/",
                max_in_flight=cfg["max_in_flight"], rate=rate, poll_interval=cfg["poll_interval"], slots=cfg["slots"],
            )
            budget = 240 + 4 * bound
            log(f"  starting {what} ({cfg['slots']} worker slots)")
            opener = open_deployment or (lambda env, dags, seconds: local_deployment(env, dags, seconds, cfg["slots"]))
            with opener(conn_env(sandbox.base_url), {"bench_batch.py": source}, budget) as deployment:
                dag_ids = [WARMUP_DAG, BATCH_DAG, MAPPED_DAG]
                deployment.wait_for_dags(dag_ids)
                for dag_id in dag_ids:
                    deployment.unpause(dag_id)
                warmup = deployment.wait_for_runs([deployment.trigger(WARMUP_DAG)], 90, what="the warm-up run")
                if warmup[0].state != "success":
                    raise RuntimeError(f"the warm-up run ended {warmup[0].state}: {warmup[0].task_states}")
                meter = TriggererMeter(deployment, helper)
                idle_cpu = meter.cpu()
                time.sleep(IDLE_SECONDS)
                idle_rate = (meter.cpu() - idle_cpu) / IDLE_SECONDS
                rss_idle = meter.rss()
                meter.peak_rss = 0

                log(f"  batch: {photos} photos, jobs of {job_seconds:g} s, {rate:g} submissions/s, "
                    f"max_in_flight {cfg['max_in_flight']}")
                polls_before, cpu_before = status_requests(sandbox.stats()), meter.cpu()
                started = time.monotonic()
                run = deployment.trigger(BATCH_DAG)
                _wait_sampling(deployment, run, budget, meter, "the batch run")
                elapsed = time.monotonic() - started
                stats = sandbox.stats()
                detail = deployment.run_state(run)
                starts = task_starts(deployment, run, "enhance_batch", 1)
                submitted = [s for s in stats["submissions"] if "?batch=" in s["img_url"]]
                summary = _xcom(deployment, run, "enhance_batch")
                figures["batch"] = {
                    "state": run.state,
                    "wall": _seconds(detail.get("start_date"), detail.get("end_date")),
                    "starts": starts,
                    "submissions": len(submitted),
                    "distinct": len({s["img_url"] for s in submitted}),
                    "submission_span": (max(s["created_at"] for s in submitted) - min(s["created_at"] for s in submitted))
                    if submitted else float("nan"),
                    "peak_in_flight": max(stats["peak_in_flight_by_key"].values() or [0]),
                    "polls": status_requests(stats) - polls_before,
                    "triggerer_cpu": meter.cpu() - cpu_before - idle_rate * elapsed,
                    "triggerer_rss_growth": meter.peak_rss - rss_idle,
                    "rate_limited": stats["faults_injected"].get("rate_limit", 0),
                    "counts": (summary or {}).get("counts"),
                }
                log(f"    {figures['batch']}")
                if run.state != "success":
                    raise RuntimeError(f"the batch run ended {run.state}: {figures['batch']}\n"
                                       f"{deployment.task_log(run, 'enhance_batch')[-3000:]}")

                window = figures["batch"]["wall"]
                log(f"  mapped: the same {photos} photos as mapped tasks, for {window:.0f} s")
                rss_idle = meter.rss()
                meter.peak_rss = 0
                polls_before, cpu_before = status_requests(sandbox.stats()), meter.cpu()
                started = time.monotonic()
                mapped = deployment.trigger(MAPPED_DAG)
                # From the run's start, as the batch's wall time is counted (the trigger call included).
                _wait_sampling(deployment, mapped, budget, meter, "the mapped run", stop_after=window)
                elapsed = time.monotonic() - started
                stats = sandbox.stats()
                figures["mapped"] = {
                    "state": mapped.state,
                    "elapsed": elapsed,
                    # Each success copied its result there (the REST API pages task instances by 100).
                    "succeeded": sum(1 for _ in Path(tmp, "mapped").glob("*.jpg")),
                    "expanded": _count_task_instances(deployment, mapped),
                    "deferred": _count_task_instances(deployment, mapped, "deferred"),
                    "submissions": sum("?mapped=" in s["img_url"] for s in stats["submissions"]),
                    "polls": status_requests(stats) - polls_before,
                    "triggerer_cpu": meter.cpu() - cpu_before - idle_rate * elapsed,
                    "triggerer_rss_growth": meter.peak_rss - rss_idle,
                }
                log(f"    {figures['mapped']}")
                figures["idle_rate"] = idle_rate
                _stop_run(deployment, mapped)
    finally:
        sandbox.stop()
    return figures


def _count_task_instances(deployment: Any, run: Any, state: str | None = None) -> int:
    query = "limit=1" + (f"&state={state}" if state else "")
    path = (f"/api/v2/dags/{urllib.parse.quote(run.dag_id)}/dagRuns/{urllib.parse.quote(run.run_id)}"
            f"/taskInstances?{query}")
    return int(deployment.api("GET", path)["total_entries"])


def _xcom(deployment: Any, run: Any, task_id: str) -> dict[str, Any] | None:
    path = (f"/api/v2/dags/{urllib.parse.quote(run.dag_id)}/dagRuns/{urllib.parse.quote(run.run_id)}"
            f"/taskInstances/{task_id}/xcomEntries/return_value")
    try:
        value = deployment.api("GET", path)["value"]
    except Exception:
        return None
    return json.loads(value) if isinstance(value, str) else value


def _stop_run(deployment: Any, run: Any) -> None:
    """Mark the unfinished mapped run failed, so the deployment stops with nothing left to schedule."""
    if run.state in ("success", "failed"):
        return
    try:
        deployment.api("PATCH", f"/api/v2/dags/{urllib.parse.quote(run.dag_id)}/dagRuns/"
                       f"{urllib.parse.quote(run.run_id)}", {"state": "failed"})
    except Exception:  # the deployment is stopped right after in any case
        pass


def measure_trigger_cpu(k: int, interval: float, span: float, rounds: int, log: Any) -> dict[str, float]:
    """CPU per status request: one HitPawJobsTrigger over k jobs, k single triggers; alternating, means."""
    from bench import bench_triggers

    sandbox = start_sandbox()
    out: dict[str, list[float]] = {"jobs": [], "single": []}
    try:
        for seed in range(rounds):
            for mode in ("jobs", "single") if seed % 2 == 0 else ("single", "jobs"):
                if mode == "single":
                    figures = bench_triggers.run_client(sandbox, "ours", k, interval, seed=seed, span=span)
                else:
                    figures = _run_jobs_client(sandbox, k, interval, seed, span)
                out[mode].append(figures["cpu_per_request_us"])
                log(f"  trigger CPU, K={k} @{interval:g}s {mode}: {figures['cpu_per_request_us']:.0f} us/poll, "
                    f"{figures['requests']} polls, {figures['not_success']} not success")
    finally:
        sandbox.stop()
    return {mode: sum(values) / len(values) for mode, values in out.items()}


def _run_jobs_client(sandbox: Any, k: int, interval: float, seed: int, span: float) -> dict[str, Any]:
    spec = {"k": k, "interval": interval, "seed": seed, "span": span, "base_url": sandbox.base_url,
            "sandbox_pid": sandbox.process.pid}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(spec, handle)
        handle.flush()
        result: dict[str, Any] = run_json("jobs_trigger_client", handle.name, env=conn_env(sandbox.base_url),
                                          timeout=60 + (span + 5) * interval)
        return result


def measure_memory(items: list[int], max_in_flight: int, log: Any) -> dict[int, dict[str, Any]]:
    sandbox = start_sandbox(job_seconds=0.3)
    out = {}
    try:
        for n in items:
            with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
                json.dump({"items": n, "base_url": sandbox.base_url, "max_in_flight": max_in_flight}, handle)
                handle.flush()
                out[n] = run_json("batch_memory_client", handle.name, env=conn_env(sandbox.base_url),
                                  timeout=120 + n * 0.1)
            log(f"  memory, {n:,} items: {out[n]}")
    finally:
        sandbox.stop()
    return out


def run(deployment: bool, photos: int, job_seconds: float, rate: float, max_in_flight: int, slots: int, poll_interval: float,
        memory_items: list[int], trigger_k: int, trigger_interval: float, trigger_span: float, trigger_rounds: int,
        log: Any = print) -> BenchResult:
    cfg = {"photos": photos, "job_seconds": job_seconds, "rate": rate, "max_in_flight": max_in_flight,
           "slots": slots, "poll_interval": poll_interval}
    result = BenchResult("batch")
    if deployment:
        deployment_rows(result, measure_deployment(cfg, log), cfg)
    cpu = measure_trigger_cpu(trigger_k, trigger_interval, trigger_span, trigger_rounds, log)
    result.rows.append(
        Row("batch", f"CPU per poll, one HitPawJobsTrigger vs single triggers (K={trigger_k:,} @{trigger_interval:g}s)",
            f"{cpu['jobs']:.0f} us", f"{cpu['single']:.0f} us", cpu["jobs"] / cpu["single"], "<= 1x",
            cpu["jobs"] <= cpu["single"]))
    memory = measure_memory(memory_items, 200, log)
    memory_rows(result, memory)
    return result


def deployment_rows(result: BenchResult, figures: dict[str, Any], cfg: dict[str, Any],
                    setup: str = "separate scheduler, triggerer, DAG processor, API server; LocalExecutor, SQLite") -> None:
    photos, job_seconds, rate = cfg["photos"], cfg["job_seconds"], cfg["rate"]
    max_in_flight, slots, poll_interval = cfg["max_in_flight"], cfg["slots"], cfg["poll_interval"]
    batch, mapped, bound = figures["batch"], figures["mapped"], figures["bound"]
    wall_ratio = batch["wall"] / bound
    start_limit = photos / max_in_flight + 5
    label = f"{photos:,} photos, {job_seconds:g} s jobs, R={rate:g}/s, max_in_flight {max_in_flight}"
    batch_cpu = batch["triggerer_cpu"] / max(1, batch["polls"]) * 1e6
    mapped_cpu = mapped["triggerer_cpu"] / max(1, mapped["polls"]) * 1e6
    batch_rate = batch["distinct"] / batch["wall"]
    mapped_rate = mapped["succeeded"] / mapped["elapsed"]
    result.rows += [
        Row("batch", f"wall time vs N/R + job ({label})", f"{batch['wall']:.1f} s", f"{bound:.1f} s (bound)",
            wall_ratio, f"<= {WALL_TARGET:g}x", wall_ratio <= WALL_TARGET),
        Row("batch", "task starts (start + resumes)", f"{batch['starts']}", f"{start_limit:.0f} (N/max_in_flight + 5)",
            batch["starts"] / start_limit if batch["starts"] else None, f"< {start_limit:.0f}",
            0 < batch["starts"] < start_limit),
        Row("batch", "photos enhanced per second: batch vs mapped tasks", f"{batch_rate:.2f}/s",
            f"{mapped_rate:.2f}/s ({mapped['succeeded']} of {photos} in {mapped['elapsed']:.0f} s)",
            batch_rate / mapped_rate if mapped_rate else None),
        Row("batch", "triggerer CPU per poll in the deployment: batch vs mapped", f"{batch_cpu:.0f} us",
            f"{mapped_cpu:.0f} us", batch_cpu / mapped_cpu if mapped_cpu > 0 else None),
    ]
    result.notes += [
        f"real deployment ({setup}, parallelism {slots}); sandbox jobs of {job_seconds:g} s with real image work; rate limit {rate:g} "
        f"submissions/s (status polls not limited); batch: submits_per_second {rate:g}, max_in_flight "
        f"{max_in_flight} (refill_after {max(1, -(-max_in_flight // 2))}), poll_interval {poll_interval:g} s; "
        f"a steady stream needs only rate x job = {rate * job_seconds:.0f} jobs in flight.",
        f"batch: {batch['submissions']} submissions for {batch['distinct']} photos over {batch['submission_span']:.0f} s "
        f"(first to last), {batch['rate_limited']} answered 429, peak {batch['peak_in_flight']} jobs in flight, "
        f"outcomes {batch['counts']}; {batch['polls']} status polls.",
        f"mapped: after {mapped['elapsed']:.0f} s, {mapped['succeeded']} of {mapped['expanded']} expanded tasks "
        f"succeeded and {mapped['deferred']} were deferred; {mapped['submissions']} submissions, {mapped['polls']} polls.",
        f"triggerer in the deployment: CPU less its idle rate ({figures['idle_rate'] * 100:.1f}% of a core), over the "
        f"status polls of the run; peak RSS growth batch {batch['triggerer_rss_growth'] / 2**20:.1f} MiB, mapped "
        f"{mapped['triggerer_rss_growth'] / 2**20:.1f} MiB.",
    ]


def memory_rows(result: BenchResult, memory: dict[int, dict[str, Any]]) -> None:
    small, large = min(memory), max(memory)
    worker_ratio = memory[large]["worker_peak_growth"] / max(1, memory[small]["worker_peak_growth"])
    trigger_ratio = memory[large]["triggerer_peak_growth"] / max(1, memory[small]["triggerer_peak_growth"])
    result.rows += [
        Row("batch", f"worker peak RSS growth, {large:,} vs {small:,} items",
            f"{memory[large]['worker_peak_growth'] / 2**20:.1f} MiB", f"{memory[small]['worker_peak_growth'] / 2**20:.1f} MiB",
            worker_ratio, f"flat: <= {MEMORY_TARGET:g}x", worker_ratio <= MEMORY_TARGET),
        Row("batch", f"triggerer peak RSS growth, {large:,} vs {small:,} items",
            f"{memory[large]['triggerer_peak_growth'] / 2**20:.1f} MiB",
            f"{memory[small]['triggerer_peak_growth'] / 2**20:.1f} MiB",
            trigger_ratio, f"flat: <= {MEMORY_TARGET:g}x", trigger_ratio <= MEMORY_TARGET),
    ]
    result.notes += [
        "memory (a worker process and a triggerer child, peaks over VmHWM reset after imports; jobs ending in ERROR "
        "without image work, max_in_flight 200): " + "; ".join(
            f"{n:,} items in {m['wall_s']:.0f} s, {m['stretches']} stretches, worker +{m['worker_peak_growth'] / 2**20:.1f} MiB "
            f"({m['worker_peak_growth'] / n / 1024:.1f} KiB/item), triggerer +{m['triggerer_peak_growth'] / 2**20:.1f} MiB "
            f"over {m['triggerer_waits']} waits, ledger "
            f"{m['ledger_bytes'] / 2**20:.1f} MiB read in {m['ledger_load_s'] * 1000:.0f} ms"
            for n, m in sorted(memory.items())),
    ]


if __name__ == "__main__":  # python -m bench.bench_batch [--quick | --smoke]
    size = "QUICK" if "--quick" in sys.argv else "SMOKE" if "--smoke" in sys.argv else "FULL"
    from bench.common import table_lines

    bench = run(**globals()[size])
    print("\n".join(table_lines([bench])))
    for note in bench.notes:
        print(f"* {note}")
