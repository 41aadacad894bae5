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
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_hitpaw.sandbox
from airflow_provider_hitpaw.sensors.hitpaw import TRIGGER_CLASSPATH
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.deployment import Deployment, RunWatch, process_tree
from tests.support.task_processes import task_runners
from tests.system.batch_checks import check_batch
from tests.system.celery_stack import (
    BATCH_DAG,
    FLEET,
    HAS_BATCH_OPERATOR,
    STACK_DEADLINE,
    CeleryStack,
    assert_one_charge_per_photo,
    assert_results_in_folder,
    celery_stack,  # noqa: F401 - the module's fixture
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(STACK_DEADLINE + 60)]

ENHANCE, BATCH, SENSE = "example_hitpaw_enhance_photo", "example_hitpaw_batch", "example_hitpaw_submit_then_sense"
LOCAL = "example_hitpaw_enhance_local_photo"
RUN_TIMEOUT = 180
SAMPLE = Path(airflow_provider_hitpaw.sandbox.__file__).parent / "samples" / "portrait.jpg"


@pytest.fixture(autouse=True)
def whole_deployment(celery_stack: CeleryStack) -> Iterator[None]:  # noqa: F811
    """Each scenario starts with every component running: what one killed is started again after it,
    also when it failed."""
    down = [c.name for c in celery_stack.deployment.components.values() if c.process.poll() is not None]
    assert not down, f"components found down before the scenario: {down}"
    yield
    celery_stack.deployment.restore_components()


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


#: Scenario 2: deferred tasks whose triggers must move, and how long their jobs run. The jobs must
#: outlast submitting and deferring all of them (two workers) plus the take-over.
TAKEOVER_PHOTOS = 20
JOB_SECONDS_TAKEOVER = 75
#: What the triggerer logs in a trigger's log when the trigger's event fires.
TRIGGER_FIRED_LOG = "Trigger fired event"


