"""Benchmark 6 -- worker slots: N enhancements in a real Airflow deployment with only a few worker slots.

A real deployment (``tests/deployment.py``: scheduler, triggerer, DAG processor and API server as
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
import importlib.util
import sys
import time
from typing import Any

from bench.common import CONN_ID, REPO, BenchResult, Row, conn_env, start_sandbox

FULL = {"jobs": 20, "job_seconds": 15.0, "slots": 2}
# CI: the deployment starts in ~15 s; 6 jobs of 6 s take ~15 s deferrable and ~25 s sync.
QUICK = {"jobs": 6, "job_seconds": 6.0, "slots": 2}
SMOKE = {"jobs": 2, "job_seconds": 2.0, "slots": 2}
TARGET = 1.5
MODES = ("deferrable", "sync")

DAG_SOURCE = '''
"""Benchmark 6: {jobs} mapped HitPaw enhancements, deferrable and in the worker (generated)."""
import pendulum
from airflow.sdk import DAG

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
'''


def deployment_module() -> Any:
    """``tests/deployment.py`` (the deployment helper the deployment test uses), loaded by path."""
    name = "hitpaw_deployment_helper"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "deployment.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


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
        source = DAG_SOURCE.format(jobs=jobs, conn_id=CONN_ID, sample=sample)
        # Sync: jobs / slots rounds of one job each, plus task start-up; deferrable: about one job.
        budget = 120 + 2 * (jobs / slots) * (job_seconds + 6)
        log(f"  starting an Airflow deployment ({slots} worker slots)")
        with helper.Deployment(
            dag_files=[], dag_sources={"bench_worker_slots.py": source},
            env=conn_env(sandbox.base_url), parallelism=slots, deadline_seconds=budget,
        ) as deployment:
            deployment.wait_for_dags([f"bench_worker_slots_{m}" for m in MODES])
            for mode in MODES:
                deployment.unpause(f"bench_worker_slots_{mode}")
            for mode in MODES:
                before = len(sandbox.stats()["submissions"])
                log(f"  {mode}: {jobs} tasks of {job_seconds:g} s")
                measured[mode] = figures = run_mode(deployment, mode, jobs, budget)
                figures["submissions"] = len(sandbox.stats()["submissions"]) - before
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
        "deferrable's excess over one job is the slots starting each task (submission) and resuming it "
        "(execute_complete): 2 x jobs task starts shared by the slots.",
    ]
    return result


if __name__ == "__main__":  # python -m bench.worker_slots [--quick | --smoke]
    size = "QUICK" if "--quick" in sys.argv else "SMOKE" if "--smoke" in sys.argv else "FULL"
    from bench.common import table_lines

    bench = run(**globals()[size])
    print("\n".join(table_lines([bench])))
    for note in bench.notes:
        print(f"* {note}")
