"""What the HitPaw operators that submit one job share: remembering the job across tries and clears
(reconnecting instead of paying twice), the submission's money-safe rules, waiting in the worker or the
triggerer, the result's download, the result link and lineage.

:class:`HitPawJobOperator` is the base of
:class:`~airflow_provider_hitpaw.operators.hitpaw.EnhancePhotoOperator` and
:class:`~airflow_provider_hitpaw.operators.video.EnhanceVideoOperator`; a subclass builds the checked
submission and sends it (:meth:`HitPawJobOperator._send`).
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_provider_hitpaw import labels
from airflow_provider_hitpaw.connection_fields import DEFAULT_CONN_ID
from airflow_provider_hitpaw.downloads import (
    check_destination,
    check_writable_destination,
    result_not_saved_error,
)
from airflow_provider_hitpaw.errors import (
    HitPawError,
    HitPawJobFailedError,
    HitPawJobFailedFailure,
    HitPawSubmitOutcomeUnknownError,
    HitPawSubmitOutcomeUnknownFailure,
    HitPawTaskNotFoundError,
    HitPawValidationError,
    HitPawWaitTimeoutError,
)
from airflow_provider_hitpaw.events import (
    DEFERRAL_GRACE_SECONDS,
    MAX_WAIT_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
    CompletedJob,
    completed_job_from_event,
    is_final_failure,
    job_failed_error,
)
from airflow_provider_hitpaw.lineage import dataset_identity
from airflow_provider_hitpaw.links.hitpaw import RES_URL_XCOM_KEY
from airflow_provider_hitpaw.resume import (
    STATE_KEY,
    JobMemory,
    StoredJob,
    SubmissionIntent,
    submission_fingerprint,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_hitpaw.api import SubmittedJob, TaskStatus
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

#: The run conf key that asks for a new job (like ``new_job=True``) in every task of the run.
NEW_JOB_CONF_KEY = "hitpaw_new_job"
_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"", "false", "no", "off", "0", "none", "null"})
#: How to get a new job where a plain clear reconnects to the remembered one (or refuses to guess).
NEW_JOB_HINT = (
    "To pay for a new job instead, clear the task with new_job=True on the operator (it is templated, "
    f"e.g. \"{{{{ dag_run.conf.get('{NEW_JOB_CONF_KEY}') }}}}\") or in a run triggered with conf "
    f"{{\"{NEW_JOB_CONF_KEY}\": true}}, or delete this task instance's task state key '{STATE_KEY}' "
    f"(REST API: DELETE .../taskInstances/<task_id>/state-store/{STATE_KEY}) and then clear it."
)


def parse_flag(value: object, name: str) -> bool:
    """A yes/no setting given as a bool or as rendered text ("true", "false", "None", "")."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise HitPawValidationError(f"{name} must be true or false, got {str(value)[:50]!r}")


def check_poll_interval(value: object, name: str) -> float:
    """A literal poll interval: a number of seconds, at least :data:`MIN_POLL_INTERVAL_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise HitPawValidationError(f"{name} must be a positive number of seconds, got {value!r}")
    if value < MIN_POLL_INTERVAL_SECONDS:
        raise HitPawValidationError(
            f"{name} must be at least {MIN_POLL_INTERVAL_SECONDS:g} s, got {value!r}: HitPaw advises "
            "polling every 2 to 5 s for photos and 5 to 10 s for videos, and each poll is a request against its "
            "rate limit"
        )
    return float(value)


def check_wait_timeout(value: object, name: str = "timeout") -> float:
    """A wait's timeout: a positive number of seconds, at most :data:`MAX_WAIT_SECONDS` (30 days)."""
    # Not NaN or infinity: a NaN timeout made the wait endless, an infinite one broke defer().
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise HitPawValidationError(f"{name} must be a positive number of seconds, got {value!r}")
    if value > MAX_WAIT_SECONDS:
        raise HitPawValidationError(
            f"{name} must be at most {MAX_WAIT_SECONDS} s (30 days; HitPaw keeps results 8 days), got {value!r}"
        )
    return float(value)


