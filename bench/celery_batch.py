"""Benchmark 7 on the production-shaped deployment: the batch benchmark's deployment part
(``bench/bench_batch.py``: wall time against ``N / R + job``, task starts, photos per second against
mapped ``EnhancePhotoOperator`` tasks) on CeleryExecutor, PostgreSQL and Redis, against its
LocalExecutor/SQLite figures measured in the same run.

Both deployments run the same generated DAGs against a sandbox (its own process, a fresh one for each)
with the same jobs and the same submission rate limit, with the same number of worker slots in total:
the LocalExecutor deployment has ``slots`` of them, the Celery one two workers of ``slots / 2``
(``tests/system/celery_stack.py``: two triggerers, scheduler, DAG processor and API server as
processes). Figures: each deployment's rows as benchmark 7 gives them, then Celery / Local for the
wall time against the bound, the task starts and the photos per second. The triggerer CPU is that of
both triggerers on Celery. Needs what ``make test-system`` needs (PostgreSQL's server binaries,
``redis-server``, the ``system`` extra).

``python -m bench.celery_batch [--quick | --smoke]``
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from bench import bench_batch
from bench.common import BenchResult, Row

# A steady stream needs rate x job jobs in flight (50 here); max_in_flight is 2.5 times that, as in
# benchmark 7, so that the batch's refill is not the bottleneck.
FULL: dict[str, Any] = {"photos": 200, "job_seconds": 10.0, "rate": 5.0, "max_in_flight": 125, "slots": 2,
                        "poll_interval": 2.0}
QUICK: dict[str, Any] = {"photos": 40, "job_seconds": 4.0, "rate": 5.0, "max_in_flight": 50, "slots": 2,
                         "poll_interval": 1.0}
SMOKE: dict[str, Any] = {"photos": 6, "job_seconds": 1.0, "rate": 10.0, "max_in_flight": 4, "slots": 2,
                         "poll_interval": 1.0}
#: Celery's start-up (PostgreSQL, Redis, two workers, two triggerers) on top of the deployment's budget.
CELERY_START_SECONDS = 240.0


def celery_opener(slots: int) -> bench_batch.OpenDeployment:
    """Opens the Celery deployment of the system tests with ``slots`` worker slots in total."""
    from tests.system.celery_stack import celery_deployment, missing_requirements

    missing = missing_requirements()
    if missing:
        raise RuntimeError(f"the Celery deployment cannot start: {missing}")

    @contextlib.contextmanager
    def open_deployment(env: dict[str, str], dag_sources: dict[str, str], budget: float) -> Iterator[Any]:
        full_env = {**env, "AIRFLOW__CORE__PARALLELISM": str(slots)}
        with celery_deployment(
            full_env, worker_slots=max(1, slots // 2), deadline_seconds=budget + CELERY_START_SECONDS,
            dag_files=[], dag_sources=dag_sources,
        ) as (_postgres, _redis, deployment):
            yield deployment

    return open_deployment


def rate_of(figures: dict[str, Any], kind: str) -> float:
    if kind == "batch":
        return float(figures["batch"]["distinct"]) / figures["batch"]["wall"]
    return float(figures["mapped"]["succeeded"]) / figures["mapped"]["elapsed"]


def run(photos: int, job_seconds: float, rate: float, max_in_flight: int, slots: int, poll_interval: float,
        log: Any = print) -> BenchResult:
    cfg = {"photos": photos, "job_seconds": job_seconds, "rate": rate, "max_in_flight": max_in_flight,
           "slots": slots, "poll_interval": poll_interval}
    opener = celery_opener(slots)  # fails before the baseline's minutes if the Celery stack cannot start
    local = bench_batch.measure_deployment(cfg, log, what="a LocalExecutor/SQLite deployment")
    celery = bench_batch.measure_deployment(
        cfg, log, opener, what="a CeleryExecutor deployment with 2 workers")

    baseline = BenchResult("celery_batch")
    bench_batch.deployment_rows(baseline, local, cfg)
    measured = BenchResult("celery_batch")
    bench_batch.deployment_rows(measured, celery, cfg, setup=(
        f"PostgreSQL, Redis, CeleryExecutor with 2 workers of {max(1, slots // 2)} slot(s) each, two triggerers "
        "(the triggerer CPU and RSS below are both triggerers'), scheduler, DAG processor, API server"))
    result = BenchResult("celery_batch")
    result.rows += [Row("celery_batch", f"local {row.metric}", row.value, row.baseline, row.ratio, row.target, row.met)
                    for row in baseline.rows]
    result.rows += [Row("celery_batch", f"celery {row.metric}", row.value, row.baseline, row.ratio, row.target, row.met)
                    for row in measured.rows]
    local_ratio = local["batch"]["wall"] / local["bound"]
    celery_ratio = celery["batch"]["wall"] / celery["bound"]
    result.rows += [
        Row("celery_batch", "celery / local batch wall time (each vs its bound)",
            f"{celery['batch']['wall']:.1f} s ({celery_ratio:.2f}x)", f"{local['batch']['wall']:.1f} s ({local_ratio:.2f}x)",
            celery["batch"]["wall"] / local["batch"]["wall"]),
        Row("celery_batch", "celery / local batch task starts", f"{celery['batch']['starts']}",
            f"{local['batch']['starts']}",
            celery["batch"]["starts"] / local["batch"]["starts"] if local["batch"]["starts"] else None),
        Row("celery_batch", "celery / local photos per second, batch", f"{rate_of(celery, 'batch'):.2f}/s",
            f"{rate_of(local, 'batch'):.2f}/s", rate_of(celery, "batch") / rate_of(local, "batch")),
        Row("celery_batch", "celery / local photos per second, mapped tasks", f"{rate_of(celery, 'mapped'):.2f}/s",
            f"{rate_of(local, 'mapped'):.2f}/s",
            rate_of(celery, "mapped") / rate_of(local, "mapped") if rate_of(local, "mapped") else None),
    ]
    result.notes += [f"local: {note}" for note in baseline.notes]
    result.notes += [f"celery: {note}" for note in measured.notes]
    return result


if __name__ == "__main__":
    size = "QUICK" if "--quick" in sys.argv else "SMOKE" if "--smoke" in sys.argv else "FULL"
    from bench.common import table_lines

    bench = run(**globals()[size])
    print("\n".join(table_lines([bench])))
    for note in bench.notes:
        print(f"* {note}")
