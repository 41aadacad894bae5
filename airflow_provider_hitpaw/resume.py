"""Remembering a submission across tries of one task instance, so that a retry does not pay again.

Airflow 3.3 gives each task instance a ``task_state_store`` that survives retries and clears. Right
before the submission's POST the operator writes an *intent* there (the submission's fingerprint and
the try number, no job id); once HitPaw answers, the job replaces it. A later try of the same task
instance reads the entry back:

- a job: it reconnects to the job instead of submitting anew (a job that failed for a reason a new
  job can get past is forgotten, so that the try submits a new one);
- an intent: the earlier try was stopped (a timeout, a kill, a crash) while its submission may have
  been in flight, so whether HitPaw created and charged a job is unknown. It is never resubmitted on
  its own: the task fails without retries until the user asks for a new job.

Before 3.3 there is no such store: every try submits, and this module does nothing.

This follows ``airflow.sdk.ResumableJobMixin`` (3.3+) but is not built on it: the mixin cannot be
imported on Airflow 3.1, and its flow (submit, poll, result) has no room for deferring, for pushing
XComs before the wait, or for refusing a stored job whose submission differs from this try's. One code
path that reads ``context.get("task_state_store")`` works on every supported version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_provider_hitpaw.validation import JOB_ID_PATTERN

#: The task_state_store key. Renaming it would make in-flight retries submit again.
STATE_KEY = "hitpaw_job"


def submission_fingerprint(payload: dict[str, Any]) -> str:
    """A short digest of a submission body: a stored job is reused only for the same submission."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    import hashlib  # on first use: DAG files that only build operators need not load it

    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StoredJob:
    """A submitted job as remembered between tries.

    :param job_id: HitPaw's job id.
    :param consume_coins: what the submission cost.
    :param fingerprint: :func:`submission_fingerprint` of the submission that created it.
    :param try_number: the try that submitted it (0 when not known: written by an older version).
    """

    job_id: str
    consume_coins: int
    fingerprint: str
    try_number: int = 0

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
        return cls(job_id, coins, fingerprint, _try_number(value))


@dataclass(frozen=True)
class SubmissionIntent:
    """A submission that was about to be sent, and whose reply was never recorded.

    :param fingerprint: :func:`submission_fingerprint` of the submission.
    :param try_number: the try that sent it.
    :param started_at: when it was about to be sent (ISO 8601, UTC).
    """

    fingerprint: str
    try_number: int
    started_at: str

    @classmethod
    def from_stored(cls, value: object) -> SubmissionIntent | None:
        if not isinstance(value, dict) or value.get("submitting") is not True or "job_id" in value:
            return None
        fingerprint, started_at = value.get("fingerprint"), value.get("started_at")
        if not isinstance(fingerprint, str) or not isinstance(started_at, str):
            return None
        return cls(fingerprint, _try_number(value), started_at[:40])

    def to_stored(self) -> dict[str, Any]:
        return {"submitting": True, **asdict(self)}


def _try_number(value: dict[str, Any]) -> int:
    number = value.get("try_number")
    if isinstance(number, int) and not isinstance(number, bool) and number >= 0:
        return number
    return 0


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

    def load(self) -> StoredJob | SubmissionIntent | None:
        """The stored job or intent; None when there is none (or it is malformed)."""
        if self._store is None:
            return None
        value = self._store.get(STATE_KEY)
        return StoredJob.from_stored(value) or SubmissionIntent.from_stored(value)

    def record_intent(self, fingerprint: str, try_number: int) -> None:
        """Write, before the POST, that a submission is about to be sent (it replaces a stored job)."""
        if self._store is not None:
            started_at = datetime.now(UTC).isoformat(timespec="seconds")
            self._store.set(STATE_KEY, SubmissionIntent(fingerprint, try_number, started_at).to_stored())

    def save(self, job: StoredJob) -> None:
        """Write the submitted job (it replaces the intent)."""
        if self._store is not None:
            self._store.set(STATE_KEY, asdict(job))

    def forget(self, job_id: str | None = None) -> None:
        """Forget the stored job (only if it is ``job_id``, when given) so the next try submits anew."""
        if self._store is None:
            return
        if job_id is not None:
            stored = self.load()
            if stored is not None and getattr(stored, "job_id", None) != job_id:
                return
        self._store.delete(STATE_KEY)


#: The task_state_store key of the photo an operator uploaded (``img_path``), apart from the job's.
UPLOAD_STATE_KEY = "hitpaw_upload"


@dataclass(frozen=True)
class StoredUpload:
    """An ``img_path`` uploaded by an earlier try, reused while HitPaw still keeps it (7 days).

    :param img_path: the path or URL that was uploaded, as rendered.
    :param access_url: where HitPaw reads it (the submission's ``img_url``).
    :param object_key: its path in HitPaw's storage.
    :param uploaded_at: Unix time of the upload.
    """

    img_path: str
    access_url: str
    object_key: str
    uploaded_at: float

    @classmethod
    def from_stored(cls, value: object) -> StoredUpload | None:
        if not isinstance(value, dict):
            return None
        img_path, access_url = value.get("img_path"), value.get("access_url")
        object_key, uploaded_at = value.get("object_key"), value.get("uploaded_at")
        if not isinstance(img_path, str) or not isinstance(access_url, str) or not isinstance(object_key, str):
            return None
        if not access_url.startswith(("https://", "http://")):
            return None
        if isinstance(uploaded_at, bool) or not isinstance(uploaded_at, int | float):
            return None
        return cls(img_path, access_url, object_key, float(uploaded_at))


class UploadMemory:
    """The task instance's memory of its uploaded photo, under :data:`UPLOAD_STATE_KEY` (Airflow 3.3+).

    Kept apart from the job's record (:class:`JobMemory`), which it never touches.

    :param context: the task's context.
    """

    def __init__(self, context: Any) -> None:
        getter = getattr(context, "get", None)
        self._store = getter("task_state_store") if callable(getter) else None

    def load(self) -> StoredUpload | None:
        if self._store is None:
            return None
        return StoredUpload.from_stored(self._store.get(UPLOAD_STATE_KEY))

    def save(self, upload: StoredUpload) -> None:
        if self._store is not None:
            self._store.set(UPLOAD_STATE_KEY, asdict(upload))
