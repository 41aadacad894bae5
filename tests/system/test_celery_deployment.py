"""One charge per photo and no result lost on a production-shaped deployment, while parts of it die.

The deployment (``celery_stack.py``): PostgreSQL, Redis, the HitPaw sandbox, and Airflow with
CeleryExecutor (scheduler, DAG processor, API server, two triggerers, two Celery workers), each a
process of its own on loopback. Shared by the scenarios, run in this order:

1. the example DAGs: every enhancement task passes through DEFERRED on the HitPaw trigger;
2. SIGKILL the triggerer that runs the triggers of 20 deferred tasks: the other one takes them over,
   and all 20 succeed in their first try;
3. SIGKILL the Celery worker that holds tasks which have submitted and are about to defer: their
   retries run on the other worker and reconnect to the jobs (Airflow 3.3+: one charge per photo); on
   Airflow 3.1 and 3.2, which have no task state store, a retry submits again, as docs/operators.md
   says: each photo is charged once per try that submitted;
4. restart PostgreSQL (every connection cut, the server down for a few seconds) while tasks are
   deferred: the run completes;
5. a batch of several hundred photos under the same kills (needs ``EnhancePhotoBatchOperator``).

Each scenario checks the sandbox's ledger (one charge per photo, failed jobs aside) and that every
result is in its output folder. The figures (take-over times, durations) are printed at the end.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_hitpaw.sandbox
from airflow_provider_hitpaw.sensors.hitpaw import TRIGGER_CLASSPATH
from tests.support.deployment import Deployment, RunWatch
from tests.system.celery_stack import (
    FLEET,
    STACK_DEADLINE,
    CeleryStack,
    assert_one_charge_per_photo,
    assert_results_in_folder,
    celery_stack,  # noqa: F401 - the module's fixture
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(STACK_DEADLINE + 60)]

ENHANCE, BATCH, SENSE = "example_hitpaw_enhance_photo", "example_hitpaw_batch", "example_hitpaw_submit_then_sense"
LOCAL = "example_hitpaw_enhance_local_photo"
EXAMPLE_DAG_IDS = (ENHANCE, BATCH, SENSE, LOCAL)
RUN_TIMEOUT = 180
SAMPLE = Path(airflow_provider_hitpaw.sandbox.__file__).parent / "samples" / "portrait.jpg"


def mapped(run: RunWatch, task_id: str = "enhance_photo") -> dict[int, dict[str, Any]]:
    """The run's mapped task instances (of the last observation), by map index."""
    return {
        ti["map_index"]: ti for ti in run.task_instances
        if ti["task_id"] == task_id and ti.get("map_index", -1) >= 0
    }


def xcom(deployment: Deployment, run: RunWatch, task_id: str, key: str = "return_value") -> Any:
    path = f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    return deployment.api("GET", path)["value"]


def describe(runs: list[RunWatch]) -> str:
    return "\n".join(f"  {r.dag_id} {r.run_id}: {r.state}; tasks {r.task_states}" for r in runs)


def assert_succeeded(deployment: Deployment, run: RunWatch) -> None:
    if run.state != "success":
        raise AssertionError(f"run did not succeed:\n{describe([run])}\n{deployment.logs_report()}")


def all_deferred(count: int, on: set[int] | None = None):  # type: ignore[no-untyped-def]
    """A wait condition: ``count`` mapped tasks deferred, their triggers run by a triggerer (of ``on``)."""

    def check(runs: list[RunWatch]) -> bool:
        tis = mapped(runs[0])
        if len(tis) != count:
            return False
        for ti in tis.values():
            triggerer = (ti.get("trigger") or {}).get("triggerer_id")
            if ti["state"] != "deferred" or triggerer is None or (on is not None and int(triggerer) not in on):
                return False
        return True

    return check


def test_1_example_dags_defer_and_charge_once_per_photo(celery_stack: CeleryStack) -> None:  # noqa: F811
    stack, deployment = celery_stack, celery_stack.deployment
    started = time.monotonic()
    deployment.wait_for_dags([*EXAMPLE_DAG_IDS, FLEET])
    for dag_id in (*EXAMPLE_DAG_IDS, FLEET):
        deployment.unpause(dag_id)
    stack.sandbox.configure(job_seconds=6)
    mark = stack.mark()
    enhance_out, sense_out, local_out = stack.folder("1-enhance"), stack.folder("1-sense"), stack.folder("1-local")
    local_photo = stack.folder("1-local-source") / "portrait.jpg"
    shutil.copy(SAMPLE, local_photo)
    enhance_url, sense_url = stack.photo("1-enhance", 0), stack.photo("1-sense", 0)
    batch_urls = [stack.photo("1-batch", n) for n in range(3)]

    runs = [
        deployment.trigger(ENHANCE, {"img_url": enhance_url, "output_dir": str(enhance_out)}),
        deployment.trigger(BATCH, {"img_urls": batch_urls}),
        deployment.trigger(SENSE, {"img_url": sense_url, "output_dir": str(sense_out)}),
        deployment.trigger(LOCAL, {"photo_path": str(local_photo), "output_dir": str(local_out)}),
    ]
    deployment.wait_for_runs(runs, RUN_TIMEOUT)
    for run in runs:
        assert_succeeded(deployment, run)
    enhance_run, batch_run, sense_run, local_run = runs
    waits = [(enhance_run, "enhance_photo"), (sense_run, "wait_for_result"), (local_run, "enhance_local_photo")]
    waits += [(batch_run, f"enhance_photo[{n}]") for n in range(3)]
    for run, key in waits:
        assert run.saw(key, "deferred"), f"{run.dag_id}.{key} never seen deferred: {run.task_states.get(key)}"
        assert run.trigger_classpaths.get(key) == {TRIGGER_CLASSPATH}, (run.dag_id, key, run.trigger_classpaths)

    charges = stack.charges_since(mark)
    uploaded = [c["img_url"] for c in charges if "/files/" in c["img_url"]]
    assert len(uploaded) == 1, [c["img_url"] for c in charges]  # the local photo, through its upload
    assert_one_charge_per_photo(charges, [enhance_url, sense_url, *batch_urls, *uploaded])
    job_of = {c["img_url"]: c["job_id"] for c in charges}
    assert_results_in_folder(enhance_out, [job_of[enhance_url]])
    # keep_result names its copy after the result URL's file; the sensor's status gives job and URL.
    status = xcom(deployment, sense_run, "wait_for_result")
    kept = Path(xcom(deployment, sense_run, "keep_result"))
    assert status["job_id"] == job_of[sense_url], status
    assert kept.parent == sense_out and kept.name == status["res_url"].rsplit("/", 1)[1], (kept, status)
    assert sorted(sense_out.iterdir()) == [kept] and kept.stat().st_size > 0
    assert_results_in_folder(local_out, [job_of[uploaded[0]]])
    # The batch example keeps its results at HitPaw: its report lists each job's result once.
    report = xcom(deployment, batch_run, "report")
    assert report["photos"] == 3 and report["coins"] == sum(job["coins"] for job in charges if job["img_url"] in batch_urls)
    assert len(set(report["res_urls"])) == 3, report
    stack.figures["1_example_dags_seconds"] = round(time.monotonic() - started, 1)
