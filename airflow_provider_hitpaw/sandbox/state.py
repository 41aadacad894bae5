"""Everything the sandbox remembers: ledger, jobs, submission records, counters and fault settings.

Only the event loop thread touches it; code in other threads goes through the loop.
"""

from __future__ import annotations

import heapq
import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_provider_hitpaw.sandbox.config import ERROR_SHAPES, SandboxConfig, check_result_seconds
from airflow_provider_hitpaw.sandbox.faults import FaultInjector
from airflow_provider_hitpaw.sandbox.jobs import COMPLETED, Job, JobStore
from airflow_provider_hitpaw.sandbox.ledger import Ledger
from airflow_provider_hitpaw.sandbox.uploads import UploadStore

MAX_SYNTHETIC_JOBS = 1_000_000
MAX_BLOB_BYTES = 1 << 40
_STATUS_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")


@dataclass(slots=True)
class SubmissionRecord:
    """One accepted (charged) submission, as the stats show it.

    :param job_id: the job created.
    :param key_id: key id of the submitting API key (never the key).
    :param img_url: the submitted ``img_url`` (``video_url`` for a video job).
    :param model: the model name as submitted.
    :param coins: coins charged.
    :param created_at: Unix time of the submission.
    :param reply_delivered: False when the reply was dropped, or the client had gone when it was sent.
    """

    job_id: str
    key_id: str
    img_url: str
    model: str
    coins: int
    created_at: float
    reply_delivered: bool = True


