"""The chaos run: many HitPaw tasks against a faulty sandbox, judged from the sandbox's own records.

Run it with ``make chaos`` (or ``python -m bench.chaos_run --jobs 240``); ``tests/test_chaos.py`` runs a
smaller variant inside ``make test``.

The sandbox (in a process of its own, so that its image work does not compete with the clients for the
GIL) injects faults on every endpoint: 10% gateway 5xx with HTML bodies, 5% 429, 3% dropped connections
before processing, 1% dropped after processing (a submission is created and charged, its reply lost),
2% replies slower than the read timeout, and 5% of jobs end in ERROR.

Tasks go through four paths, in equal shares, all over real HTTP:

- ``hook``: ``HitPawHook.enhance_photo`` + ``wait_for_completion`` + ``download_result``;
- ``trigger``: ``HitPawAsyncHook.enhance_photo``, then ``HitPawTaskStatusTrigger.run()`` (rebuilt from
  ``serialize()``) on one shared event loop, as in a triggerer;
- ``operator-sync``: ``EnhancePhotoOperator.execute()`` waiting in the worker, with ``output_path``;
- ``operator-deferred``: ``execute()`` until ``TaskDeferred``, the trigger (rebuilt from its serialized
  kwargs) on the shared loop, then ``execute_complete()`` with the event.

Each task submits its own ``img_url`` (a query string makes it unique), so the sandbox's submission
records say exactly which task paid for what. Afterwards faults are turned off and every recorded job is
asked for its final state. A task is *correct* when:

- it succeeded: exactly one submission, the same job id, the job COMPLETED at the sandbox, the coins it
  reports are the ones charged, and its result file was written (when it downloads one);
- it failed with ``HitPawJobFailedError``: exactly one submission, and that job ended in ERROR;
- it failed with ``HitPawSubmitOutcomeUnknownError``: at most one submission, nothing resubmitted, and the
  error names the task's ``img_url`` and model (which is how the user finds the job and its coins).

Anything else (a transient error that outlived the retries, a wait timeout, a wrong success) is wrong.
*Lost results* are jobs COMPLETED at the sandbox whose task neither ended with that job's result nor
reported an unknown outcome. *Unexplained coins* are the coins charged, minus those the tasks report,
minus those of submissions whose task reported an unknown outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
CHAOS_KEY = "chaos-key-0b5e"
CHAOS_CONN_ID = "hitpaw_chaos"
MODES = ("hook", "trigger", "operator-sync", "operator-deferred")
MODELS = ("face_2x", "general_2x", "sharpen_denoise", "face_v2_2x")

#: Fault rates of the issue (drop split into before and after processing).
DEFAULT_FAULTS: dict[str, Any] = {
    "error_5xx": 0.10,
    "rate_429": 0.05,
    "drop": 0.03,
    "drop_after": 0.01,
    "slow": 0.02,
    "fail_job": 0.05,
}


@dataclass
class ChaosSettings:
    jobs: int = 240
    concurrency: int = 12
    job_seconds: float = 0.3
    connect_timeout: float = 2.0
    read_timeout: float = 1.5
    slow_seconds: float = 2.5
    poll_interval: float = 1.0  # the provider's floor (events.MIN_POLL_INTERVAL_SECONDS)
    wait_timeout: float = 45.0
    max_attempts: int = 8
    seed: int | None = 5
    faults: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FAULTS))

    @property
    def task_budget(self) -> float:
        """Seconds a task may take in all: submission with its retries, the wait, the download."""
        return self.wait_timeout + 30.0


@dataclass
class TaskOutcome:
    name: str
    mode: str
    img_url: str
    model: str
    started: float = 0.0
    ended: float | None = None
    outcome: str = "running"  # success | job_failed | outcome_unknown | error
    error_class: str | None = None
    error: str | None = None
    error_img_url: str | None = None
    error_model: str | None = None
    job_id: str | None = None
    coins: int | None = None
    res_url: str | None = None
    output_path: str | None = None
    downloads: bool = False
    tries: int = 1

    @property
    def elapsed(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


# --- running tasks ----------------------------------------------------------------------------------


def fast_policy(settings: ChaosSettings) -> Any:
    from airflow_provider_hitpaw.retries import RetryPolicy

    return RetryPolicy(max_attempts=settings.max_attempts, max_retry_seconds=30.0, backoff_initial=0.05,
                       backoff_max=0.5, jitter=0.05)


def connection_env(base_url: str, settings: ChaosSettings, api_key: str = CHAOS_KEY) -> str:
    return json.dumps({
        "conn_type": "hitpaw",
        "host": base_url,
        "password": api_key,
        "extra": {
            "connect_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout,
            "max_attempts": settings.max_attempts,
            "max_retry_seconds": 30,
        },
    })


class FakeTI:
    def __init__(self) -> None:
        self.try_number = 1
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class Triggerer:
    """One event loop in a thread, running every trigger of the run, as a triggerer process does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chaos-triggerer", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop).result(timeout + 5)

    def stop(self) -> None:
        from airflow_provider_hitpaw.hooks.session import close_shared_session

        try:
            asyncio.run_coroutine_threadsafe(close_shared_session(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


async def run_trigger_from_serialized(trigger: Any) -> dict[str, Any]:
    """Rebuild the trigger from ``serialize()`` (as the triggerer does) and collect its events."""
    import importlib

    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    events = [event.payload async for event in rebuilt.run()]
    if len(events) != 1:
        raise AssertionError(f"the trigger yielded {len(events)} events")
    return events[0]


def _record_error(task: TaskOutcome, err: BaseException) -> None:
    from airflow_provider_hitpaw.errors import HitPawJobFailedError, HitPawSubmitOutcomeUnknownError

    task.error_class = type(err).__name__
    task.error = str(err)[:500]
    task.job_id = task.job_id or getattr(err, "job_id", None)
    if isinstance(err, HitPawSubmitOutcomeUnknownError):
        task.outcome = "outcome_unknown"
        task.error_img_url, task.error_model = err.img_url, err.model_name
    elif isinstance(err, HitPawJobFailedError):
        task.outcome = "job_failed"
    else:
        task.outcome = "error"
        if not getattr(err, "message", None):  # not a HitPaw error: keep the traceback to debug
            task.error = "".join(traceback.format_exception(err))[-1500:]


def run_hook_task(task: TaskOutcome, settings: ChaosSettings, out_dir: Path) -> None:
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    hook = HitPawHook(CHAOS_CONN_ID, retry_policy=fast_policy(settings))
    task.downloads = True
    try:
        job = hook.enhance_photo(task.img_url, task.model, ".jpg")
        task.job_id, task.coins = job.job_id, job.consume_coins
        status = hook.wait_for_completion(job.job_id, settings.poll_interval, settings.wait_timeout)
        task.res_url = status.res_url
        assert status.res_url is not None  # a COMPLETED status always has one
        task.output_path = hook.download_result(status.res_url, out_dir / f"{task.name}.jpg")
        task.outcome = "success"
    finally:
        hook.close()


async def trigger_task(task: TaskOutcome, settings: ChaosSettings) -> None:
    from airflow_provider_hitpaw.events import completed_job_from_event
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook
    from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

    hook = HitPawAsyncHook(CHAOS_CONN_ID, retry_policy=fast_policy(settings))
    job = await hook.enhance_photo(task.img_url, task.model, ".jpg")
    task.job_id, task.coins = job.job_id, job.consume_coins
    trigger = HitPawTaskStatusTrigger(job.job_id, time.time() + settings.wait_timeout, CHAOS_CONN_ID,
                                      settings.poll_interval, max_consecutive_errors=settings.max_attempts)
    event = await run_trigger_from_serialized(trigger)
    completed = completed_job_from_event(event, job_id=job.job_id)
    task.res_url = completed.res_url
    task.outcome = "success"


def _operator(task: TaskOutcome, settings: ChaosSettings, out_dir: Path, deferrable: bool) -> Any:
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
    from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

    op = EnhancePhotoOperator(
        task_id=task.name.replace("-", "_"),
        img_url=task.img_url,
        model_name=task.model,
        hitpaw_conn_id=CHAOS_CONN_ID,
        deferrable=deferrable,
        poll_interval=settings.poll_interval,
        timeout=settings.wait_timeout,
        output_path=str(out_dir / f"{task.name}.jpg"),
        max_consecutive_errors=settings.max_attempts,
    )
    # The connection's retry settings, with short pauses (the operator's own hook is a cached property).
    op.__dict__["hook"] = HitPawHook(CHAOS_CONN_ID, retry_policy=fast_policy(settings))
    task.downloads = True
    return op


def _take_result(task: TaskOutcome, result: dict[str, Any]) -> None:
    task.job_id, task.coins = result["job_id"], result["consume_coins"]
    task.res_url, task.output_path = result["res_url"], result["output_path"]
    task.outcome = "success"


def run_operator_sync(task: TaskOutcome, settings: ChaosSettings, out_dir: Path) -> None:
    op = _operator(task, settings, out_dir, deferrable=False)
    context = {"ti": FakeTI()}
    try:
        _take_result(task, op.execute(context))
    finally:
        task.job_id = task.job_id or context["ti"].xcoms.get("job_id")
        task.coins = task.coins if task.coins is not None else context["ti"].xcoms.get("consume_coins")
        op.hook.close()


def run_operator_deferred(task: TaskOutcome, settings: ChaosSettings, out_dir: Path, triggerer: Triggerer) -> None:
    from airflow_provider_hitpaw.version_compat import TaskDeferred

    op = _operator(task, settings, out_dir, deferrable=True)
    context = {"ti": FakeTI()}
    try:
        try:
            result = op.execute(context)
        except TaskDeferred as deferred:
            task.job_id = context["ti"].xcoms.get("job_id")
            task.coins = context["ti"].xcoms.get("consume_coins")
            event = triggerer.run(run_trigger_from_serialized(deferred.trigger), settings.task_budget)
            result = getattr(op, deferred.method_name)(context, event=event, **(deferred.kwargs or {}))
        _take_result(task, result)
    finally:
        task.job_id = task.job_id or context["ti"].xcoms.get("job_id")
        task.coins = task.coins if task.coins is not None else context["ti"].xcoms.get("consume_coins")
        op.hook.close()


def run_one(task: TaskOutcome, settings: ChaosSettings, out_dir: Path, triggerer: Triggerer) -> TaskOutcome:
    task.started = time.monotonic()
    try:
        if task.mode == "hook":
            run_hook_task(task, settings, out_dir)
        elif task.mode == "trigger":
            triggerer.run(trigger_task(task, settings), settings.task_budget)
        elif task.mode == "operator-sync":
            run_operator_sync(task, settings, out_dir)
        else:
            run_operator_deferred(task, settings, out_dir, triggerer)
    except BaseException as err:  # every outcome is judged afterwards
        _record_error(task, err)
    finally:
        task.ended = time.monotonic()
    return task


def make_tasks(base_url: str, jobs: int, modes: tuple[str, ...] = MODES, prefix: str = "") -> list[TaskOutcome]:
    run = uuid.uuid4().hex[:6]
    tasks = []
    for i in range(jobs):
        mode = modes[i % len(modes)]
        name = f"{prefix}{mode}-{i:04d}"
        tasks.append(TaskOutcome(name=name, mode=mode, model=MODELS[i % len(MODELS)],
                                 img_url=f"{base_url}/samples/portrait.jpg?chaos={run}-{name}"))
    return tasks


def preload() -> None:
    """Import Airflow and the provider in this thread: a first import from many threads at once breaks."""
    import airflow.sdk  # noqa: F401

    from airflow_provider_hitpaw import events  # noqa: F401
    from airflow_provider_hitpaw.hooks import hitpaw  # noqa: F401
    from airflow_provider_hitpaw.operators import hitpaw as operator  # noqa: F401
    from airflow_provider_hitpaw.triggers import hitpaw as trigger  # noqa: F401


def warm_up(base_url: str) -> None:
    """Do once, in this thread, what loads Airflow lazily (connection model, operator defaults): on
    Airflow 3.1, many threads doing it first at the same time can deadlock on the import lock."""
    import sqlalchemy.orm

    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
    from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

    HitPawHook(CHAOS_CONN_ID).settings
    EnhancePhotoOperator(task_id="warm_up", img_url=f"{base_url}/samples/portrait.jpg", model_name="face_2x")
    sqlalchemy.orm.configure_mappers()


def run_tasks(tasks: list[TaskOutcome], settings: ChaosSettings, out_dir: Path) -> None:
    """Run every task with ``concurrency`` workers; a task still running past its budget is a hang."""
    triggerer = Triggerer()
    pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="chaos-worker")
    try:
        futures = [pool.submit(run_one, t, settings, out_dir, triggerer) for t in tasks]
        limit = time.monotonic() + settings.task_budget * (1 + len(tasks) / settings.concurrency) + 30
        for future in futures:
            try:
                future.result(max(0.0, limit - time.monotonic()))
            except Exception:
                continue
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        triggerer.stop()


# --- judging --------------------------------------------------------------------------------------


def final_job_states(base_url: str, api_key: str, job_ids: list[str], settle: float = 15.0) -> dict[str, str]:
    """Each job's final state, asked of the sandbox (faults off) until none is still running."""
    import requests

    from airflow_provider_hitpaw.api import JobStatus

    states: dict[str, str] = {}
    deadline = time.monotonic() + settle
    pending = list(job_ids)
    with requests.Session() as session:
        while pending:
            still = []
            for job_id in pending:
                reply = session.post(base_url + "/api/task-status", json={"job_id": job_id},
                                     headers={"Apikey": api_key}, timeout=10)
                data = reply.json().get("data") or {}
                state = str(data.get("status", f"HTTP {reply.status_code}"))
                states[job_id] = state
                if not JobStatus.parse(state).is_terminal:
                    still.append(job_id)
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    return states


def judge(tasks: list[TaskOutcome], stats: dict[str, Any], states: dict[str, str],
          settings: ChaosSettings) -> dict[str, Any]:
    """Sort every task and every submission; return per-mode rows, totals, and the problems found."""
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in stats["submissions"]:
        records[record["img_url"]].append(record)
    by_url = {t.img_url: t for t in tasks}
    problems: list[str] = []
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    elapsed: dict[str, list[float]] = defaultdict(list)

    for task in tasks:
        row = rows[task.mode]
        recs = records.get(task.img_url, [])
        row["tasks"] += 1
        row[task.outcome] += 1
        row["submissions"] += len(recs)
        row["max_submissions"] = max(row["max_submissions"], len(recs))
        row["coins_charged"] += sum(r["coins"] for r in recs)
        if task.elapsed is None or task.elapsed > settings.task_budget:
            row["past_deadline"] += 1
            problems.append(f"{task.name}: ran past its deadline ({task.elapsed})")
        if task.elapsed is not None:
            elapsed[task.mode].append(task.elapsed)
        ok, why = _task_correct(task, recs, states)
        if ok:
            row["correct"] += 1
        else:
            problems.append(f"{task.name} ({task.mode}, {task.outcome}): {why}")
        row["extra_submissions"] += sum(1 for r in recs[:-1] if states.get(r["job_id"]) != "ERROR")
        row["tries"] += task.tries
        row["coins_reported"] += task.coins or 0
        if task.outcome == "outcome_unknown":
            # The reported coins are those of earlier tries' failed jobs; the rest is the unknown submission's.
            unknown = [r for r in recs if r["job_id"] != task.job_id and states.get(r["job_id"]) != "ERROR"]
            row["coins_unknown_outcome"] += sum(r["coins"] for r in recs) - (task.coins or 0)
            row["orphans_of_unknown"] += sum(1 for r in unknown if states.get(r["job_id"]) == "COMPLETED")
            row["unknown_uncharged"] += 0 if unknown else 1
        for record in recs:
            if states.get(record["job_id"]) != "COMPLETED":
                continue
            got_it = task.outcome == "success" and task.job_id == record["job_id"] and bool(task.res_url)
            if not got_it and task.outcome != "outcome_unknown":
                row["lost"] += 1
                problems.append(f"{task.name}: job {record['job_id']} COMPLETED but the task ended {task.outcome}")
    stray = [r for url, recs in records.items() if url not in by_url for r in recs]
    if stray:
        problems.append(f"{len(stray)} submissions belong to no task")
    for mode, row in rows.items():
        row["unexplained_coins"] = row["coins_charged"] - row["coins_reported"] - row["coins_unknown_outcome"]
        times = sorted(elapsed[mode]) or [0.0]
        row["p50_ms"] = int(statistics.median(times) * 1000)
        row["max_ms"] = int(times[-1] * 1000)
    total: Counter[str] = Counter()
    for row in rows.values():
        for key, value in row.items():
            if key == "max_submissions":
                total[key] = max(total[key], value)
            elif key not in ("p50_ms", "max_ms"):
                total[key] += value
    ledger_charged = sum(stats["coins_charged_by_key"].values())
    total["ledger_charged"] = ledger_charged
    total["unexplained_coins"] = ledger_charged - total["coins_reported"] - total["coins_unknown_outcome"]
    all_times = sorted(x for v in elapsed.values() for x in v) or [0.0]
    total["p50_ms"] = int(statistics.median(all_times) * 1000)
    total["max_ms"] = int(all_times[-1] * 1000)
    targets = {
        "all tasks correct": total["correct"] == total["tasks"],
        "0 results lost": total["lost"] == 0,
        "<= 1 submission per task (except failed jobs)": total["extra_submissions"] == 0,
        "0 unexplained coins": total["unexplained_coins"] == 0 and not stray,
        "0 tasks past their deadline": total["past_deadline"] == 0,
    }
    return {"rows": {m: dict(r) for m, r in rows.items()}, "total": dict(total), "problems": problems,
            "targets": targets, "faults_injected": stats.get("faults_injected", {}),
            "requests_by_status": stats.get("requests_by_status", {})}


def _task_correct(task: TaskOutcome, recs: list[dict[str, Any]], states: dict[str, str]) -> tuple[bool, str]:
    # Only a job that itself failed may be followed by a new submission (an Airflow retry of the task).
    earlier, last = recs[:-1], recs[-1:]
    if any(states.get(r["job_id"]) != "ERROR" for r in earlier):
        return False, f"resubmitted after a job that did not fail ({len(recs)} submissions)"
    charged = sum(r["coins"] for r in recs)
    if task.outcome == "success":
        if not last:
            return False, "succeeded without any submission"
        rec = last[0]
        if rec["job_id"] != task.job_id:
            return False, f"reports job {task.job_id}, the sandbox charged job {rec['job_id']}"
        if states.get(rec["job_id"]) != "COMPLETED":
            return False, f"succeeded but the job is {states.get(rec['job_id'])}"
        if task.coins != charged:
            return False, f"reports {task.coins} coins, was charged {charged}"
        if not task.res_url or rec["job_id"] not in task.res_url:
            return False, f"res_url {task.res_url!r} is not the job's"
        if task.downloads and (not task.output_path or not Path(task.output_path).is_file()
                               or Path(task.output_path).stat().st_size == 0):
            return False, f"no result file at {task.output_path}"
        return True, ""
    if task.outcome == "job_failed":
        if not last or last[0]["job_id"] != task.job_id:
            return False, f"job failed with {len(recs)} submissions"
        if states.get(task.job_id or "") != "ERROR":
            return False, f"reported a failed job, but the sandbox says {states.get(task.job_id or '')}"
        if task.coins != charged:
            return False, f"reports {task.coins} coins, was charged {charged}"
        return True, ""
    if task.outcome == "outcome_unknown":
        if task.error_img_url != task.img_url or task.error_model != task.model:
            return False, "the unknown-outcome error does not name the submission"
        return True, ""
    return False, f"{task.error_class}: {task.error}"


# --- printing -------------------------------------------------------------------------------------

COLUMNS = [
    ("tasks", "tasks"),
    ("correct", "correct"),
    ("success", "ok"),
    ("job_failed", "job ERROR"),
    ("outcome_unknown", "unknown outcome"),
    ("error", "other error"),
    ("lost", "results lost"),
    ("max_submissions", "max subm./task"),
    ("extra_submissions", "extra subm."),
    ("coins_charged", "coins charged"),
    ("coins_reported", "coins reported"),
    ("coins_unknown_outcome", "coins of unknown outcomes"),
    ("unexplained_coins", "unexplained coins"),
    ("past_deadline", "past deadline"),
    ("p50_ms", "p50 ms"),
    ("max_ms", "max ms"),
]


def format_table(verdict: dict[str, Any]) -> str:
    header = ["path"] + [label for _, label in COLUMNS]
    lines = [header]
    for mode, row in sorted(verdict["rows"].items()):
        lines.append([mode] + [str(row.get(key, 0)) for key, _ in COLUMNS])
    lines.append(["TOTAL"] + [str(verdict["total"].get(key, 0)) for key, _ in COLUMNS])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    total = verdict["total"]
    out.append("")
    out.append(f"Coins charged by the sandbox's ledger: {total.get('ledger_charged', 0)}; reported by tasks: "
               f"{total.get('coins_reported', 0)}; charged for submissions surfaced as unknown outcome: "
               f"{total.get('coins_unknown_outcome', 0)}; unexplained: {total.get('unexplained_coins', 0)}.")
    out.append(f"Unknown outcomes: {total.get('outcome_unknown', 0)} tasks, of which "
               f"{total.get('unknown_uncharged', 0)} created no job (fault before processing) and "
               f"{total.get('orphans_of_unknown', 0)} left a COMPLETED job the user can recover by img_url.")
    out.append(f"Faults injected: {json.dumps(verdict['faults_injected'], sort_keys=True)}")
    out.append(f"Replies by status: {json.dumps(verdict['requests_by_status'], sort_keys=True)}")
    out.append("")
    for target, met in verdict["targets"].items():
        out.append(f"  [{'x' if met else ' '}] {target}")
    if verdict["problems"]:
        out.append("")
        out.append("Problems:")
        out.extend(f"  - {p}" for p in verdict["problems"][:50])
    return "\n".join(out)


# --- the whole run --------------------------------------------------------------------------------


def run_chaos(settings: ChaosSettings, *, extra_tasks: Any = None) -> dict[str, Any]:
    """Start a faulty sandbox process, run the tasks, and judge them. Returns the verdict.

    :param extra_tasks: optional callable ``(sandbox, settings) -> list[TaskOutcome]`` run after the
        direct tasks, with faults still on (the ``dag.test()`` runs).
    """
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    preload()
    out_dir = Path(tempfile.mkdtemp(prefix="hitpaw-chaos-"))
    started = time.monotonic()
    sandbox = start_sandbox_process(api_keys={CHAOS_KEY: 10_000_000}, job_seconds=settings.job_seconds,
                                    workers=2)
    previous = os.environ.get(f"AIRFLOW_CONN_{CHAOS_CONN_ID.upper()}")
    os.environ[f"AIRFLOW_CONN_{CHAOS_CONN_ID.upper()}"] = connection_env(sandbox.base_url, settings)
    try:
        warm_up(sandbox.base_url)
        sandbox.set_faults(**settings.faults, slow_seconds=settings.slow_seconds, seed=settings.seed)
        tasks = make_tasks(sandbox.base_url, settings.jobs)
        run_tasks(tasks, settings, out_dir)
        if extra_tasks is not None:
            tasks += extra_tasks(sandbox, settings, out_dir)
        sandbox.set_faults(error_5xx=0, rate_429=0, drop=0, drop_after=0, slow=0, fail_job=0)
        stats = sandbox.stats()
        states = final_job_states(sandbox.base_url, CHAOS_KEY, [r["job_id"] for r in stats["submissions"]])
        verdict = judge(tasks, stats, states, settings)
        verdict["seconds"] = round(time.monotonic() - started, 1)
        verdict["tasks"] = tasks
        return verdict
    finally:
        if previous is None:
            os.environ.pop(f"AIRFLOW_CONN_{CHAOS_CONN_ID.upper()}", None)
        else:
            os.environ[f"AIRFLOW_CONN_{CHAOS_CONN_ID.upper()}"] = previous
        sandbox.stop()
        shutil.rmtree(out_dir, ignore_errors=True)


# --- dag.test() runs ------------------------------------------------------------------------------


def dagtest_tasks(dag_runs: int, dags_folder: Path) -> Any:
    """A callable for :func:`run_chaos` that runs the ``chaos_enhance`` DAG ``dag_runs`` times."""

    def run(sandbox: Any, settings: ChaosSettings, out_dir: Path) -> list[TaskOutcome]:
        from tests.support.dag_files import load_dag_file

        outcomes_file = out_dir / "dagtest-outcomes.jsonl"
        os.environ["HITPAW_CHAOS_OUTCOMES"] = str(outcomes_file)
        module = load_dag_file(dags_folder / "chaos_enhance.py", "chaos_enhance_dag")
        tasks: list[TaskOutcome] = []
        for i in range(dag_runs):
            token = f"{uuid.uuid4().hex[:6]}-{i}"
            started = time.monotonic()
            module.dag.test(run_conf={"token": token, "output_dir": str(out_dir / f"dagtest-{token}")})
            ended = time.monotonic()
            tasks += read_dagtest_outcomes(outcomes_file, token, started, ended)
        return tasks

    return run


def read_dagtest_outcomes(outcomes_file: Path, token: str, started: float, ended: float) -> list[TaskOutcome]:
    """Each task of one ``chaos_enhance`` run as its tries wrote it down: the last try's outcome, and the
    coins of every distinct job its tries reported (a retry after a failed job pays again)."""
    tries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if outcomes_file.exists():
        for line in outcomes_file.read_text().splitlines():
            entry = json.loads(line)
            if entry["token"] == token:
                tries[entry["task_id"]].append(entry)
    tasks = []
    for task_id, entries in sorted(tries.items()):
        entry = entries[-1]
        coins_by_job = {e["job_id"]: e["coins"] for e in entries if e.get("job_id") and e.get("coins") is not None}
        task = TaskOutcome(name=f"dagtest-{token}-{task_id}", mode=f"dag.test {entry['mode']}",
                           img_url=entry["img_url"], model=entry["model"], started=started, ended=ended,
                           outcome=entry["outcome"], error_class=entry.get("error_class"),
                           error=entry.get("error"), error_img_url=entry.get("error_img_url"),
                           error_model=entry.get("error_model"), job_id=entry.get("job_id"),
                           coins=sum(coins_by_job.values()) if coins_by_job else None,
                           res_url=entry.get("res_url"), output_path=entry.get("output_path"), downloads=True)
        task.tries = len(entries)
        tasks.append(task)
    return tasks


def prepare_airflow_home(dag_files: list[Path], migrate: bool = True) -> Path:
    """A throw-away AIRFLOW_HOME with the given DAG files and a migrated SQLite DB (before Airflow loads)."""
    import subprocess

    home = Path(tempfile.mkdtemp(prefix="hitpaw-chaos-airflow-"))
    dags = home / "dags"
    dags.mkdir()
    for path in dag_files:
        shutil.copy(path, dags / path.name)
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # The run's own retries and faults would fill the screen; the table is what counts.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR"),
    })
    if migrate:
        airflow = Path(sys.executable).parent / "airflow"
        done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return dags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=240, help="direct tasks, split over the four paths")
    parser.add_argument("--dag-runs", type=int, default=3, help="dag.test() runs of the chaos DAG (4 tasks each)")
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--seed", type=int, default=5, help="seed of the sandbox's fault rolls")
    parser.add_argument("--json", type=Path, help="also write the verdict as JSON here")
    args = parser.parse_args(argv)

    # Before Airflow is imported: a throw-away home (and, for dag.test(), a migrated database).
    dags = prepare_airflow_home([PROJECT / "tests" / "dags" / "chaos_enhance.py"], migrate=args.dag_runs > 0)
    extra = dagtest_tasks(args.dag_runs, dags) if args.dag_runs > 0 else None
    settings = ChaosSettings(jobs=args.jobs, concurrency=args.concurrency, seed=args.seed)
    verdict = run_chaos(settings, extra_tasks=extra)
    print()
    print(f"HitPaw chaos run: {verdict['total']['tasks']} tasks in {verdict['seconds']} s "
          f"(faults: {json.dumps(settings.faults, sort_keys=True)}, slow replies {settings.slow_seconds} s "
          f"vs read timeout {settings.read_timeout} s)")
    print()
    print(format_table(verdict))
    if args.json:
        data = {k: v for k, v in verdict.items() if k != "tasks"}
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True))
    return 0 if all(verdict["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
