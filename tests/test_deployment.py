"""The example DAGs in a real Airflow 3 deployment: scheduler, triggerer, DAG processor, API server.

One deployment (``tests/deployment.py``: a temporary Airflow home, SQLite, LocalExecutor, each
component a process of its own) and one HitPaw sandbox (a process of its own) serve both cases:

1. the three example DAGs, triggered through the REST API, succeed; every enhancement task waited in
   the triggerer (seen DEFERRED, on the HitPaw trigger) and the sandbox got one submission per task;
2. the triggerer is killed (SIGKILL, process group) while tasks are deferred and started again: every
   task still succeeds in its first try, with one submission each;
3. (Airflow 3.3+) a ``TaskStatusSensor`` with ``start_from_trigger=True`` (``tests/dags/
   deployment_start_from_trigger.py``) starts in the triggerer, which renders its templated ``job_id``:
   it is deferred without ever having been started by a worker, then resumes in one and succeeds.

The module has a hard deadline (``DEADLINE_SECONDS``, startup included); a failure shows the tails of
the component logs. ``pytest -m deployment`` runs only this. Set ``HITPAW_KEEP_DEPLOYMENT=1`` to keep
the Airflow home (and its logs) for a look afterwards.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hitpaw.sensors.hitpaw import TRIGGER_CLASSPATH
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.deployment import EXAMPLE_DAGS, Deployment, RunWatch

#: Whole module, deployment startup included; each wait below is also bounded by it.
DEADLINE_SECONDS = 360

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(DEADLINE_SECONDS + 30)]

API_KEY = "deployment-key"
COINS = 100_000
#: Long enough that every enhancement task is seen deferred (the REST API is polled twice a second).
JOB_SECONDS_EXAMPLES = 8
#: Long enough that the tasks are still deferred when the triggerer dies, and are while it is away.
JOB_SECONDS_RESTART = 14
#: Long enough that the sensor started from the triggerer is seen deferred; short, as it waits alone.
JOB_SECONDS_START_FROM_TRIGGER = 4
RUN_TIMEOUT = 150

ENHANCE, BATCH, SENSE = "example_hitpaw_enhance_photo", "example_hitpaw_batch", "example_hitpaw_submit_then_sense"
EXAMPLE_DAG_IDS = (ENHANCE, BATCH, SENSE)
#: Test DAG of case 3; deployed on Airflow 3.3+ only (before, the sensor warns and starts in a worker).
START_FROM_TRIGGER = "hitpaw_deployment_start_from_trigger"
START_FROM_TRIGGER_FILE = Path(__file__).parent / "dags" / "deployment_start_from_trigger.py"
DAG_FILES = sorted(EXAMPLE_DAGS.glob("*.py")) + ([START_FROM_TRIGGER_FILE] if AIRFLOW_V_3_3_PLUS else [])
DAG_IDS = EXAMPLE_DAG_IDS + ((START_FROM_TRIGGER,) if AIRFLOW_V_3_3_PLUS else ())
#: What the task runner logs in the worker when a task defers itself (``_defer_task``).
WORKER_DEFERRAL_LOG = "Pausing task as DEFERRED"


@dataclass
class Live:
    deployment: Deployment
    sandbox: Any

    def sample(self, tag: str) -> str:
        """A distinct URL of the sandbox's sample photo, so submissions can be counted per task."""
        return self.sandbox.url(f"/samples/portrait.jpg?{tag}")


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    sandbox = start_sandbox_process(api_keys={API_KEY: COINS}, job_seconds=JOB_SECONDS_EXAMPLES)
    try:
        env = {
            "AIRFLOW_CONN_HITPAW_DEFAULT": json.dumps(
                {"conn_type": "hitpaw", "host": sandbox.base_url, "password": API_KEY}
            ),
            # The batch example leaves ``deferrable`` to this setting.
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        }
        with Deployment(dag_files=DAG_FILES, env=env, parallelism=4, deadline_seconds=DEADLINE_SECONDS) as deployment:
            deployment.wait_for_dags(DAG_IDS)
            for dag_id in DAG_IDS:
                deployment.unpause(dag_id)
            yield Live(deployment, sandbox)
    finally:
        sandbox.stop()


def new_submissions(sandbox: Any, before: int) -> list[dict[str, Any]]:
    return sandbox.stats()["submissions"][before:]


def submission_count(sandbox: Any) -> int:
    return len(sandbox.stats()["submissions"])


def describe(runs: list[RunWatch]) -> str:
    return "\n".join(f"  {r.dag_id} {r.run_id}: {r.state}; tasks {r.task_states}" for r in runs)