def runtime_poll_interval(value: object, name: str, log: Any) -> float:
    """A poll interval met at run time: refused if not a positive number, raised to the floor if lower."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise HitPawValidationError(f"{name} must be a positive number of seconds, got {value!r}")
    if value < MIN_POLL_INTERVAL_SECONDS:
        log.warning("%s %r is below the floor of %g s; polling every %g s", name, value,
                    MIN_POLL_INTERVAL_SECONDS, MIN_POLL_INTERVAL_SECONDS)
        return MIN_POLL_INTERVAL_SECONDS
    return float(value)


def as_url_path(img_path: object) -> str:
    """A file to upload (``img_path``, ``video_path``) as a URL-like string whose last segment is the
    file's name (for the result's name, the label and the extension): a local path gets
    percent-encoded into a ``file:`` URI."""
    text = str(img_path)
    if "://" in text or text[:5].lower() == "file:":
        return text
    from pathlib import Path

    try:
        return Path(text).absolute().as_uri()
    except ValueError:
        return text


def is_template(value: object) -> bool:
    """Whether a value will only be known once Jinja renders it (or an XCom resolves)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return not isinstance(value, (int, float, bool, type(None)))



class HitPawJobOperator(BaseOperator):
    """The base of the operators that submit one HitPaw job and (by default) wait for its result.

    It takes the arguments every such operator has, with their defaults (a subclass names in its own
    signature only those whose default differs; the ``:param:`` lists are the subclasses'). A subclass
    sets ``model_name`` and the names of its source's two arguments (:attr:`source_url_field`,
    :attr:`source_path_field`), checks its literal arguments when built, and implements
    :meth:`_submission_payload`, :meth:`_read_local_source`, :meth:`_check_price` and :meth:`_send`;
    :meth:`execute` uploads a private source, builds the checked submission and hands it to
    :meth:`_run_job`.
    """

    #: What the job enhances, for messages.
    media_noun = "photo"
    #: The argument holding the source's public URL (templated), e.g. ``img_url``.
    source_url_field: str
    #: The argument holding a private file to upload first instead, e.g. ``img_path``.
    source_path_field: str

    model_name: str

    def __init__(
        self,
        *,
        hitpaw_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        output_path: str | None = None,
        allow_unknown_model: bool = False,
        max_consecutive_errors: int = 5,
        new_job: bool | str = False,
        preflight: bool = True,
        max_coins: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hitpaw_conn_id = hitpaw_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.output_path = output_path
        self.allow_unknown_model = allow_unknown_model
        self.max_consecutive_errors = max_consecutive_errors
        self.new_job = new_job
        self.preflight = preflight
        self.max_coins = max_coins
        self._result: dict[str, Any] | None = None
        self._access_url: str | None = None  # the private file's upload, once made: the submitted URL

    # --- what a subclass implements ---------------------------------------------------------------

    def _submission_payload(self) -> dict[str, Any]:
        """The rendered arguments, checked in full; raises before any request is sent."""
        raise NotImplementedError

    def _read_local_source(self, path: Any) -> Any:
        """What ``preflight`` reads from a private file before its upload (None when it cannot)."""
        raise NotImplementedError

    def _check_price(self, payload: dict[str, Any], local: Any) -> None:
        """The checks before paying (``preflight``, ``max_coins``) on the payload about to be sent.

        :param local: what :meth:`_read_local_source` read, if anything.
        :raises HitPawValidationError: the refusal.
        """
        raise NotImplementedError

    def _send(self, payload: dict[str, Any]) -> SubmittedJob:
        """POST the checked submission (which costs coins)."""
        raise NotImplementedError

    # --- the source ---------------------------------------------------------------------------------

    @property
    def _source_url(self) -> str | None:
        return getattr(self, self.source_url_field)  # type: ignore[no-any-return]

    @property
    def _source_path(self) -> str | None:
        return getattr(self, self.source_path_field)  # type: ignore[no-any-return]

    def _submitted_url(self) -> str | None:
        """The media URL the submission carries (for messages and errors)."""
        return self._source_url

    def _source_location(self) -> str | None:
        """Where the source is: its URL, or the path it was uploaded from (for the result's name, the
        label and lineage)."""
        return as_url_path(self._source_path) if self._source_path else self._source_url

    def _check_source(self) -> None:
        """Exactly one of the source's URL and path (a rendered empty string counts as none)."""
        source_url, source_path = self._source_url, self._source_path
        has_url = source_url not in (None, "", self._access_url)  # not the upload set by execute
        has_path = source_path is not None and source_path != ""
        if has_url == has_path:
            raise HitPawValidationError(
                f"Give exactly one of {self.source_url_field} (a public URL) and {self.source_path_field} "
                f"(a file to upload first), got {'both' if has_url else 'neither'}"
            )

    def _fingerprinted(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What the submission's fingerprint is taken of: with a private file, its path rather than the
        upload's ``access_url`` (a new upload on a retry must not look like another submission)."""
        if self._source_path:
            return {**payload, self.source_url_field: None, self.source_path_field: str(self._source_path)}
        return payload

    def _check_common_arguments(self) -> None:
        """The literal arguments every job operator has, checked at parse time."""
        check_poll_interval(self.poll_interval, "poll_interval")
        check_wait_timeout(self.timeout)
        if not is_template(self.new_job):
            parse_flag(self.new_job, "new_job")
        if not isinstance(self.max_consecutive_errors, int) or self.max_consecutive_errors < 1:
            raise HitPawValidationError(
                f"max_consecutive_errors must be a whole number of at least 1, got {self.max_consecutive_errors!r}"
            )
        if not isinstance(self.preflight, bool):
            raise HitPawValidationError(f"preflight must be True or False, got {self.preflight!r}")
        if self.max_coins is not None and (
            isinstance(self.max_coins, bool) or not isinstance(self.max_coins, int) or self.max_coins < 0
        ):
            raise HitPawValidationError(f"max_coins must be a whole number of coins or None, got {self.max_coins!r}")

    def _check_before_paying(self, payload: dict[str, Any], local: Any = None) -> HitPawValidationError | None:
        """:meth:`_check_price` on the payload about to be sent (the estimate is logged).

        :param local: what :meth:`_read_local_source` read, if anything.
        :return: the refusal, if any, for :meth:`_run_job` to raise right before a new submission:
            nothing is sent then. It is not raised when the try reconnects to a job an earlier try
            already paid for (a signed URL that expired since, or a changed price, must not lose that job).
        """
        try:
            self._check_price(payload, local)
        except HitPawValidationError as refusal:
            return refusal
        return None

    def execute(self, context: Context) -> dict[str, Any]:
        labels.check_map_index(self, context)  # before any request: a label Airflow could not store
        local = None
        source_path = self._source_path
        if source_path:  # a private file: uploaded first (free), its access_url is submitted
            self._check_source()
            self._check_upload(str(source_path))
            if self.preflight:  # from the file itself, before the upload
                local = self._read_local_source(source_path)
            self._access_url = self._uploaded_url(context, source_path, photos_only=self.media_noun == "photo")
            setattr(self, self.source_url_field, self._access_url)
        payload = self._submission_payload()
        refusal = self._check_before_paying(payload, local)
        return self._run_job(context, payload, refusal)

    def _check_upload(self, name: str) -> None:
        """Refuse, without any I/O, a private file HitPaw would not take (by default nothing beyond what
        the upload itself checks)."""

    @cached_property
    def hook(self) -> HitPawHook:
        from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

        return HitPawHook(self.hitpaw_conn_id)

    def _uploaded_url(self, context: Context, path: Any, *, photos_only: bool) -> str:
        """The ``access_url`` of a file to upload (``img_path``, ``video_path``): uploaded now, or by an
        earlier try and still kept.

        Free: an upload costs no coins. Everything that can be checked without the file is checked
        first (the type against HitPaw's whitelist, ``output_path``'s form).
        """
        from airflow_provider_hitpaw.resume import StoredUpload, UploadMemory
        from airflow_provider_hitpaw.uploads import check_upload_name, upload_still_usable

        img_path = str(path)
        check_upload_name(img_path, photos_only=photos_only)
        if self.output_path:
            check_destination(self.output_path)
        memory = UploadMemory(context)
        try:
            stored = memory.load()
        except Exception as err:
            self.log.warning("Could not read task_state_store (%s: %s); uploading", type(err).__name__, err)
            stored = None
        if stored is not None and stored.img_path == img_path and upload_still_usable(stored.uploaded_at):
            self.log.info("Reusing the upload of %s by an earlier try: %s", img_path, stored.access_url)
            return stored.access_url
        uploaded = self.hook.upload_file(path)
        try:
            memory.save(StoredUpload(img_path, uploaded.access_url, uploaded.object_key, time.time()))
        except Exception as err:
            self.log.warning("Could not keep the upload in task_state_store (%s: %s)", type(err).__name__, err)
        return uploaded.access_url


    def _run_job(self, context: Context, payload: dict[str, Any], refusal: HitPawValidationError | None) -> dict[str, Any]:
        """Submit ``payload`` (or reconnect to the job an earlier try paid for), then wait and finish.

        :param refusal: what the checks before paying refused, raised only before a new submission.
        """
        # Every check that can fail runs before the first request, so before anything is paid.
        poll_interval = runtime_poll_interval(self.poll_interval, "poll_interval", self.log)
        timeout = check_wait_timeout(self.timeout)
        new_job = self._new_job_requested(context)
        memory = JobMemory(context)
        fingerprint = submission_fingerprint(self._fingerprinted(payload))
        ti = context["ti"]

        job, status = self._reconnect(memory, fingerprint, ti, new_job)
        submitted_now = job is None
        intent_kept = False
        if job is None:
            if refusal is not None:  # raised only before paying: a job an earlier try paid for is kept
                raise refusal
            if self.output_path:  # the worker's own disk or storage: a result it cannot keep is money lost
                check_writable_destination(self.output_path)
            job, intent_kept = self._submit(payload, fingerprint, memory, ti)
        try:
            # The job id goes to XCom first: if the store cannot keep it, the id is still where a user
            # (or a TaskStatusSensor) can find it.
            ti.xcom_push(key="job_id", value=job.job_id)
            ti.xcom_push(key="consume_coins", value=job.consume_coins)
            ti.xcom_push(key=RES_URL_XCOM_KEY, value="")  # the result link stays empty until the end
        finally:
            if submitted_now:  # even when interrupted here: a retry should find the job, not the intent
                self._remember(memory, job, intent_kept)

        if status is not None and status.is_success:
            return self._finish(context, CompletedJob.from_status(status), job.consume_coins)
        if not self.wait_for_completion:
            return self._summary(job.job_id, job.consume_coins)

        deadline = time.time() + timeout
        if self.deferrable:
            from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

            self.defer(
                trigger=HitPawTaskStatusTrigger(
                    job_id=job.job_id,
                    deadline=deadline,
                    hitpaw_conn_id=self.hitpaw_conn_id,
                    poll_interval=poll_interval,
                    max_consecutive_errors=self.max_consecutive_errors,
                ),
                method_name="execute_complete",
                kwargs={"job_id": job.job_id, "consume_coins": job.consume_coins},
                timeout=timedelta(seconds=timeout + DEFERRAL_GRACE_SECONDS),
            )
        try:
            status = self.hook.wait_for_completion(job.job_id, poll_interval, deadline=deadline)
        except HitPawJobFailedError as err:
            raise self._job_failed(memory, job.job_id, err) from None
        except HitPawWaitTimeoutError as err:
            raise self._wait_timed_out(err) from None
        return self._finish(context, CompletedJob.from_status(status), job.consume_coins)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        job_id: str | None = None,
        consume_coins: int | None = None,
    ) -> dict[str, Any]:
        """Resume after the trigger: the result on ``success``, the typed error otherwise."""
        try:
            completed = completed_job_from_event(event, job_id=job_id)
        except HitPawJobFailedError as err:
            raise self._job_failed(JobMemory(context), job_id or err.job_id, err) from None
        except HitPawWaitTimeoutError as err:
            raise self._wait_timed_out(err) from None
        if consume_coins is None:  # resumed without defer()'s kwargs (dag.test() drops them)
            ti = context["ti"]
            consume_coins = ti.xcom_pull(task_ids=ti.task_id, key="consume_coins", map_indexes=ti.map_index)
        return self._finish(context, completed, consume_coins)

    # --- remembering the job across tries and clears ----------------------------------------------------

    def _new_job_requested(self, context: Context) -> bool:
        """Whether ``new_job`` (or the run conf's ``hitpaw_new_job``) asks for a new job."""
        if parse_flag(self.new_job, "new_job"):
            return True
        dag_run = context.get("dag_run")
        run_conf = getattr(dag_run, "conf", None)
        if isinstance(run_conf, dict) and NEW_JOB_CONF_KEY in run_conf:
            return parse_flag(run_conf[NEW_JOB_CONF_KEY], f"the run conf's {NEW_JOB_CONF_KEY}")
        return False

    def _first_try_of_this_clear(self, ti: Any) -> int | None:
        """The try number that started the current run or clear of the task instance.

        Airflow sets ``max_tries`` to the last try number plus ``retries`` when it clears a task
        instance (and to ``retries`` for a new run), as ``get_first_reschedule_date`` relies on too.
        """
        max_tries = getattr(ti, "max_tries", None)
        if not isinstance(max_tries, int) or isinstance(max_tries, bool):
            return None
        return max_tries - int(self.retries or 0) + 1

    def _reconnect(
        self, memory: JobMemory, fingerprint: str, ti: Any, new_job: bool
    ) -> tuple[StoredJob | None, TaskStatus | None]:
        """The job an earlier try of this task instance submitted, if it is worth reconnecting to.

        :raises HitPawSubmitOutcomeUnknownFailure: an earlier try may have submitted, with no reply kept.
        :raises HitPawJobFailedFailure: the stored job ended in NSFW, REJECT or CANCEL.
        """
        stored = memory.load()
        if stored is None:
            return None, None
        if new_job:
            first_try = self._first_try_of_this_clear(ti)
            if first_try is None:
                self.log.warning("new_job is ignored: this Airflow does not tell which try started the clear")
            elif stored.try_number < first_try:
                what = f"HitPaw job {stored.job_id}" if isinstance(stored, StoredJob) else "the submission"
                self.log.warning(
                    "new_job is set: forgetting %s of an earlier run of this task instance and submitting "
                    "a new job (which costs coins again)", what,
                )
                memory.forget()
                return None, None
        if stored.fingerprint != fingerprint:
            what = f"HitPaw job {stored.job_id}" if isinstance(stored, StoredJob) else "a submission"
            self.log.warning("An earlier try sent %s with other arguments; submitting anew", what)
            return None, None
        if isinstance(stored, SubmissionIntent):
            raise HitPawSubmitOutcomeUnknownFailure(
                f"An earlier try of this task (try {stored.try_number}, at {stored.started_at}) was stopped "
                f"while submitting {str(self._submitted_url())[:200]} with model {self.model_name}, before HitPaw's reply "
                "was recorded: HitPaw may or may not have created and charged a job. It is not submitted "
                "again automatically (HitPaw has no idempotency key and no job listing). Check the "
                f"account's usage for a job made around that time. {NEW_JOB_HINT}",
                img_url=self._submitted_url(),
                model_name=self.model_name,
            )
        try:
            status = self.hook.get_task_status(stored.job_id)
        except HitPawTaskNotFoundError:
            self.log.warning("HitPaw no longer knows job %s of an earlier try; submitting anew", stored.job_id)
            memory.forget(stored.job_id)
            return None, None
        except HitPawJobFailedError as err:  # code 110400003: "The task failed, please try again"
            self.log.warning("HitPaw says job %s of an earlier try failed (%s); submitting anew", stored.job_id, err)
            memory.forget(stored.job_id)
            return None, None
        if status.is_failure:
            if is_final_failure(status.raw_status):
                raise self._job_failed(
                    memory,
                    stored.job_id,
                    job_failed_error(
                        f"HitPaw job {stored.job_id} of an earlier try ended in {status.raw_status}",
                        job_id=stored.job_id,
                        job_status=status.raw_status,
                    ),
                )
            self.log.warning(
                "HitPaw job %s of an earlier try ended in %s; submitting anew", stored.job_id, status.raw_status
            )
            memory.forget(stored.job_id)
            return None, None
        self.log.info(
            "Reconnecting to HitPaw job %s of an earlier try (status %s); not submitting again",
            stored.job_id,
            status.raw_status,
        )
        return stored, status

    def _submit(
        self, payload: dict[str, Any], fingerprint: str, memory: JobMemory, ti: Any
    ) -> tuple[StoredJob, bool]:
        """Submit (which costs coins); returns the job and whether an intent was written before the POST."""
        intent_kept = False
        try_number = getattr(ti, "try_number", 0)
        try_number = try_number if isinstance(try_number, int) and not isinstance(try_number, bool) else 0
        if memory.available:
            try:
                memory.record_intent(fingerprint, try_number)
                intent_kept = True
            except Exception as err:
                self.log.warning(
                    "Could not write to task_state_store (%s: %s); submitting all the same. If this try is "
                    "stopped before HitPaw answers, the next try cannot tell whether a job was made.",
                    type(err).__name__, err,
                )
        try:
            submitted = self._send(payload)
        except HitPawSubmitOutcomeUnknownError as err:
            raise HitPawSubmitOutcomeUnknownFailure(
                f"{err.message} The task fails without Airflow retries, which could pay twice. {NEW_JOB_HINT}",
                http_status=err.http_status,
                img_url=err.img_url,
                model_name=err.model_name,
            ) from None
        except HitPawError:
            # Refused before any job was made (4xx, 429, no connection): a retry may submit again.
            self._forget_quietly(memory)
            raise
        except BaseException as err:
            # An execution_timeout (AirflowTaskTimeout), a kill signal or any other interruption while
            # the request may have been in flight: Airflow would retry most of them, and pay again.
            raise HitPawSubmitOutcomeUnknownFailure(
                f"The submission of {str(self._submitted_url())[:200]} with model {self.model_name} was interrupted "
                f"({type(err).__name__}: {str(err)[:200] or 'no message'}) before HitPaw's reply arrived: "
                "HitPaw may or may not have created and charged a job. The task fails without Airflow "
                "retries, which could pay twice; check the account's usage for a job made around now. "
                f"{NEW_JOB_HINT}",
                img_url=self._submitted_url(),
                model_name=self.model_name,
            ) from err
        return StoredJob(submitted.job_id, submitted.consume_coins, fingerprint, try_number), intent_kept

    def _remember(self, memory: JobMemory, job: StoredJob, intent_kept: bool) -> None:
        """Store the job for later tries; a store that refuses is logged, not fatal (the job is paid for)."""
        try:
            memory.save(job)
        except Exception as err:
            retry = (
                "stop with HitPawSubmitOutcomeUnknownFailure rather than pay again"
                if intent_kept
                else "submit (and pay for) a new job"
            )
            self.log.warning(
                "Could not keep HitPaw job %s in task_state_store (%s: %s). This try waits for it as usual "
                "(its id is in the XCom 'job_id'), but a retry could not reconnect to it: it would %s.",
                job.job_id, type(err).__name__, err, retry,
            )

    def _forget_quietly(self, memory: JobMemory, job_id: str | None = None) -> None:
        try:
            memory.forget(job_id)
        except Exception as err:
            self.log.warning("Could not clear task_state_store (%s: %s)", type(err).__name__, err)

    def _job_failed(self, memory: JobMemory, job_id: str | None, err: HitPawJobFailedError) -> HitPawError:
        """The error to end the task with, once its job failed; forgets the job unless the failure is final."""
        if isinstance(err, HitPawJobFailedFailure) or is_final_failure(err.job_status):
            # Kept in the store: a retry or a plain clear reports the same failure without paying.
            return HitPawJobFailedFailure(
                f"{err.message}. Not retried: a new job for the same {self.media_noun} would most likely end the same "
                f"way, and it would be paid for. {NEW_JOB_HINT}",
                job_id=err.job_id or job_id,
                job_status=err.job_status,
                code=err.code,
                http_status=err.http_status,
            )
        self._forget_quietly(memory, job_id)  # ERROR, TIMEOUT...: the next try submits a new job
        return err

    @staticmethod
    def _wait_timed_out(err: HitPawWaitTimeoutError) -> HitPawWaitTimeoutError:
        return HitPawWaitTimeoutError(
            f"{err.message}. A retry or a plain clear reconnects to the same job. {NEW_JOB_HINT}",
            job_id=err.job_id,
        )

    def _finish(self, context: Context, completed: CompletedJob, consume_coins: int | None) -> dict[str, Any]:
        res_url = completed.res_url
        context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value=res_url)
        output_path = None
        if self.output_path:
            try:
                output_path = self.hook.download_result(
                    res_url,
                    self.output_path,
                    job_id=completed.job_id,
                    source_url=self._source_location(),
                )
            except Exception as err:  # paid for: say which job, where its result is and what a clear does
                from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS

                raise result_not_saved_error(
                    completed.job_id, res_url, self.output_path, err, clear_reconnects=AIRFLOW_V_3_3_PLUS
                ) from err
        result = {**completed.to_xcom(), "consume_coins": consume_coins, "output_path": output_path}
        self._result = result
        return result

    @staticmethod
    def _summary(job_id: str, consume_coins: int | None) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "status": None,
            "res_url": None,
            "original_url": None,
            "consume_coins": consume_coins,
            "output_path": None,
        }

    # --- lineage --------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input: the source's URL (or path); outputs: the result's URL and the copy at ``output_path``.

        Returns None when the OpenLineage provider is not installed (it is optional).
        """
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        source = self._source_location()
        inputs = [Dataset(*dataset_identity(source))] if isinstance(source, str) else []
        outputs = []
        result = self._result or {}
        for location in (result.get("res_url"), result.get("output_path")):
            if location:
                outputs.append(Dataset(*dataset_identity(location)))
        return OperatorLineage(inputs=inputs, outputs=outputs)
