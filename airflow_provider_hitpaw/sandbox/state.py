"""Everything the sandbox remembers: ledger, jobs, submission records, counters and fault settings.

Only the event loop thread touches it; code in other threads goes through the loop.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_provider_hitpaw.sandbox.config import ERROR_SHAPES, SandboxConfig
from airflow_provider_hitpaw.sandbox.faults import FaultInjector
from airflow_provider_hitpaw.sandbox.jobs import COMPLETED, Job, JobStore
from airflow_provider_hitpaw.sandbox.ledger import Ledger

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

    # -- jobs and submissions -------------------------------------------------------------------

    def record_submission(self, record: SubmissionRecord) -> None:
        self.records.append(record)

    def job_dir(self, job_id: str) -> Path:
        """A new directory for one job's result."""
        path = self.results_dir / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def forget_jobs(self) -> None:
        """Forget every job and delete the result files, as a restarted server would; keep the ledger."""
        self.jobs.clear()
        shutil.rmtree(self.results_dir, ignore_errors=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        """Back to the state at start: jobs, records, counters, faults, settings and balances."""
        self.forget_jobs()
        self.records.clear()
        self.requests_by_endpoint.clear()
        self.requests_by_status.clear()
        self.ledger.reset()
        self.faults.reset(self.config.faults)
        self.error_shape = self.config.error_shape
        self.job_seconds = float(self.config.job_seconds)

    # -- admin operations -----------------------------------------------------------------------

    def add_key(self, api_key: str, coins: int) -> dict[str, Any]:
        """Add an API key or set its balance. Returns its key id and balance."""
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string")
        if isinstance(coins, bool) or not isinstance(coins, int) or coins < 0:
            raise ValueError("coins must be a whole number >= 0")
        return {"key_id": self.ledger.set_balance(api_key, coins), "balance": coins}

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
            )
            self.jobs.add(job)
            job_ids.append(job.job_id)
        return job_ids

    def settings(self) -> dict[str, Any]:
        return {"error_shape": self.error_shape, "job_seconds": self.job_seconds}

    def update_settings(
        self, *, error_shape: str | None = None, job_seconds: float | None = None
    ) -> dict[str, Any]:
        """Change the error body shape or the duration of new jobs. Returns the settings."""
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
            "jobs_total": len(self.jobs),
            "requests_by_endpoint": dict(self.requests_by_endpoint),
            "requests_by_status": dict(self.requests_by_status),
            "faults_injected": dict(self.faults.injected),
            "submissions": [asdict(r) for r in self.records],
            "time": time.time(),
        }
