"""A batch in a real deployment survives killed workers and a killed triggerer without paying twice.

One deployment (``tests/support/deployment.py``: scheduler, triggerer, DAG processor and API server as
processes; LocalExecutor, SQLite) and one sandbox (its own process) run ``tests/dags/batch_crash.py``:
one ``EnhancePhotoBatchOperator`` over ``PHOTOS`` copies of the sample photo, deferrable, with retries.
While it runs the test kills, with SIGKILL:

1. the task runner (the process that submits and writes the ledger) of the first try, while it is
   submitting: after a random number of submissions, while the sandbox holds back the reply of one
   that created and charged a job (``slow`` fault), so that the ledger has its intent and no job id:
   an unknown outcome, which the retry resubmits (``on_unknown_outcome="resubmit"``);
2. the task runner of a later try, a random moment right after a resume (saving results, submitting);
3. the triggerer, while the batch is deferred on its trigger; a new triggerer is started.

Then, from the sandbox's own records and the ledger: the run succeeded; the manifest lists every photo
as enhanced and every result file exists; each photo was charged once, except an item the ledger shows
with an intent and no job id (a kill between the POST and the ledger's write): such an item may be
charged as many times as the ledger has intents for it, and the test says whether there was any. The
random points come from a seed printed with the outcome (``HITPAW_CRASH_SEED`` replays one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import Deployment, RunWatch
from tests.support.task_processes import sigkill, task_runners, task_starts

#: Whole test, deployment startup included; each wait below is also bounded by it.
DEADLINE_SECONDS = 240
pytestmark = [pytest.mark.deployment, pytest.mark.timeout(DEADLINE_SECONDS + 30)]

DAG_FILE = Path(__file__).parent / "dags" / "batch_crash.py"
DAG_ID, TASK_ID = "hitpaw_batch_crash", "enhance_batch"
MAX_IN_FLIGHT = 16  # as in the DAG file
PHOTOS = 40
API_KEY = "batch-crash-key"
COINS = 1_000_000
#: Long enough that a deferral still waits when the triggerer is killed; short, for the test's time.
JOB_SECONDS = 4.0
#: How often /proc is looked at for a new task runner.
SCAN_SECONDS = 0.02


class RunnerWatch:
    """The task runner processes of one deployment, in the order they started."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.seen: list[int] = []

    def next_start(self, timeout: float, what: str) -> int:
        """Wait for a task runner not seen before; its pid."""
        scheduler = self.deployment.components["scheduler"].process.pid
        limit = time.monotonic() + min(timeout, self.deployment.remaining)
        while time.monotonic() < limit:
            new = [pid for pid in task_runners(scheduler) if pid not in self.seen]
            if new:
                self.seen.extend(sorted(new))
                return min(new)
            time.sleep(SCAN_SECONDS)
        raise self.deployment.error(f"timed out waiting for {what}")

    def wait_gone(self, pid: int, timeout: float, what: str) -> None:
        scheduler = self.deployment.components["scheduler"].process.pid
        self.deployment.wait_until(lambda: pid not in task_runners(scheduler), timeout, what, SCAN_SECONDS)


def submissions(sandbox: Any) -> list[dict[str, Any]]:
    return list(sandbox.stats()["submissions"])


