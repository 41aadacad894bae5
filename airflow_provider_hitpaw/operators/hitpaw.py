"""Operator that enhances a photo with HitPaw, waiting in the worker or in the triggerer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_hitpaw import labels
from airflow_provider_hitpaw.downloads import check_destination
from airflow_provider_hitpaw.errors import (
    HitPawJobFailedFailure,
    HitPawSubmitOutcomeUnknownFailure,
    HitPawValidationError,
)
from airflow_provider_hitpaw.links.hitpaw import HitPawResultLink
from airflow_provider_hitpaw.models import (
    PHOTO_OUTPUT_FORMATS,
    build_submit_payload,
    extension_from_url,
    validate_dpi,
    validate_exif,
    validate_extension,
    validate_model_name,
    validate_url,
)
from airflow_provider_hitpaw.operators.job import (  # the names this module had before they moved
    NEW_JOB_CONF_KEY,
    NEW_JOB_HINT,
    HitPawJobOperator,
    check_poll_interval,
    check_wait_timeout,
    is_template,
    parse_flag,
    runtime_poll_interval,
)
from airflow_provider_hitpaw.operators.job import (
    as_url_path as _as_url_path,
)

if TYPE_CHECKING:

    from airflow_provider_hitpaw.api import SubmittedJob

__all__ = [
    "NEW_JOB_CONF_KEY",
    "NEW_JOB_HINT",
    "EnhancePhotoOperator",
    "HitPawJobFailedFailure",
    "HitPawSubmitOutcomeUnknownFailure",
    "check_poll_interval",
    "check_wait_timeout",
    "is_template",
    "parse_flag",
    "runtime_poll_interval",
]

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


class EnhancePhotoOperator(HitPawJobOperator):
    """Enhance a photo with a HitPaw model and (by default) wait for the result.

    It submits the photo (which costs coins), pushes ``job_id`` and ``consume_coins`` to XCom, then
    waits, either in the worker or, with ``deferrable=True``, in the triggerer. The result can be copied
    to ``output_path``. Its return value (XCom ``return_value``) is a dict with ``job_id``, ``status``,
    ``res_url``, ``original_url``, ``consume_coins`` and ``output_path``.

    On Airflow 3.3+ the submission is also kept in the task instance's ``task_state_store`` (an intent
    right before the POST, the job id right after): a retry of the task (after a worker crash, a lost
    deferral, a failed download, a wait that timed out) and a plain clear reconnect to the same job
    instead of paying again; after a job failed with ERROR, ERROR_INTERRUPTION or TIMEOUT the next try
    submits a new one. Airflow 3.1 and 3.2 have no such store, so there every try submits anew.

    Nothing is ever resubmitted on its own when a submission's outcome is unknown: a lost reply, or a
    try stopped (``execution_timeout``, a kill signal) while the submission was in flight, fails the
    task without retries (:class:`HitPawSubmitOutcomeUnknownFailure`), and so does every later try
    that finds such a submission. A job that ends in NSFW, REJECT or CANCEL fails the task without
    retries too (:class:`~airflow_provider_hitpaw.events.HitPawJobFailedFailure`): a new job would pay
    for the same refusal. In both cases ``new_job`` asks for a new job.

    Literal arguments are checked when the DAG is parsed; templated ones once rendered, before any
    request.

    :param img_url: public http(s) URL of the photo. (templated)
    :param img_path: a private photo to upload first, instead of ``img_url``: a local path, a ``file:``
        URI or an object-storage URL (``s3://bucket/photo.jpg``). It is uploaded to HitPaw's storage
        (free; .jpg, .jpeg, .png, .gif, .webp or .bmp) and its ``access_url`` is submitted. The upload is
        remembered in the task state store (Airflow 3.3+), so a retry reuses it while HitPaw keeps it, and
        a retry reconnects to the job as with ``img_url``. Give exactly one of ``img_url`` and
        ``img_path``. (templated)
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
    :param poll_interval: seconds between two status requests, at least 1 (HitPaw advises 2 to 5 s for
        photos).
    :param timeout: seconds the wait may last, counted from the submission (or the reconnection); at
        most 30 days.
    :param output_path: where to copy the result: a local path, a ``file:`` URI or an
        ``ObjectStoragePath`` URL such as ``s3://bucket/photos/``. A folder (existing, or ending with
        ``/``) gets ``<photo stem>-<job_id><extension>``, so tasks sharing a folder never overwrite each
        other. Its form is checked before the submission. (templated)
    :param allow_unknown_model: send a model name this provider does not list.
    :param max_consecutive_errors: transient status errors in a row that end a deferred wait.
    :param new_job: ask for a new job (which costs coins) where the first try of a clear would
        otherwise reconnect to the job an earlier run of this task instance submitted, or refuse to
        guess about a submission whose outcome is unknown. Only the first try after the clear submits:
        its retries reconnect to the new job. A run triggered with conf ``{"hitpaw_new_job": true}``
        does the same. Airflow 3.3+ (before it every try submits anyway). (templated)
    :param preflight: before paying, read the photo's size from the first bytes of its file (a ranged
        GET, at most 1 MiB, within the connection's timeouts; never with the API key) and refuse a photo
        over the model's input limit or whose result would be over its output limit. When the size
        cannot be read the photo is submitted anyway, with a log line.
    :param max_coins: refuse, before paying, a job whose price (HitPaw's price table for the result's
        size, see :func:`~airflow_provider_hitpaw.contract.pricing.estimate_coins`) is over this many
        coins. When the size is not known (``preflight=False``, or it could not be read) the model's
        highest price must be within it; a model with no known price is refused.
    """

    template_fields: Sequence[str] = (
        "img_url", "img_path", "model_name", "extension", "dpi", "output_path", "new_job",
    )
    ui_color = "#d7ecff"
    operator_extra_links = (HitPawResultLink(),)
    source_url_field = "img_url"
    source_path_field = "img_path"

    def __init__(
        self,
        *,
        img_url: str | None = None,
        img_path: str | None = None,
        model_name: str,
        extension: str | None = None,
        exif: bool = False,
        dpi: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # the arguments every job operator has, with their defaults
        self.img_url = img_url
        self.img_path = img_path
        self.model_name = model_name
        self.extension = extension
        self.exif = exif
        self.dpi = dpi
        self._check_arguments()

    # --- checks ---------------------------------------------------------------------------------

    def _check_arguments(self) -> None:
        """Check at parse time every argument already known (no Jinja, no XCom); no connection lookup."""
        validate_exif(self.exif)
        self._check_common_arguments()
        spec, model_known = None, False
        if not is_template(self.model_name):
            spec = validate_model_name(self.model_name, allow_unknown_model=self.allow_unknown_model)
            model_known = True
        extension = self.extension
        self._check_source()
        if self.img_path is not None and not is_template(self.img_path):
            from airflow_provider_hitpaw.uploads import check_upload_name  # parse cost: only for img_path

            check_upload_name(str(self.img_path), photos_only=True)
            if extension is None:
                extension = output_extension_for(_as_url_path(self.img_path), None)
        elif self.img_url is not None and not is_template(self.img_url):
            validate_url(self.img_url)
            if extension is None:
                extension = output_extension_for(self.img_url, None)
        if extension is not None and not is_template(extension):
            validate_extension(extension, spec if model_known else None)
        if not is_template(self.dpi):
            validate_dpi(self.dpi)
        if self.output_path and not is_template(self.output_path):
            check_destination(self.output_path)

    def _submission_payload(self) -> dict[str, Any]:
        """The rendered arguments, checked in full; raises before any request is sent."""
        if self.output_path:
            check_destination(self.output_path)  # a result paid for and then not kept is money lost
        validate_url(self.img_url)
        img_url = str(self.img_url)
        extension = output_extension_for(img_url, self.extension or None)
        return build_submit_payload(
            img_url,
            self.model_name,
            extension,
            self.exif,
            validate_dpi(self.dpi),
            allow_unknown_model=self.allow_unknown_model,
        )

    def _check_price(self, payload: dict[str, Any], local: tuple[int, int] | None) -> None:
        """The photo's size against the model's limits (``preflight``) and its price against
        ``max_coins``; ``local`` is the size read from ``img_path`` before its upload."""
        from airflow_provider_hitpaw.preflight import check_before_paying

        check_before_paying(
            self.hook,
            str(payload["img_url"]),
            str(payload["model_name"]),
            preflight=self.preflight,
            max_coins=self.max_coins,
            logger=self.log,
            dimensions=local,
        )

    def _read_local_source(self, path: Any) -> tuple[int, int] | None:
        """The photo's size, from the file's own first bytes (not over the network after the upload)."""
        from airflow_provider_hitpaw.preflight import file_photo_dimensions

        return file_photo_dimensions(path)

    # --- execution ------------------------------------------------------------------------------

    @property
    def photo_label(self) -> str:
        """The photo's file name, short and without the URL's query string: ``map_index_template="{{ task.photo_label }}"``."""
        return labels.photo_label(self._source_location())

    def _send(self, payload: dict[str, Any]) -> SubmittedJob:
        return self.hook.enhance_photo(
            payload["img_url"],
            payload["model_name"],
            payload["extension"],
            payload["exif"],
            payload.get("DPI"),
            allow_unknown_model=self.allow_unknown_model,
        )
