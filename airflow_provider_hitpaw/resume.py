"""Remembering a submitted job across tries of one task instance, so that a retry does not pay again.

Airflow 3.3 gives each task instance a ``task_state_store`` that survives retries. After a submission
the operator writes the job there; a later try of the same task instance (after a worker crash, a lost
deferral, a failed download) reads it back and reconnects to the job instead of submitting anew. A job
that *failed* is forgotten, so the retry submits a new one. Before 3.3 there is no such store: every
try submits, and this module does nothing.

This follows ``airflow.sdk.ResumableJobMixin`` (3.3+) but is not built on it: the mixin cannot be
imported on Airflow 3.1, and its flow (submit, poll, result) has no room for deferring, for pushing
XComs before the wait, or for refusing a stored job whose submission differs from this try's. One code
path that reads ``context.get("task_state_store")`` works on every supported version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_hitpaw.api import JOB_ID_PATTERN

#: The task_state_store key. Renaming it would make in-flight retries submit again.
STATE_KEY = "hitpaw_job"


def submission_fingerprint(payload: dict[str, Any]) -> str:
    """A short digest of a submission body: a stored job is reused only for the same submission."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StoredJob:
    """A submitted job as remembered between tries.

    :param job_id: HitPaw's job id.
    :param consume_coins: what the submission cost.
    :param fingerprint: :func:`submission_fingerprint` of the submission that created it.
    """

    job_id: str
    consume_coins: int
    fingerprint: str

    @classmethod
    def from_stored(cls, value: object) -> StoredJob | None:
        """The job a stored value stands for, or None for anything malformed."""
        if not isinstance(value, dict):
            return None
        job_id, coins, fingerprint = value.get("job_id"), value.get("consume_coins"), value.get("fingerprint")
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
            return None
        if not isinstance(coins, int) or isinstance(coins, bool) or not isinstance(fingerprint, str):
            return None
        return cls(job_id, coins, fingerprint)


class JobMemory:
    """The task instance's memory of its job: ``task_state_store`` when Airflow has one, else nothing.

    :param context: the task's context.
    """

    def __init__(self, context: Any) -> None:
        getter = getattr(context, "get", None)
        self._store = getter("task_state_store") if callable(getter) else None

    @property
    def available(self) -> bool:
        return self._store is not None

    def load(self) -> StoredJob | None:
        if self._store is None:
            return None
        return StoredJob.from_stored(self._store.get(STATE_KEY))

    def save(self, job: StoredJob) -> None:
        if self._store is not None:
            self._store.set(STATE_KEY, asdict(job))

    def forget(self, job_id: str | None = None) -> None:
        """Forget the stored job (only if it is ``job_id``, when given) so the next try submits anew."""
        if self._store is None:
            return
        if job_id is not None:
            stored = self.load()
            if stored is not None and stored.job_id != job_id:
                return
        self._store.delete(STATE_KEY)