class SandboxState:
    """The mutable state of one sandbox server.

    :param config: the server's settings.
    :param results_dir: the directory (owned by the server) where result files are written.
    """

    def __init__(self, config: SandboxConfig, results_dir: Path) -> None:
        self.config = config
        self.results_dir = results_dir
        self.ledger = Ledger(config.balances)
        self.jobs = JobStore()
        self.faults = FaultInjector(config.faults)
        self.records: list[SubmissionRecord] = []
        self.requests_by_endpoint: Counter[str] = Counter()
        self.requests_by_status: Counter[str] = Counter()
        self.error_shape = config.error_shape
        self.job_seconds = float(config.job_seconds)
        self.result_seconds = float(config.result_seconds)
        # (ready_at, job_id) of every job with a folder on disk not swept yet, earliest first. All
        # results share one lifetime, so the earliest ready is the earliest to expire, even after
        # the lifetime is changed.
        self._on_disk: list[tuple[float, str]] = []
        self.results_deleted = 0
        # Presigned uploads live with the results (a restarted server has lost both).
        self.uploads = UploadStore(results_dir / "uploads")
        # Per key id: the jobs that had not ended at the key's latest submission, and the most
        # that were ever running at once (a client's max_in_flight, seen from the server).
        self._running_by_key: dict[str, list[Job]] = {}
        self.peak_in_flight_by_key: dict[str, int] = {}

    # -- jobs and submissions -------------------------------------------------------------------

    def record_submission(self, record: SubmissionRecord) -> None:
        self.records.append(record)

    def job_started(self, job: Job) -> None:
        """Count a new job among its key's running ones (for ``peak_in_flight_by_key``)."""
        now = time.monotonic()
        running = [other for other in self._running_by_key.get(job.owner, ()) if not other.has_ended(now)]
        running.append(job)
        self._running_by_key[job.owner] = running
        if len(running) > self.peak_in_flight_by_key.get(job.owner, 0):
            self.peak_in_flight_by_key[job.owner] = len(running)

    def job_dir(self, job_id: str) -> Path:
        """A new directory for one job's result."""
        path = self.results_dir / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def has_own_dir(self, job: Job) -> bool:
        """Whether the job's result lives in a folder of its own (a synthetic job's does not)."""
        path = job.result_path
        return path is not None and path.parent == self.results_dir / job.job_id

    def work_ended(self, job: Job, now: float | None = None) -> None:
        """Note that a job's work ended (its result written, or failed): its lifetime can start."""
        job.finished = time.monotonic() if now is None else now
        ready = job.ready_at()
        if ready is not None and self.has_own_dir(job):
            heapq.heappush(self._on_disk, (ready, job.job_id))

    def result_expired(self, job: Job, now: float | None = None) -> bool:
        """Whether a job's result lifetime is over (whether or not the sweep has deleted it yet)."""
        if job.expired:
            return True
        ready = job.ready_at()
        if ready is None:
            return False
        return (time.monotonic() if now is None else now) >= ready + self.result_seconds

    def sweep_expired(self, now: float | None = None) -> list[Path]:
        """Mark the results whose lifetime is over as expired and forget their paths.

        :return: the folders to delete (the caller deletes them, off the event loop).
        """
        now = time.monotonic() if now is None else now
        folders = []
        while self._on_disk and self._on_disk[0][0] + self.result_seconds <= now:
            _, job_id = heapq.heappop(self._on_disk)
            job = self.jobs.get(job_id)
            if job is not None:
                job.expired = True
                job.result_path = None
            folders.append(self.results_dir / job_id)
        self.results_deleted += len(folders)
        return folders

    def sweep_interval(self) -> float:
        """Seconds between two sweeps: a quarter of the lifetime, within [0.05, 1]."""
        return min(1.0, max(0.05, self.result_seconds / 4))

    def forget_jobs(self) -> None:
        """Forget every job and delete the result files, as a restarted server would; keep the ledger."""
        self.jobs.clear()
        self._on_disk.clear()
        self._running_by_key.clear()
        shutil.rmtree(self.results_dir, ignore_errors=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        """Back to the state at start: jobs, records, counters, faults, settings and balances."""
        self.forget_jobs()
        self.records.clear()
        self.peak_in_flight_by_key.clear()
        self.requests_by_endpoint.clear()
        self.requests_by_status.clear()
        self.ledger.reset()
        self.faults.reset(self.config.faults)
        self.error_shape = self.config.error_shape
        self.job_seconds = float(self.config.job_seconds)
        self.result_seconds = float(self.config.result_seconds)
        self.results_deleted = 0

    # -- admin operations -----------------------------------------------------------------------

    def add_key(self, api_key: str, coins: int) -> dict[str, Any]:
        """Add an API key or set its balance. Returns its key id and balance."""
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string")
        if isinstance(coins, bool) or not isinstance(coins, int) or coins < 0:
            raise ValueError("coins must be a whole number >= 0")
        return {"key_id": self.ledger.set_balance(api_key, coins), "balance": coins}

    def rotate_key(self, old_key: str, new_key: str) -> dict[str, Any]:
        """Revoke ``old_key`` and give its account ``new_key``. Returns the key id."""
        if not isinstance(old_key, str) or not isinstance(new_key, str):
            raise ValueError("old_key and new_key must be strings")
        return {"key_id": self.ledger.rotate(old_key, new_key)}

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change some fault settings (see :class:`FaultConfig`). Returns all of them."""
        self.faults.reconfigure(self.faults.config.updated(**changes))
        return self.faults.config.to_dict()

    def create_synthetic_jobs(
        self,
        api_key: str,
        count: int = 1,
        complete_after_seconds: float | list[float] = 0.0,
        status: str = COMPLETED,
        result_bytes: int | None = None,
        *,
        original_url: str,
        sample_path: Path,
    ) -> list[str]:
        """Jobs with no image work and no charge, for polling and download benchmarks.

        :param api_key: a known key; only it can see the jobs.
        :param count: how many jobs.
        :param complete_after_seconds: when they reach their final state: one number, or one per job.
        :param status: their final state (an upper-case name, not necessarily a documented one).
        :param result_bytes: size of a generated result; None serves ``sample_path`` instead.
        :param original_url: the ``original_url`` they report.
        :param sample_path: the file served as their result when ``result_bytes`` is None.
        :return: the new job ids.
        :raises ValueError: for an unknown key or an invalid value.
        """
        owner = self.ledger.owner_id(api_key if isinstance(api_key, str) else None)
        if owner is None:
            raise ValueError("api_key is not a known key; add it with /admin/keys first")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SYNTHETIC_JOBS:
            raise ValueError(f"count must be a whole number in [1, {MAX_SYNTHETIC_JOBS}]")
        durations: list[Any] = (
            list(complete_after_seconds)
            if isinstance(complete_after_seconds, list)
            else [complete_after_seconds] * count
        )
        if len(durations) != count or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 86400 for v in durations
        ):
            raise ValueError(
                "complete_after_seconds must be a number in [0, 86400] or a list of count of them"
            )
        if not isinstance(status, str) or not _STATUS_PATTERN.match(status):
            raise ValueError("status must be an upper-case state name such as COMPLETED or ERROR")
        if result_bytes is not None and (
            isinstance(result_bytes, bool)
            or not isinstance(result_bytes, int)
            or not 0 <= result_bytes <= MAX_BLOB_BYTES
        ):
            raise ValueError(f"result_bytes must be a whole number in [0, {MAX_BLOB_BYTES}]")
        blob = result_bytes is not None
        now = time.monotonic()
        job_ids = []
        for duration in durations:
            job = Job(
                job_id=str(uuid.uuid4()),
                owner=owner,
                original_url=original_url,
                started=now,
                duration=float(duration),
                final_status=status,
                result_name="result.bin" if blob else "result.jpg",
                result_path=None if blob else sample_path,
                result_bytes=result_bytes,
                work_done=True,
                finished=now,
            )
            self.jobs.add(job)
            job_ids.append(job.job_id)
        return job_ids

    def settings(self) -> dict[str, Any]:
        return {
            "error_shape": self.error_shape,
            "job_seconds": self.job_seconds,
            "result_seconds": self.result_seconds,
        }

    def update_settings(
        self,
        *,
        error_shape: str | None = None,
        job_seconds: float | None = None,
        result_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Change the error body shape, the duration of new jobs or the lifetime of results (of
        every result, already written or not). Returns the settings."""
        if error_shape is not None:
            if error_shape not in ERROR_SHAPES:
                raise ValueError(f"error_shape must be one of {ERROR_SHAPES}")
            self.error_shape = error_shape
        if job_seconds is not None:
            if (
                isinstance(job_seconds, bool)
                or not isinstance(job_seconds, int | float)
                or not (0 <= job_seconds <= 86400)
            ):
                raise ValueError("job_seconds must be a number in [0, 86400]")
            self.job_seconds = float(job_seconds)
        if result_seconds is not None:
            check_result_seconds(result_seconds)
            self.result_seconds = float(result_seconds)
        return self.settings()

    def stats(self) -> dict[str, Any]:
        """Counters and records, JSON-ready. API keys appear only as key ids."""
        by_key: Counter[str] = Counter(r.key_id for r in self.records)
        by_url: Counter[str] = Counter(r.img_url for r in self.records)
        return {
            "submissions_by_key": dict(by_key),
            "submissions_by_img_url": dict(by_url),
            "coins_charged_by_key": dict(self.ledger.charged),
            "balances": self.ledger.balances_by_id(),
            "jobs_by_state": self.jobs.count_by_status(),
            "peak_in_flight_by_key": dict(self.peak_in_flight_by_key),
            "jobs_total": len(self.jobs),
            "results_kept": len(self._on_disk),
            "results_deleted": self.results_deleted,
            "results_dir": str(self.results_dir),
            "requests_by_endpoint": dict(self.requests_by_endpoint),
            "requests_by_status": dict(self.requests_by_status),
            "faults_injected": dict(self.faults.injected),
            "uploads": self.uploads.stats(),
            "submissions": [asdict(r) for r in self.records],
            "time": time.time(),
        }
