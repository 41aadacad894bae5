"""Operator that enhances a photo with HitPaw, waiting in the worker or in the triggerer."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_provider_hitpaw.connection import DEFAULT_CONN_ID
from airflow_provider_hitpaw.errors import (
    HitPawJobFailedError,
    HitPawSubmitOutcomeUnknownError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
)
from airflow_provider_hitpaw.events import DEFERRAL_GRACE_SECONDS, completed_job_from_event
from airflow_provider_hitpaw.lineage import dataset_identity
from airflow_provider_hitpaw.links.hitpaw import RES_URL_XCOM_KEY, HitPawResultLink
from airflow_provider_hitpaw.models import (
    PHOTO_OUTPUT_FORMATS,
    build_submit_payload,
    extension_from_url,
    normalize_extension,
    validate_dpi,
    validate_exif,
    validate_extension,
    validate_model_name,
    validate_url,
)
from airflow_provider_hitpaw.resume import JobMemory, StoredJob, submission_fingerprint
from airflow_provider_hitpaw.version_compat import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_hitpaw.api import TaskStatus
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook



class HitPawSubmitOutcomeUnknownFailure(HitPawSubmitOutcomeUnknownError, AirflowFailException):
    """A submission's outcome is unknown, so the task fails *without* Airflow retries.

    It is still a :class:`HitPawSubmitOutcomeUnknownError`. A retry would submit again and, if the
    first submission did create a job, pay twice: HitPaw has no idempotency key and no way to list
    jobs. Check the account's usage, then clear the task to submit again.
    """


def is_template(value: object) -> bool:
    """Whether a value will only be known once Jinja renders it (or an XCom resolves)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return not isinstance(value, (int, float, bool, type(None)))


def output_extension_for(img_url: str, extension: str | None) -> str:
    """The result's extension: the one given, else the photo's own when HitPaw can write it.

    :raises HitPawValidationError: when it cannot be told from the URL, or HitPaw does not write that
        format (HEIF): the caller must then pass ``extension``.
    """
    if extension:
        return extension
    inferred = extension_from_url(img_url)
    if inferred is None:
        raise HitPawValidationError(
            f"Cannot tell the result's format from img_url {img_url[:200]!r} (its path has no known "
            "photo extension): pass extension='.jpg' or '.png'"
        )
    if inferred[1:] not in PHOTO_OUTPUT_FORMATS:
        raise HitPawValidationError(
            f"img_url is a {inferred} file, which HitPaw reads but cannot write as a result: pass "
            "extension='.jpg' or '.png'"
        )
    return inferred


