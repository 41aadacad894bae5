"""Jobs of the sandbox and the states they go through.

A job's state is computed from its age each time it is asked for, so thousands of jobs cost no
timer and no task: WAITING -> INPUT_PREPARING -> CONVERTING -> OUTPUT_SAVING over ``duration``
seconds, then its final state. A job whose result is not written yet stays CONVERTING past its
time: it only shows COMPLETED once its file exists.

A COMPLETED job's result is downloadable for a limited time (``result_seconds``) counted from
:meth:`Job.ready_at`; after it the job still answers COMPLETED, but its result is gone (see
``SandboxState.sweep_expired``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

WAITING = "WAITING"
INPUT_PREPARING = "INPUT_PREPARING"
CONVERTING = "CONVERTING"
OUTPUT_SAVING = "OUTPUT_SAVING"
COMPLETED = "COMPLETED"
ERROR = "ERROR"

# (fraction of the job's duration reached, state shown until then)
_STAGES: tuple[tuple[float, str], ...] = (
    (0.1, WAITING),
    (0.25, INPUT_PREPARING),
    (0.8, CONVERTING),
    (1.0, OUTPUT_SAVING),
)


@dataclass(slots=True, eq=False)
class Job:
    """One job.

    :param job_id: its id (a UUID4 string).
    :param owner: key id of the API key that submitted it.
    :param original_url: the submitted ``img_url`` / ``video_url``.
    :param started: ``time.monotonic()`` at submission.
    :param duration: seconds before the job reaches its final state.
    :param final_status: the state it ends in (COMPLETED, or a failure such as ERROR).
    :param result_name: file name of the result (``result.png``), served under ``/results/``.
    :param result_path: where the result file is, once written; None for a synthetic blob.
    :param result_bytes: size of a synthetic blob result; None for a file result.
    :param work_done: the result is written (or the job needs no work).
    :param work_failed: the enhancement raised: the job ends in ERROR.
    :param finished: ``time.monotonic()`` when the work ended (None while it runs).
    :param expired: the result's lifetime is over and its file was (or is being) deleted.
    """

    job_id: str
    owner: str
    original_url: str
    started: float
    duration: float
    final_status: str = COMPLETED
    result_name: str = ""
    result_path: Path | None = None
    result_bytes: int | None = None
    work_done: bool = False
    work_failed: bool = False
    finished: float | None = None
    expired: bool = False

    def ready_at(self) -> float | None:
        """When the result became (or becomes) downloadable: the end of both the job's duration and
        its work; None while the work runs."""
        if self.finished is None:
            return None
        return max(self.started + self.duration, self.finished)

    def status(self, now: float | None = None) -> str:
        """The state the job is in at ``now`` (default: the current monotonic time)."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        if self.duration > 0 and elapsed < self.duration:
            fraction = elapsed / self.duration
            for limit, state in _STAGES:
                if fraction < limit:
                    return state
        if self.final_status != COMPLETED:
            return self.final_status
        if self.work_failed:
            return ERROR
        return COMPLETED if self.work_done else CONVERTING


    def has_ended(self, now: float | None = None) -> bool:
        """Whether the job is in its final state (a client polling it would see it end)."""
        return self.status(now) not in _RUNNING_STATES


_RUNNING_STATES = frozenset({WAITING, INPUT_PREPARING, CONVERTING, OUTPUT_SAVING})


class JobStore:
    """All jobs the sandbox knows, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def clear(self) -> None:
        self._jobs.clear()

    def __len__(self) -> int:
        return len(self._jobs)

    def count_by_status(self) -> dict[str, int]:
        now = time.monotonic()
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            state = job.status(now)
            counts[state] = counts.get(state, 0) + 1
        return counts
