"""Benchmark 6 on the production-shaped deployment: the worker-slot benchmark (``bench/worker_slots.py``)
on CeleryExecutor, PostgreSQL and Redis, against its LocalExecutor/SQLite figures measured in the same run.

The same generated DAGs (N mapped ``EnhancePhotoOperator`` tasks, ``deferrable=True`` and ``False``),
the same sandbox jobs and the same number of worker slots in total: the LocalExecutor deployment has
``slots`` of them, the Celery one two workers of ``slots / 2`` (``tests/system/celery_stack.py``: two
triggerers, scheduler, DAG processor and API server as processes). Figures: each DAG run's wall time
against one job's duration, as in benchmark 6, and the Celery deployment's wall time against the
LocalExecutor one's for each mode (what the distributed setup costs: a broker hop and a database
server per task start). Needs what ``make test-system`` needs (PostgreSQL's server binaries,
``redis-server``, the ``system`` extra).

``python -m bench.celery_worker_slots [--quick | --smoke]``
"""

from __future__ import annotations

import sys
from typing import Any

from bench import worker_slots
from bench.common import CONN_ID, BenchResult, Row, conn_env, start_sandbox

FULL = {"jobs": 20, "job_seconds": 15.0, "slots": 2}
QUICK = {"jobs": 6, "job_seconds": 6.0, "slots": 2}
SMOKE = {"jobs": 2, "job_seconds": 2.0, "slots": 2}


def run_celery(jobs: int, job_seconds: float, slots: int, log: Any = print) -> dict[str, dict[str, Any]]:
    """Both modes on the Celery deployment; each mode's figures (as ``worker_slots.run_mode`` gives)."""
    from tests.system.celery_stack import celery_deployment, missing_requirements

    missing = missing_requirements()
    if missing:
        raise RuntimeError(f"the Celery deployment cannot start: {missing}")
    sandbox = start_sandbox(job_seconds=job_seconds, max_work_megapixels=50.0)
    measured: dict[str, dict[str, Any]] = {}
    try:
        source = worker_slots.DAG_SOURCE.format(
            jobs=jobs, conn_id=CONN_ID, sample=sandbox.url("/samples/portrait.jpg"), slots=slots
        )
        budget = 180 + 2 * (jobs / slots) * (job_seconds + 6)
        log(f"  starting a CeleryExecutor deployment (2 workers x {max(1, slots // 2)} slots)")
        env = {**conn_env(sandbox.base_url), "AIRFLOW__CORE__PARALLELISM": str(slots)}
        with celery_deployment(
            env, worker_slots=max(1, slots // 2), deadline_seconds=budget,
            dag_files=[], dag_sources={"bench_worker_slots.py": source},
        ) as (_postgres, _redis, deployment):
            dag_ids = [f"bench_worker_slots_{m}" for m in ("warmup", *worker_slots.MODES)]
            deployment.wait_for_dags(dag_ids)
            for dag_id in dag_ids:
                deployment.unpause(dag_id)
            warmup = deployment.wait_for_runs([deployment.trigger(dag_ids[0])], 90, what="the warm-up run")
            if warmup[0].state != "success":
                raise RuntimeError(f"the warm-up run ended {warmup[0].state}: {warmup[0].task_states}")
            for mode in worker_slots.MODES:
                before = len(sandbox.stats()["submissions"])
                log(f"  celery {mode}: {jobs} tasks of {job_seconds:g} s")
                measured[mode] = figures = worker_slots.run_mode(deployment, mode, jobs, budget)
                figures["submissions"] = len(sandbox.stats()["submissions"]) - before
                log(f"    {figures}")
                if figures["state"] != "success":
                    raise RuntimeError(f"the celery {mode} run ended {figures['state']}: {figures}")
    finally:
        sandbox.stop()
    return measured


def run(jobs: int, job_seconds: float, slots: int, log: Any = print) -> BenchResult:
    baseline = worker_slots.run(jobs, job_seconds, slots, log)  # LocalExecutor, SQLite, same run
    local = {row.metric.split(" wall time")[0]: row for row in baseline.rows if " wall time (" in row.metric}
    celery = run_celery(jobs, job_seconds, slots, log)
    result = BenchResult("celery_worker_slots")
    label = f"{jobs} x {job_seconds:g} s jobs, {slots} slots"
    for mode in worker_slots.MODES:
        wall = celery[mode]["wall"]
        local_wall = float(local[mode].value.removesuffix(" s"))
        result.rows += [
            Row("celery_worker_slots", f"celery {mode} wall time ({label})", f"{wall:.1f} s",
                f"{job_seconds:g} s (one job)", wall / job_seconds,
                f"<= {worker_slots.TARGET:g}x one job" if mode == "deferrable" else f"~{jobs / slots:g}x expected",
                wall / job_seconds <= worker_slots.TARGET if mode == "deferrable" else None),
            Row("celery_worker_slots", f"celery / local {mode} wall time", f"{wall:.1f} s",
                f"{local_wall:.1f} s", wall / local_wall),
        ]
    result.rows.append(
        Row("celery_worker_slots", "celery deferrable / sync wall time", f"{celery['deferrable']['wall']:.1f} s",
            f"{celery['sync']['wall']:.1f} s", celery["deferrable"]["wall"] / celery["sync"]["wall"])
    )
    result.notes += [
        *baseline.notes,
        f"celery: PostgreSQL, Redis, CeleryExecutor with 2 workers of {max(1, slots // 2)} slot(s) each, two "
        f"triggerers; submissions: {celery['deferrable']['submissions']} deferrable, "
        f"{celery['sync']['submissions']} sync (one per task expected: {jobs}); deferrable: up to "
        f"{celery['deferrable']['max_deferred']} tasks deferred at once while at most "
        f"{celery['deferrable']['max_running']} ran.",
    ]
    result.rows = [*baseline.rows, *result.rows]
    return result


if __name__ == "__main__":
    size = "QUICK" if "--quick" in sys.argv else "SMOKE" if "--smoke" in sys.argv else "FULL"
    from bench.common import table_lines

    bench = run(**globals()[size])
    print("\n".join(table_lines([bench])))
    for note in bench.notes:
        print(f"* {note}")