class EnhancePhotoOperator(BaseOperator):
    """Enhance a photo with a HitPaw model and (by default) wait for the result.

    It submits the photo (which costs coins), pushes ``job_id`` and ``consume_coins`` to XCom, then
    waits, either in the worker or, with ``deferrable=True``, in the triggerer. The result can be copied
    to ``output_path``. Its return value (XCom ``return_value``) is a dict with ``job_id``, ``status``,
    ``res_url``, ``original_url``, ``consume_coins`` and ``output_path``.

    On Airflow 3.3+ the job id is also kept in the task instance's ``task_state_store``: a retry of the
    task (after a worker crash, a lost deferral, a failed download, a wait that timed out) reconnects to
    the same job instead of paying again; a retry after the *job* failed submits a new one. Airflow 3.1
    and 3.2 have no such store, so there every try submits anew.

    Literal arguments are checked when the DAG is parsed; templated ones once rendered, before any
    request. A submission whose outcome is unknown (the reply was lost) fails the task without retries
    (:class:`HitPawSubmitOutcomeUnknownFailure`), since a retry could pay twice.

    :param img_url: public http(s) URL of the photo. (templated)
    :param model_name: the HitPaw model, e.g. ``face_2x`` or ``general_4x``. (templated)
    :param extension: the result's extension, e.g. ``.png``; by default the photo's own, taken from
        ``img_url`` (a HEIF photo needs an explicit one). (templated)
    :param exif: keep the photo's EXIF data.
    :param dpi: DPI written into the result, 1 to 10000. (templated)
    :param hitpaw_conn_id: the ``hitpaw`` connection holding the API key.
    :param wait_for_completion: wait for the job to end; with False the task ends right after the
        submission (wait with :class:`~airflow_provider_hitpaw.sensors.hitpaw.TaskStatusSensor`).
    :param deferrable: wait in the triggerer instead of holding a worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: seconds between two status requests.
    :param timeout: seconds the wait may last, counted from the submission (or the reconnection).
    :param output_path: where to copy the result: a local path or an ``ObjectStoragePath`` URL such as
        ``s3://bucket/photos/``; a folder (existing, or ending with ``/``) gets the result's file name.
        (templated)
    :param allow_unknown_model: send a model name this provider does not list.
    :param max_consecutive_errors: transient status errors in a row that end a deferred wait.
    """

    template_fields: Sequence[str] = ("img_url", "model_name", "extension", "dpi", "output_path")
    ui_color = "#d7ecff"
    operator_extra_links = (HitPawResultLink(),)

    def __init__(
        self,
        *,
        img_url: str,
        model_name: str,
        extension: str | None = None,
        exif: bool = False,
        dpi: int | str | None = None,
        hitpaw_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        output_path: str | None = None,
        allow_unknown_model: bool = False,
        max_consecutive_errors: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.img_url = img_url
        self.model_name = model_name
        self.extension = extension
        self.exif = exif
        self.dpi = dpi
        self.hitpaw_conn_id = hitpaw_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.output_path = output_path
        self.allow_unknown_model = allow_unknown_model
        self.max_consecutive_errors = max_consecutive_errors
        self._result: dict[str, Any] | None = None
        self._check_arguments()

    # --- checks ---------------------------------------------------------------------------------

    def _check_arguments(self) -> None:
        """Check at parse time every argument already known (no Jinja, no XCom); no connection lookup."""
        validate_exif(self.exif)
        for name in ("poll_interval", "timeout"):
            value = getattr(self, name)
            # Not NaN or infinity: a NaN timeout made the wait endless, an infinite one broke defer().
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise HitPawValidationError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(self.max_consecutive_errors, int) or self.max_consecutive_errors < 1:
            raise HitPawValidationError(
                f"max_consecutive_errors must be a whole number of at least 1, got {self.max_consecutive_errors!r}"
            )
        spec, model_known = None, False
        if not is_template(self.model_name):
            spec = validate_model_name(self.model_name, allow_unknown_model=self.allow_unknown_model)
            model_known = True
        extension = self.extension
        if not is_template(self.img_url):
            validate_url(self.img_url)
            if extension is None:
                extension = output_extension_for(self.img_url, None)
        if extension is not None and not is_template(extension):
            if model_known:
                validate_extension(extension, spec)
            else:
                normalize_extension(extension)
        if not is_template(self.dpi):
            validate_dpi(self.dpi)

    def _submission_payload(self) -> dict[str, Any]:
        """The rendered arguments, checked in full; raises before any request is sent."""
        validate_url(self.img_url)
        extension = output_extension_for(self.img_url, self.extension or None)
        return build_submit_payload(
            self.img_url,
            self.model_name,
            extension,
            self.exif,
            validate_dpi(self.dpi),
            allow_unknown_model=self.allow_unknown_model,
        )

    # --- execution ------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> HitPawHook:
        from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

        return HitPawHook(self.hitpaw_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        payload = self._submission_payload()
        memory = JobMemory(context)
        fingerprint = submission_fingerprint(payload)

        job, status = self._reconnect(memory, fingerprint)
        if job is None:
            job = self._submit(payload, fingerprint)
            memory.save(job)

        ti = context["ti"]
        ti.xcom_push(key="job_id", value=job.job_id)
        ti.xcom_push(key="consume_coins", value=job.consume_coins)
        ti.xcom_push(key=RES_URL_XCOM_KEY, value="")  # the result link stays empty until the end

        if status is not None and status.is_success:
            return self._finish(context, job.job_id, job.consume_coins, status.to_dict())
        if not self.wait_for_completion:
            return self._summary(job.job_id, job.consume_coins)

        deadline = time.time() + self.timeout
        if self.deferrable:
            from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger

            self.defer(
                trigger=HitPawTaskStatusTrigger(
                    job_id=job.job_id,
                    deadline=deadline,
                    hitpaw_conn_id=self.hitpaw_conn_id,
                    poll_interval=self.poll_interval,
                    max_consecutive_errors=self.max_consecutive_errors,
                ),
                method_name="execute_complete",
                kwargs={"job_id": job.job_id, "consume_coins": job.consume_coins},
                timeout=timedelta(seconds=self.timeout + DEFERRAL_GRACE_SECONDS),
            )
        try:
            status = self.hook.wait_for_completion(job.job_id, self.poll_interval, deadline=deadline)
        except HitPawJobFailedError:
            memory.forget(job.job_id)
            raise
        return self._finish(context, job.job_id, job.consume_coins, status.to_dict())

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
        except HitPawJobFailedError:
            JobMemory(context).forget(job_id)
            raise
        if consume_coins is None:  # resumed without defer()'s kwargs (dag.test() drops them)
            ti = context["ti"]
            consume_coins = ti.xcom_pull(task_ids=ti.task_id, key="consume_coins", map_indexes=ti.map_index)
        status = {
            "job_id": completed["job_id"],
            "status": completed.get("hitpaw_status"),
            "res_url": completed["res_url"],
            "original_url": completed.get("original_url"),
        }
        return self._finish(context, completed["job_id"], consume_coins, status)

    def _reconnect(self, memory: JobMemory, fingerprint: str) -> tuple[StoredJob | None, TaskStatus | None]:
        """The job an earlier try of this task instance submitted, if it is worth reconnecting to."""
        stored = memory.load()
        if stored is None:
            return None, None
        if stored.fingerprint != fingerprint:
            self.log.warning(
                "An earlier try submitted HitPaw job %s with other arguments; submitting anew", stored.job_id
            )
            return None, None
        try:
            status = self.hook.get_task_status(stored.job_id)
        except HitPawTaskNotFoundError:
            self.log.warning("HitPaw no longer knows job %s of an earlier try; submitting anew", stored.job_id)
            memory.forget(stored.job_id)
            return None, None
        if status.is_failure:
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

    def _submit(self, payload: dict[str, Any], fingerprint: str) -> StoredJob:
        try:
            submitted = self.hook.enhance_photo(
                payload["img_url"],
                payload["model_name"],
                payload["extension"],
                payload["exif"],
                payload.get("DPI"),
                allow_unknown_model=self.allow_unknown_model,
            )
        except HitPawSubmitOutcomeUnknownError as err:
            raise HitPawSubmitOutcomeUnknownFailure(
                f"{err.message} The task fails without Airflow retries, which could pay twice; clear it "
                "to submit again.",
                http_status=err.http_status,
                img_url=err.img_url,
                model_name=err.model_name,
            ) from None
        return StoredJob(submitted.job_id, submitted.consume_coins, fingerprint)

    def _finish(
        self, context: Context, job_id: str, consume_coins: int | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        res_url = status["res_url"]
        context["ti"].xcom_push(key=RES_URL_XCOM_KEY, value=res_url)
        output_path = None
        if self.output_path:
            output_path = self.hook.download_result(
                res_url, self.output_path, job_id=job_id, source_url=self.img_url
            )
        result = self._summary(job_id, consume_coins)
        result.update(
            status=status.get("status"),
            res_url=res_url,
            original_url=status.get("original_url"),
            output_path=output_path,
        )
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
        """Input: the photo's URL; outputs: the result's URL and the copy at ``output_path``.

        Returns None when the OpenLineage provider is not installed (it is optional).
        """
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        inputs = [Dataset(*dataset_identity(self.img_url))] if isinstance(self.img_url, str) else []
        outputs = []
        result = self._result or {}
        for location in (result.get("res_url"), result.get("output_path")):
            if location:
                outputs.append(Dataset(*dataset_identity(location)))
        return OperatorLineage(inputs=inputs, outputs=outputs)