def assert_all_succeeded(deployment: Deployment, runs: list[RunWatch], but: tuple[str, ...] = ()) -> None:
    """Every run and task instance (``but`` those tasks) succeeded, in its first try."""
    failed = [r for r in runs if r.state != "success"]
    if failed:
        raise AssertionError(f"runs did not succeed:\n{describe(runs)}\n{deployment.logs_report()}")
    for run in runs:
        for ti in run.task_instances:
            if ti["task_id"] in but:
                continue
            if ti.get("map_index", -1) < 0 and ti["task_id"] in {k.split("[")[0] for k in run.task_states if "[" in k}:
                continue  # the unexpanded placeholder of a mapped task
            assert ti["state"] == "success", f"{run.dag_id}.{ti['task_id']}[{ti.get('map_index')}]: {ti['state']}"
            assert ti["try_number"] == 1, f"{run.dag_id}.{ti['task_id']} needed try {ti['try_number']}"


def assert_deferred_on_hitpaw_trigger(run: RunWatch, task_keys: list[str]) -> None:
    for key in task_keys:
        assert run.saw(key, "deferred"), f"{run.dag_id}.{key} never seen deferred: {run.task_states[key]}"
        assert run.trigger_classpaths.get(key) == {TRIGGER_CLASSPATH}, (
            f"{run.dag_id}.{key} deferred on {run.trigger_classpaths.get(key)}"
        )


def test_example_dags_succeed_waiting_in_the_triggerer_with_one_submission_per_task(live: Live, tmp_path: Path):
    deployment, sandbox = live.deployment, live.sandbox
    sandbox.configure(job_seconds=JOB_SECONDS_EXAMPLES)
    before = submission_count(sandbox)
    enhance_url, sense_url = live.sample("case=enhance"), live.sample("case=sense")
    enhance_out, sense_out = tmp_path / "enhance", tmp_path / "sense"

    runs = [
        deployment.trigger(ENHANCE, {"img_url": enhance_url, "output_dir": str(enhance_out)}),
        deployment.trigger(BATCH),  # its default: three copies of the sample named by the connection
        deployment.trigger(SENSE, {"img_url": sense_url, "output_dir": str(sense_out)}),
    ]
    deployment.wait_for_runs(runs, RUN_TIMEOUT)
    assert_all_succeeded(deployment, runs)

    enhance_run, batch_run, sense_run = runs
    batch_keys = sorted(k for k in batch_run.keys_of("enhance_photo") if "[" in k)  # not the placeholder
    assert batch_keys == ["enhance_photo[0]", "enhance_photo[1]", "enhance_photo[2]"], batch_run.task_states
    assert_deferred_on_hitpaw_trigger(enhance_run, ["enhance_photo"])
    assert_deferred_on_hitpaw_trigger(batch_run, batch_keys)
    assert_deferred_on_hitpaw_trigger(sense_run, ["wait_for_result"])
    assert not sense_run.saw("submit", "deferred"), "submit (wait_for_completion=False) deferred"

    submitted = [s["img_url"] for s in new_submissions(sandbox, before)]
    copies = [sandbox.url(f"/samples/portrait.jpg?copy={n}") for n in (1, 2, 3)]
    assert sorted(submitted) == sorted([enhance_url, sense_url, *copies]), submitted

    assert len(list(enhance_out.iterdir())) == 1, "enhance_photo did not copy its result"
    assert len(list(sense_out.iterdir())) == 1, "keep_result did not copy its result"


def test_tasks_deferred_across_a_killed_and_restarted_triggerer_succeed_with_one_submission_each(live: Live):
    deployment, sandbox = live.deployment, live.sandbox
    sandbox.configure(job_seconds=JOB_SECONDS_RESTART)
    before = submission_count(sandbox)
    # One mapped run: its tasks submit within seconds of each other, so that none of the jobs can be
    # done by the time the last task has deferred and the triggerer is killed.
    batch_urls = [live.sample(f"case=restart&n={n}") for n in range(5)]
    runs = [deployment.trigger(BATCH, {"img_urls": batch_urls})]
    waiting = [(runs[0], [f"enhance_photo[{n}]" for n in range(5)])]

    def all_deferred_in_the_triggerer(_runs: list[RunWatch]) -> bool:
        """Every enhancement task deferred, and its trigger taken by the running triggerer."""
        current = {(ti["task_id"], ti.get("map_index", -1)): ti for run in runs for ti in run.task_instances}
        for _, keys in waiting:
            for key in keys:
                task_id, _, index = key.partition("[")
                ti = current.get((task_id, int(index.rstrip("]")) if index else -1))
                if ti is None or ti["state"] != "deferred" or (ti.get("trigger") or {}).get("triggerer_id") is None:
                    return False
        return True

    deployment.wait_for_runs(runs, 60, until=all_deferred_in_the_triggerer,
                             what="every enhancement task to be deferred in the triggerer")
    old_triggerers = {i for run, keys in waiting for k in keys for i in run.triggerer_ids.get(k, ())}
    assert old_triggerers, waiting
    deployment.expect_down("triggerer")
    deployment.stop_component("triggerer", signal.SIGKILL)
    time.sleep(1.0)
    deployment.observe(runs)
    not_deferred = [k for run, keys in waiting for k in keys if run.task_states[k][-1] != "deferred"]
    assert not not_deferred, f"{not_deferred} left DEFERRED before the triggerer went away:\n{describe(runs)}"
    deployment.start_component("triggerer")
    deployment.expect_down("triggerer", False)

    deployment.wait_for_runs(runs, RUN_TIMEOUT)
    assert_all_succeeded(deployment, runs)
    for run, keys in waiting:
        assert_deferred_on_hitpaw_trigger(run, keys)

    submitted = [s["img_url"] for s in new_submissions(sandbox, before)]
    assert sorted(submitted) == sorted(batch_urls), submitted
    assert deployment.is_healthy(["triggerer"]), "the restarted triggerer is not healthy"
    for run, keys in waiting:  # the event came from the new triggerer, the trigger rebuilt there
        for key in keys:
            logs = deployment.trigger_logs(run, key)
            fired_by = {job for job, text in logs.items() if "Trigger fired event" in text}
            assert fired_by and not fired_by & old_triggerers, (
                f"{run.dag_id}.{key}: trigger fired by triggerer job(s) {fired_by}, the killed one was "
                f"{old_triggerers}; trigger logs: {sorted(logs)}"
            )


@pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="start_from_trigger with a templated job_id needs Airflow 3.3+ (the triggerer renders it); "
    "before, the sensor ignores it with a warning and starts in a worker",
)
def test_sensor_started_from_the_triggerer_defers_without_a_worker_then_resumes_in_one(live: Live):
    deployment, sandbox = live.deployment, live.sandbox
    sandbox.configure(job_seconds=JOB_SECONDS_START_FROM_TRIGGER)
    before = submission_count(sandbox)
    img_url = live.sample("case=start-from-trigger")
    runs = [deployment.trigger(START_FROM_TRIGGER, {"img_url": img_url})]
    deployment.wait_for_runs(runs, RUN_TIMEOUT)
    # ``check`` too: the sensor's XCom names the submitted job's result. The witness is looked at below.
    assert_all_succeeded(deployment, runs)
    run = runs[0]
    assert_deferred_on_hitpaw_trigger(run, ["wait", "wait_in_worker"])

    # The states polled: DEFERRED with no RUNNING before it, SUCCESS at the end (a worker's RUNNING for
    # execute_complete in between is usually too short to be seen).
    states = run.task_states["wait"]
    assert "running" not in states[: states.index("deferred")] and states[-1] == "success", states
    # While deferred: never queued for, nor started by, a worker (the control was both).
    deferred, control = run.first_deferred["wait"], run.first_deferred["wait_in_worker"]
    assert (deferred["queued_when"], deferred["hostname"] or None, deferred["pid"]) == (None, None, None), deferred
    assert control["queued_when"] and control["hostname"] and control["pid"], control

    # The audit log: a worker writes ``running`` each time it starts a task instance. ``wait`` was
    # started once, to resume; the control twice, to defer and to resume.
    started = {
        task_id: [e["try_number"] for e in deployment.event_logs(run, task_id, "running")]
        for task_id in ("wait", "wait_in_worker")
    }
    assert started == {"wait": [1], "wait_in_worker": [1, 1]}, started
    # The worker's log of the try: no deferral from a worker (the control's shows it), and the trigger's
    # event handed to execute_complete there, whose return value is the XCom ``check`` looked at.
    wait_log, control_log = deployment.task_log(run, "wait"), deployment.task_log(run, "wait_in_worker")
    assert WORKER_DEFERRAL_LOG in control_log, control_log[-3000:]
    assert wait_log and WORKER_DEFERRAL_LOG not in wait_log, wait_log[-3000:]
    status = deployment.api(
        "GET", f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/wait/xcomEntries/return_value"
    )["value"]

    # The triggerer rendered ``job_id``: its trigger waited for the job ``submit`` made, the only one.
    submissions = new_submissions(sandbox, before)
    assert [(s["img_url"], s["model"]) for s in submissions] == [(img_url, "face_2x")], submissions
    assert status["job_id"] == submissions[0]["job_id"] and status["res_url"], status
    fired = [text for text in deployment.trigger_logs(run, "wait").values() if "Trigger fired event" in text]
    assert len(fired) == 1 and submissions[0]["job_id"] in fired[0], deployment.trigger_logs(run, "wait")

    # A plain ``ti.xcom_pull(task_ids=..., key=...)``, which Airflow 3.3's triggerer cannot render (it
    # does not answer the GetXComSequenceSlice request the pull sends), makes the sensor ignore
    # start_from_trigger: it starts in a worker, defers from there, and succeeds instead of hanging.
    plain = run.task_states["wait_plain_xcom_pull"]
    assert plain[-1] == "success", plain
    assert WORKER_DEFERRAL_LOG in deployment.task_log(run, "wait_plain_xcom_pull")
