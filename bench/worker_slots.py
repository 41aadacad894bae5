"""Benchmark 6 -- worker slots: N enhancements in a real Airflow deployment with only a few worker slots.

A real deployment (``tests/support/deployment.py``: scheduler, triggerer, DAG processor and API server as
separate processes, LocalExecutor, SQLite, ``[core] parallelism`` = ``slots``) runs one DAG run of N
mapped ``EnhancePhotoOperator`` tasks against a sandbox (its own process) whose jobs take
``job_seconds``, twice: ``deferrable=True`` (the wait happens in the triggerer, the slot is freed) and
``deferrable=False`` (each task holds its slot for the whole job). The figure is each DAG run's wall time
(its ``start_date`` to ``end_date`` in the REST API), against one job's duration.

Expected: deferrable ~ one job plus the time the slots need to start and resume N tasks; sync ~
N / slots jobs back to back. Target: deferrable within 1.5x one job's duration.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

from bench.common import CONN_ID, BenchResult, Row, conn_env, start_sandbox

FULL = {"jobs": 20, "job_seconds": 15.0, "slots": 2}
# CI: the deployment starts in ~15 s; 6 jobs of 6 s take ~15 s deferrable and ~25 s sync.
QUICK = {"jobs": 6, "job_seconds": 6.0, "slots": 2}
SMOKE = {"jobs": 2, "job_seconds": 2.0, "slots": 2}
TARGET = 1.5
MODES = ("deferrable", "sync")

DAG_SOURCE = '''
"""Benchmark 6: {jobs} mapped HitPaw enhancements, deferrable and in the worker (generated)."""
import pendulum
from airflow.sdk import DAG, task

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

for mode, deferrable in (("deferrable", True), ("sync", False)):
    with DAG(
        dag_id=f"bench_worker_slots_{{mode}}",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        max_active_tasks=256,
        is_paused_upon_creation=False,
    ):
        EnhancePhotoOperator.partial(
            task_id="enhance",
            model_name="face_2x",
            hitpaw_conn_id={conn_id!r},
            deferrable=deferrable,
            poll_interval=1,
            timeout=1800,
        ).expand(img_url=[f"{sample}?mode={{mode}}&n={{n}}" for n in range({jobs})])

# Run first: the LocalExecutor starts its worker processes on demand, so the first tasks of a fresh
# deployment pay for that; neither measured mode should.
with DAG(
    dag_id="bench_worker_slots_warmup",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    is_paused_upon_creation=False,
):
    @task
    def noop(n: int) -> int:
        return n

    noop.expand(n=list(range({slots})))
'''


def deployment_module() -> Any:
    """The deployment harness the deployment test uses (``tests/support/deployment.py``)."""
    from tests.support import deployment

    return deployment


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def _epoch(stamp: str | None) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp() if stamp else float("nan")


def run_mode(deployment: Any, mode: str, jobs: int, timeout: float) -> dict[str, Any]:
    """Trigger one run of ``bench_worker_slots_<mode>`` and wait for it; its timings."""
    max_deferred = max_running = 0

    def done(runs: list[Any]) -> bool:
        nonlocal max_deferred, max_running
        states = [ti.get("state") for ti in runs[0].task_instances]
        max_deferred = max(max_deferred, states.count("deferred"))
        max_running = max(max_running, states.count("running"))
        return runs[0].state in ("success", "failed")

    started = time.monotonic()
    run = deployment.trigger(f"bench_worker_slots_{mode}")
    deployment.wait_for_runs([run], timeout, until=done, what=f"the {mode} run of {jobs} tasks", interval=0.5)
    observed = time.monotonic() - started
    detail = deployment.run_state(run)
    tis = [ti for ti in run.task_instances if ti.get("map_index", -1) >= 0]
    return {
        "state": run.state,
        "wall": _seconds(detail.get("start_date"), detail.get("end_date")),
        "start_epoch": _epoch(detail.get("start_date")),
        "end_epoch": _epoch(detail.get("end_date")),
        "observed": observed,
        "tasks": len(tis),
        "succeeded": sum(ti.get("state") == "success" for ti in tis),
        "max_deferred": max_deferred,
        "max_running": max_running,
    }


def run(jobs: int, job_seconds: float, slots: int, log: Any = print) -> BenchResult:
    helper = deployment_module()
    sandbox = start_sandbox(job_seconds=job_seconds, max_work_megapixels=50.0)
    result = BenchResult("worker_slots")
    measured: dict[str, dict[str, Any]] = {}
    try:
        sample = sandbox.url("/samples/portrait.jpg")
        source = DAG_SOURCE.format(jobs=jobs, conn_id=CONN_ID, sample=sample, slots=slots)
        # Sync: jobs / slots rounds of one job each, plus task start-up; deferrable: about one job.
        budget = 120 + 2 * (jobs / slots) * (job_seconds + 6)
        log(f"  starting an Airflow deployment ({slots} worker slots)")
        with helper.Deployment(
            dag_files=[], dag_sources={"bench_worker_slots.py": source},
            env=conn_env(sandbox.base_url), parallelism=slots, deadline_seconds=budget,
        ) as deployment:
            dag_ids = [f"bench_worker_slots_{m}" for m in ("warmup", *MODES)]
            deployment.wait_for_dags(dag_ids)
            for dag_id in dag_ids:
                deployment.unpause(dag_id)
            warmup = deployment.wait_for_runs([deployment.trigger(dag_ids[0])], 60, what="the warm-up run")
            if warmup[0].state != "success":
                raise RuntimeError(f"the warm-up run ended {warmup[0].state}: {warmup[0].task_states}")
            for mode in MODES:
                before = len(sandbox.stats()["submissions"])
                log(f"  {mode}: {jobs} tasks of {job_seconds:g} s")
                measured[mode] = figures = run_mode(deployment, mode, jobs, budget)
                submitted = [s["created_at"] for s in sandbox.stats()["submissions"][before:]]
                figures["submissions"] = len(submitted)
                if submitted:  # where the time went: start -> submissions -> last job done -> end
                    figures["to_first_submission"] = min(submitted) - figures["start_epoch"]
                    figures["submission_span"] = max(submitted) - min(submitted)
                    figures["after_last_job"] = figures["end_epoch"] - (max(submitted) + job_seconds)
                log(f"    {figures}")
                if figures["state"] != "success":
                    raise RuntimeError(f"the {mode} run ended {figures['state']}: {figures}")
    finally:
        sandbox.stop()

    deferrable, sync = measured["deferrable"], measured["sync"]
    ratio_deferrable = deferrable["wall"] / job_seconds
    ratio_sync = sync["wall"] / job_seconds
    label = f"{jobs} x {job_seconds:g} s jobs, {slots} slots"
    result.rows += [
        Row("worker_slots", f"deferrable wall time ({label})", f"{deferrable['wall']:.1f} s",
            f"{job_seconds:g} s (one job)", ratio_deferrable, f"<= {TARGET:g}x one job",
            ratio_deferrable <= TARGET),
        Row("worker_slots", f"sync wall time ({label})", f"{sync['wall']:.1f} s",
            f"{job_seconds:g} s (one job)", ratio_sync, f"~{jobs / slots:g}x expected", None),
        Row("worker_slots", "deferrable / sync wall time", f"{deferrable['wall']:.1f} s",
            f"{sync['wall']:.1f} s", deferrable["wall"] / sync["wall"]),
    ]
    result.notes += [
        f"real deployment (separate scheduler, triggerer, DAG processor, API server; LocalExecutor, SQLite, "
        f"parallelism {slots}); one DAG run of {jobs} mapped EnhancePhotoOperator tasks per mode, sandbox jobs "
        f"of {job_seconds:g} s; wall time = the DAG run's start_date to end_date.",
        f"deferrable: up to {deferrable['max_deferred']} tasks deferred at once while at most "
        f"{deferrable['max_running']} ran; sync: at most {sync['max_running']} running at once.",
        f"submissions: {deferrable['submissions']} deferrable, {sync['submissions']} sync "
        f"(one per task expected: {jobs}).",
        "deferrable, where the time went: run start to first submission "
        f"{deferrable.get('to_first_submission', float('nan')):.1f} s, first to last submission "
        f"{deferrable.get('submission_span', float('nan')):.1f} s (every task needs a slot to submit), "
        f"last job's end to run end {deferrable.get('after_last_job', float('nan')):.1f} s (the trigger's "
        f"poll, then a slot to resume each task in execute_complete): {2 * jobs} task starts "
        f"shared by {slots} slots, which no trigger can overlap.",
    ]
    return result


if __name__ == "__main__":  # python -m bench.worker_slots [--quick | --smoke]
    size = "QUICK" if "--quick" in sys.argv else "SMOKE" if "--smoke" in sys.argv else "FULL"
    from bench.common import table_lines

    bench = run(**globals()[size])
    print("\n".join(table_lines([bench])))
    for note in bench.notes:
        print(f"* {note}")
