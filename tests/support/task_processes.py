"""Finding the process that runs a task's code in a LocalExecutor deployment, to kill it.

The LocalExecutor's worker (``airflow worker -- LocalExecutor: <ti id>``, a child of the scheduler)
supervises one task runner per task start, a child process titled ``airflow worker -- <ti id>``
(``setproctitle`` in ``airflow.sdk.execution_time.task_runner``, Airflow 3.1 and 3.3): the one that
runs ``execute``/``execute_complete``, and so the one that submits and writes the batch's ledger.
Killing it is a worker crash the supervisor reports, so the task is retried at once.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.support.deployment import process_tree

TASK_RUNNER_TITLE = "airflow worker -- "
EXECUTOR_WORKER_MARK = "LocalExecutor"
#: What the task runner logs once per start (it parses the DAG file), on Airflow 3.1 and 3.3.
TASK_START_LOG = "Filling up the DagBag from"


def task_starts(deployment: Any, run: Any, task_id: str, tries: int) -> int:
    """Starts and resumes of a task instance over its tries: the audit log's ``running`` entries
    (Airflow 3.3), else the task runner's one line per start in each try's log (3.1 writes no entry)."""
    audited = len(deployment.event_logs(run, task_id, "running"))
    if audited:
        return audited
    return sum(deployment.task_log(run, task_id, n).count(TASK_START_LOG) for n in range(1, tries + 1))


def cmdline(pid: int) -> str:
    """The process's command line (its title), or "" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def task_runners(root_pid: int) -> list[int]:
    """The task runner processes among ``root_pid``'s descendants (the scheduler's, for LocalExecutor)."""
    return [
        pid for pid in process_tree(root_pid)
        if (title := cmdline(pid)).startswith(TASK_RUNNER_TITLE) and EXECUTOR_WORKER_MARK not in title
    ]


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sigkill(pid: int) -> bool:
    """SIGKILL one process; whether it was still running to receive it."""
    if not is_running(pid):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