def ledger_records(output: Path) -> list[dict[str, Any]]:
    lines = (output / ".hitpaw" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut by a kill mid-write
            continue
    return records


def task_instance(deployment: Deployment, run: RunWatch) -> dict[str, Any]:
    deployment.observe([run])
    return next(ti for ti in run.task_instances if ti["task_id"] == TASK_ID)


def test_batch_killed_workers_and_triggerer_finish_every_photo_charged_once(tmp_path: Path, record_property: Any):
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    seed = int(os.environ.get("HITPAW_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    output = tmp_path / "enhanced"
    started = time.monotonic()
    sandbox = start_sandbox_process(api_keys={API_KEY: COINS}, job_seconds=JOB_SECONDS)
    events: list[str] = [f"seed {seed}"]

    def note(event: str) -> None:
        events.append(f"{event} (at {time.monotonic() - started:.0f} s)")

    try:
        env = {
            "AIRFLOW_CONN_HITPAW_DEFAULT": json.dumps({"conn_type": "hitpaw", "host": sandbox.base_url,
                                                       "password": API_KEY}),
            "HITPAW_BATCH_CRASH_OUTPUT": str(output),
            "HITPAW_BATCH_CRASH_PHOTOS": str(PHOTOS),
        }
        with Deployment(dag_files=[DAG_FILE], env=env, parallelism=2, deadline_seconds=DEADLINE_SECONDS) as deployment:
            deployment.wait_for_dags([DAG_ID])
            deployment.unpause(DAG_ID)
            note("deployment up")
            run = deployment.trigger(DAG_ID)
            runners = RunnerWatch(deployment)
            worker_kills = 0

            # 1. The first try's task runner, while it submits: between a POST that created (and
            # charged) a job and the ledger's record of it, the sandbox holding that reply back.
            first = runners.next_start(90, "the first try's task runner")
            after = rng.randint(2, MAX_IN_FLIGHT - 4)
            deployment.wait_until(lambda: len(submissions(sandbox)) >= after - 1, 60,
                                  f"{after - 1} submissions", SCAN_SECONDS)
            sandbox.set_faults(slow=1.0, slow_seconds=30.0, fault_endpoints={"submit"})
            base = len(submissions(sandbox))  # every later submission was processed with the fault on
            held = deployment.wait_until(lambda: submissions(sandbox)[base:], 30,
                                         "a submission whose reply is held back", SCAN_SECONDS)
            assert sigkill(first), "the first try had ended before it was killed"
            sandbox.set_faults(slow=0.0)
            worker_kills += 1
            lost_reply = held[0]["img_url"]
            note(f"killed the first start at submission {len(submissions(sandbox))}, its reply held back")

            # 2. A later try's task runner, right after a resume (a start that follows a deferral).
            start = runners.next_start(60, "the retry's task runner")
            for _ in range(3):
                runners.wait_gone(start, 60, "the retry to defer")
                start = runners.next_start(60, "the resumption")
                delay = rng.uniform(0.0, 0.8)
                time.sleep(delay)
                if sigkill(start):
                    worker_kills += 1
                    note(f"killed a resumption {delay:.2f} s after it started")
                    break
            else:
                raise AssertionError(f"no resumption lived long enough to be killed: {events}")

            # 3. The triggerer, while the batch waits on its trigger in it.
            for _ in range(3):
                def deferred_in_triggerer() -> bool:
                    current = task_instance(deployment, run)
                    return current["state"] == "deferred" and bool((current.get("trigger") or {}).get("triggerer_id"))

                deployment.wait_until(deferred_in_triggerer, 90, "the batch to wait in the triggerer", 0.2)
                ti = task_instance(deployment, run)
                deployment.expect_down("triggerer")
                deployment.stop_component("triggerer", signal.SIGKILL)
                time.sleep(0.5)
                still_deferred = task_instance(deployment, run)["state"] == "deferred"
                deployment.start_component("triggerer")
                deployment.expect_down("triggerer", False)
                if still_deferred:
                    note(f"killed the triggerer while try {ti['try_number']} was deferred")
                    break
            else:
                raise AssertionError(f"the batch never stayed deferred across a triggerer kill: {events}")

            deployment.wait_for_runs([run], deployment.remaining, what="the batch run to finish")
            note("run finished")
            ti = task_instance(deployment, run)
            assert run.state == "success", f"{run.task_states}; {events}\n{deployment.logs_report()}"
            assert ti["try_number"] == 1 + worker_kills, (ti["try_number"], events)
            summary = deployment.api(
                "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/{TASK_ID}/xcomEntries/return_value"
            )["value"]
            starts = task_starts(deployment, run, TASK_ID, int(ti["try_number"]))
    finally:
        stats = sandbox.stats() if sandbox.returncode is None else {}
        sandbox.stop()

    urls = [f"{sandbox.base_url}/samples/portrait.jpg?copy={n}" for n in range(PHOTOS)]
    if isinstance(summary, str):
        summary = json.loads(summary)

    # Every photo enhanced, in the manifest and on disk.
    manifest = [json.loads(line) for line in Path(summary["manifest"].removeprefix("file://")).read_text().splitlines()]
    assert sorted(row["source"] for row in manifest) == sorted(urls)
    assert {row["outcome"] for row in manifest} == {"enhanced"}, Counter(row["outcome"] for row in manifest)
    assert summary["counts"] == {"enhanced": PHOTOS}, summary
    missing = [row["output"] for row in manifest if not row["output"] or not (output / row["output"]).is_file()]
    assert not missing, missing

    # Charges: one per photo, but for an unknown outcome (an intent the ledger never got a job id for).
    records = ledger_records(output)
    intents: Counter[str] = Counter()
    recorded_jobs: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.get("event") == "intent":
            intents[record["source"]] += 1
        elif record.get("event") == "submitted" and not record.get("repoll"):
            recorded_jobs[record["source"]].add(record["job_id"])
    unknown = {url: intents[url] - len(recorded_jobs[url]) for url in urls if intents[url] > len(recorded_jobs[url])}
    assert lost_reply in unknown, (lost_reply, unknown)  # the kill between the POST and the ledger's record
    charged_jobs: dict[str, set[str]] = defaultdict(set)
    for submission in stats["submissions"]:
        charged_jobs[submission["img_url"]].add(submission["job_id"])
    assert set(charged_jobs) == set(urls), set(charged_jobs) ^ set(urls)
    for url in urls:
        assert recorded_jobs[url] <= charged_jobs[url], (url, recorded_jobs[url], charged_jobs[url])
        charges = len(charged_jobs[url])
        if url in unknown:
            assert 1 <= charges <= intents[url], (url, charges, intents[url], events)
        else:
            assert charges == 1, (url, charges, sorted(charged_jobs[url]), events)
    by_job = {s["job_id"]: s["coins"] for s in stats["submissions"]}
    ledger_coins = sum(by_job[job] for jobs in recorded_jobs.values() for job in jobs)
    assert summary["coins"] == ledger_coins, (summary["coins"], ledger_coins)
    assert sum(stats["coins_charged_by_key"].values()) == sum(by_job.values())
    orphans = sum(len(charged_jobs[url] - recorded_jobs[url]) for url in urls)
    assert max(stats["peak_in_flight_by_key"].values()) <= MAX_IN_FLIGHT + orphans, stats["peak_in_flight_by_key"]

    outcome = (f"{'; '.join(events)}; {ti['try_number']} tries, {starts} task starts; unknown outcomes: "
               f"{len(unknown)} item(s) ({sum(unknown.values())} intent(s) without a job id), "
               f"{orphans} orphaned charge(s); {time.monotonic() - started:.0f} s")
    print(f"batch crash test: {outcome}")
    record_property("batch_crash", outcome)