def test_2_killed_triggerer_the_other_takes_over_20_deferred_tasks(celery_stack: CeleryStack) -> None:  # noqa: F811
    stack, deployment = celery_stack, celery_stack.deployment
    started = time.monotonic()
    stack.sandbox.configure(job_seconds=JOB_SECONDS_TAKEOVER)
    mark = stack.mark()
    out = stack.folder("2-takeover")
    photos = [stack.photo("2-takeover", n) for n in range(TAKEOVER_PHOTOS)]
    run = deployment.trigger(FLEET, {"img_urls": photos, "output_dir": str(out)})
    deployment.wait_for_runs([run], JOB_SECONDS_TAKEOVER - 15, until=all_deferred(TAKEOVER_PHOTOS),
                             what=f"all {TAKEOVER_PHOTOS} tasks to be deferred in a triggerer")
    all_deferred_after = time.monotonic() - started

    # The triggerer running the most of the triggers dies; the other one must take them over.
    on_job = {index: int(ti["trigger"]["triggerer_id"]) for index, ti in mapped(run).items()}
    victim_job, moved = Counter(on_job.values()).most_common(1)[0]
    victims_tasks = sorted(index for index, job in on_job.items() if job == victim_job)
    victim = deployment.component_of_triggerer_job(victim_job)
    jobs = {c.name: c.job_id for c in deployment.components.values() if c.job_id is not None}
    assert victim is not None, f"no triggerer process has job {victim_job}: {jobs}"
    survivor = next(name for name in deployment.triggerer_names if name != victim)
    survivor_job = deployment.components[survivor].job_id
    assert survivor_job is not None
    deployment.expect_down(victim)
    deployment.stop_component(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    # Still deferred (no job is done yet), every trigger now run by the survivor.
    deployment.wait_for_runs([run], 60, until=all_deferred(TAKEOVER_PHOTOS, on={survivor_job}),
                             what=f"{survivor} (job {survivor_job}) to take over the triggers of {victim}")
    takeover_seconds = time.monotonic() - killed_at

    deployment.wait_for_runs([run], RUN_TIMEOUT)
    assert_succeeded(deployment, run)
    tis = mapped(run)
    assert {i: (ti["state"], ti["try_number"]) for i, ti in tis.items()} == {
        i: ("success", 1) for i in range(TAKEOVER_PHOTOS)
    }
    charges = stack.charges_since(mark)
    assert_one_charge_per_photo(charges, photos)
    assert_results_in_folder(out, [c["job_id"] for c in charges])
    # The killed triggerer fired no event before it died (all 20 were still deferred on the survivor
    # above); its trigger logs, where it had begun one, say the same. (A trigger assigned to it but not
    # begun has no log there; the survivor's logs may miss a last line, closed as the event fires.)
    for index in victims_tasks:
        victim_log = deployment.trigger_logs(run, f"enhance_photo[{index}]").get(victim_job, "")
        assert TRIGGER_FIRED_LOG not in victim_log, f"enhance_photo[{index}] fired in the killed triggerer"

    stack.figures["2_takeover"] = {
        "triggers_moved": moved, "all_deferred_after_seconds": round(all_deferred_after, 1),
        "takeover_seconds": round(takeover_seconds, 1), "scenario_seconds": round(time.monotonic() - started, 1),
    }


#: Scenario 3: tasks held between their submission and their deferral, and their jobs' duration.
HELD_PHOTOS = 4
JOB_SECONDS_WORKER_KILL = 5


def test_3_killed_worker_holding_submitted_tasks_the_retry_reconnects(celery_stack: CeleryStack) -> None:  # noqa: F811
    stack, deployment = celery_stack, celery_stack.deployment
    started = time.monotonic()
    stack.sandbox.configure(job_seconds=JOB_SECONDS_WORKER_KILL)
    mark = stack.mark()
    hold, out = stack.folder("3-hold"), stack.folder("3-worker-kill")
    photos = [stack.photo("3-worker-kill", n) for n in range(HELD_PHOTOS)]
    run = deployment.trigger(FLEET, {"img_urls": photos, "output_dir": str(out), "hold_dir": str(hold)})
    deployment.wait_until(lambda: len(list(hold.glob("held-*"))) == HELD_PHOTOS, 120,
                          f"all {HELD_PHOTOS} tasks to submit and hold before deferring")
    held_pids = {int(p.name.split("-")[1]): int(p.read_text()) for p in hold.glob("held-*")}
    holder = {}
    for name in deployment.worker_names:
        tree = set(process_tree(deployment.components[name].process.pid))
        holder.update({index: name for index, pid in held_pids.items() if pid in tree})
    assert set(holder) == set(held_pids), (held_pids, holder)
    victim = Counter(holder.values()).most_common(1)[0][0]
    killed = sorted(index for index, name in holder.items() if name == victim)
    # Every held task has submitted and had its reply: HitPaw charged it, the job exists.
    submitted = stack.charges_since(mark)
    assert Counter(c["img_url"] for c in submitted) == Counter(photos), submitted
    assert all(c["reply_delivered"] for c in submitted), submitted

    deployment.expect_down(victim)
    deployment.stop_component(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    (hold / "release").write_text("", encoding="ascii")  # the others defer now
    deployment.wait_for_runs([run], RUN_TIMEOUT)
    recovered_seconds = time.monotonic() - killed_at
    assert_succeeded(deployment, run)
    tis = mapped(run)
    assert {i: ti["try_number"] for i, ti in tis.items()} == {
        i: 2 if i in killed else 1 for i in range(HELD_PHOTOS)
    }, f"killed on {victim}: {killed}"

    charges = stack.charges_since(mark)
    last_job = {c["img_url"]: c["job_id"] for c in charges}  # in order: the latest job of each photo
    if AIRFLOW_V_3_3_PLUS:
        # The retry found the job in the task state store and reconnected: nothing paid twice.
        assert_one_charge_per_photo(charges, photos)
        for index in killed:
            log = deployment.task_log(run, f"enhance_photo[{index}]", try_number=2)
            assert f"Reconnecting to HitPaw job {last_job[photos[index]]}" in log, log[-3000:]
    else:
        # Airflow 3.1/3.2 have no task state store: every try submits (docs/operators.md), so a photo
        # whose worker died was paid once per try, and only the killed ones were.
        per_photo = Counter(c["img_url"] for c in charges)
        assert per_photo == Counter({photos[i]: tis[i]["try_number"] for i in range(HELD_PHOTOS)}), per_photo
    # One result per photo, the job of its last try.
    assert_results_in_folder(out, [last_job[photo] for photo in photos])

    stack.figures["3_worker_kill"] = {
        "tasks_killed": len(killed), "kill_to_run_success_seconds": round(recovered_seconds, 1),
        "charges": len(charges), "photos": HELD_PHOTOS, "scenario_seconds": round(time.monotonic() - started, 1),
    }


#: Scenario 4: tasks deferred while PostgreSQL restarts, and how long it stays down.
RESTART_PHOTOS = 8
JOB_SECONDS_POSTGRES = 60
POSTGRES_DOWN_SECONDS = 3.0


def test_4_postgres_restarted_while_tasks_are_deferred_the_run_completes(celery_stack: CeleryStack) -> None:  # noqa: F811
    stack, deployment = celery_stack, celery_stack.deployment
    started = time.monotonic()
    stack.sandbox.configure(job_seconds=JOB_SECONDS_POSTGRES)
    mark = stack.mark()
    out = stack.folder("4-postgres")
    photos = [stack.photo("4-postgres", n) for n in range(RESTART_PHOTOS)]
    run = deployment.trigger(FLEET, {"img_urls": photos, "output_dir": str(out)})
    deployment.wait_for_runs([run], JOB_SECONDS_POSTGRES - 15, until=all_deferred(RESTART_PHOTOS),
                             what=f"all {RESTART_PHOTOS} tasks to be deferred in a triggerer")
    # Airflow's scheduler, triggerers and DAG processor exit when the database goes away, and count on
    # being started again: here as under systemd or Kubernetes.
    with deployment.restarting_exited() as restarts:
        restart_began = time.monotonic()
        stack.postgres.restart(down_seconds=POSTGRES_DOWN_SECONDS)
        restart_seconds = time.monotonic() - restart_began
        deployment.wait_for_runs([run], RUN_TIMEOUT)
        completed_after = time.monotonic() - restart_began
        deployment.wait_healthy()
    assert_succeeded(deployment, run)
    tis = mapped(run)
    assert {i: (ti["state"], ti["try_number"]) for i, ti in tis.items()} == {
        i: ("success", 1) for i in range(RESTART_PHOTOS)
    }
    charges = stack.charges_since(mark)
    assert_one_charge_per_photo(charges, photos)
    assert_results_in_folder(out, [c["job_id"] for c in charges])
    stack.figures["4_postgres_restart"] = {
        "down_seconds": round(restart_seconds, 1), "restart_to_run_success_seconds": round(completed_after, 1),
        "components_restarted": restarts, "scenario_seconds": round(time.monotonic() - started, 1),
    }


#: Scenario 5: a batch of several hundred photos in one task, its worker killed while it submits, the
#: triggerer running its trigger killed while it waits, PostgreSQL restarted while it waits.
BATCH_PHOTOS = 300
JOB_SECONDS_BATCH = 4
#: The batch's first try is killed once this many of its photos are submitted (it submits 20 a second).
SUBMITTED_BEFORE_WORKER_KILL = 30


def batch_task(deployment: Deployment, run: RunWatch) -> dict[str, Any]:
    deployment.observe([run])
    return next(ti for ti in run.task_instances if ti["task_id"] == "enhance_batch")


def worker_running_a_task(deployment: Deployment) -> str | None:
    """The Celery worker whose processes include a task runner (``airflow worker -- <ti id>``)."""
    for name in deployment.worker_names:
        if task_runners(deployment.components[name].process.pid):
            return name
    return None


@pytest.mark.skipif(not HAS_BATCH_OPERATOR, reason="needs EnhancePhotoBatchOperator (operators/batch.py)")
def test_5_a_batch_of_300_photos_survives_the_same_kills(celery_stack: CeleryStack) -> None:  # noqa: F811
    stack, deployment = celery_stack, celery_stack.deployment
    started = time.monotonic()
    stack.sandbox.configure(job_seconds=JOB_SECONDS_BATCH)
    mark = stack.mark()
    out = stack.scratch / "5-batch"
    photos = [stack.photo("5-batch", n) for n in range(BATCH_PHOTOS)]
    run = deployment.trigger(BATCH_DAG, {"img_urls": photos, "output_dir": str(out)})
    events: list[str] = []

    def note(event: str) -> None:
        events.append(f"{event} at {time.monotonic() - started:.0f} s")

    # 1. The Celery worker running the first try, while it submits.
    deployment.wait_until(lambda: len(stack.charges_since(mark)) >= SUBMITTED_BEFORE_WORKER_KILL, 120,
                          f"{SUBMITTED_BEFORE_WORKER_KILL} submissions of the batch", 0.05)
    worker = worker_running_a_task(deployment)
    assert worker is not None, "no Celery worker runs the batch while it submits"
    deployment.expect_down(worker)
    deployment.stop_component(worker, signal.SIGKILL)
    note(f"killed {worker} after {len(stack.charges_since(mark))} submissions")

    # 2. The triggerer running the batch's trigger, once a later try waits in it.
    def deferred_in_a_triggerer(on: set[int] | None = None) -> int | None:
        """The job id of the triggerer (of ``on``) running the batch's trigger while it waits, or None."""
        ti = batch_task(deployment, run)
        triggerer = (ti.get("trigger") or {}).get("triggerer_id")
        if ti["state"] != "deferred" or triggerer is None or (on is not None and int(triggerer) not in on):
            return None
        return int(triggerer)

    triggerer_job = deployment.wait_until(deferred_in_a_triggerer, 120, "the retry to wait in a triggerer", 0.2)
    assert triggerer_job is not None
    triggerer = deployment.component_of_triggerer_job(triggerer_job)
    assert triggerer is not None, triggerer_job
    deployment.expect_down(triggerer)
    deployment.stop_component(triggerer, signal.SIGKILL)
    note(f"killed {triggerer} while try {batch_task(deployment, run)['try_number']} waited in it")
    survivor = next(name for name in deployment.triggerer_names if name != triggerer)
    survivor_job = deployment.components[survivor].job_id
    assert survivor_job is not None

    # 3. PostgreSQL, while the batch waits in the other triggerer (once it has the trigger: taken over,
    # or the trigger of a later deferral).
    with deployment.restarting_exited() as restarts:
        deployment.wait_until(lambda: deferred_in_a_triggerer({survivor_job}), 120,
                              f"the batch to wait in {survivor}", 0.2)
        stack.postgres.restart(down_seconds=POSTGRES_DOWN_SECONDS)
        note("restarted PostgreSQL")
        deployment.wait_for_runs([run], RUN_TIMEOUT * 2, what="the batch run to finish")
        deployment.wait_healthy()
    note("run finished")
    assert_succeeded(deployment, run)
    tries = batch_task(deployment, run)["try_number"]
    assert tries >= 2, f"the worker kill did not cost the first try: {events}"
    summary = xcom(deployment, run, "enhance_batch")
    counts = check_batch(out, summary, photos, stack.charges_since(mark))

    stack.figures["5_batch"] = {
        **counts, "tries": tries, "events": events, "components_restarted_by_the_database_restart": restarts,
        "scenario_seconds": round(time.monotonic() - started, 1),
    }
