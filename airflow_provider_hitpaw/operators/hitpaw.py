"""Operator that enhances a photo with HitPaw, waiting in the worker or in the triggerer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf

from airflow_provider_hitpaw import labels
from airflow_provider_hitpaw.connection_fields import DEFAULT_CONN_ID
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
    from airflow.sdk import Context

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

    def __init__(
        self,
        *,
        img_url: str | None = None,
        img_path: str | None = None,
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
        new_job: bool | str = False,
        preflight: bool = True,
        max_coins: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.img_url = img_url
        self.img_path = img_path
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
        self.new_job = new_job
        self.preflight = preflight
        self.max_coins = max_coins
        self._result: dict[str, Any] | None = None
        self._access_url: str | None = None  # img_path's upload, once made: the submitted img_url
        self._check_arguments()

    # --- checks ---------------------------------------------------------------------------------

    def _check_arguments(self) -> None:
        """Check at parse time every argument already known (no Jinja, no XCom); no connection lookup."""
        validate_exif(self.exif)
        self._check_common_arguments()
        if not isinstance(self.preflight, bool):
            raise HitPawValidationError(f"preflight must be True or False, got {self.preflight!r}")
        if self.max_coins is not None and (
            isinstance(self.max_coins, bool) or not isinstance(self.max_coins, int) or self.max_coins < 0
        ):
            raise HitPawValidationError(f"max_coins must be a whole number of coins or None, got {self.max_coins!r}")
        spec, model_known = None, False
        if not is_template(self.model_name):
            spec = validate_model_name(self.model_name, allow_unknown_model=self.allow_unknown_model)
            model_known = True
        extension = self.extension
        self._check_photo_source()
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

    def _check_photo_source(self) -> None:
        """Exactly one of ``img_url`` and ``img_path`` (a rendered empty string counts as none)."""
        has_url = self.img_url not in (None, "", self._access_url)  # not the upload set by execute
        has_path = self.img_path is not None and self.img_path != ""
        if has_url == has_path:
            raise HitPawValidationError(
                "Give exactly one of img_url (a public URL) and img_path (a file to upload first), "
                f"got {'both' if has_url else 'neither'}"
            )

    def _fingerprinted(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What the submission's fingerprint is taken of: with ``img_path``, the path rather than the
        upload's ``access_url`` (a new upload on a retry must not look like another submission)."""
        if self.img_path:
            return {**payload, "img_url": None, "img_path": str(self.img_path)}
        return payload

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

    def _check_before_paying(
        self, payload: dict[str, Any], dimensions: tuple[int, int] | None = None
    ) -> HitPawValidationError | None:
        """The photo's size against the model's limits (``preflight``) and its price against
        ``max_coins``, on the payload about to be sent (the estimate is logged).

        :return: the refusal, if any, for ``execute`` to raise right before a new submission: nothing
            is sent then. It is not raised when the try reconnects to a job an earlier try already paid
            for (a signed photo URL that expired since, or a changed price, must not lose that job).
        """
        from airflow_provider_hitpaw.preflight import check_before_paying

        try:
            check_before_paying(
                self.hook,
                str(payload["img_url"]),
                str(payload["model_name"]),
                preflight=self.preflight,
                max_coins=self.max_coins,
                logger=self.log,
                dimensions=dimensions,
            )
        except HitPawValidationError as refusal:
            return refusal
        return None

    # --- execution ------------------------------------------------------------------------------

    @property
    def photo_label(self) -> str:
        """The photo's file name, short and without the URL's query string: ``map_index_template="{{ task.photo_label }}"``."""
        return labels.photo_label(_as_url_path(self.img_path) if self.img_path else self.img_url)

    def execute(self, context: Context) -> dict[str, Any]:
        labels.check_map_index(self, context)  # before any request: a label Airflow could not store
        local_dimensions = None
        if self.img_path:  # a private photo: uploaded first (free), its access_url is submitted
            self._check_photo_source()
            if self.preflight:  # from the file's own first bytes, not over the network after the upload
                from airflow_provider_hitpaw.preflight import file_photo_dimensions

                local_dimensions = file_photo_dimensions(self.img_path)
            self.img_url = self._access_url = self._uploaded_url(context, self.img_path, photos_only=True)
        payload = self._submission_payload()
        refusal = self._check_before_paying(payload, local_dimensions)
        return self._run_job(context, payload, refusal)

    def _send(self, payload: dict[str, Any]) -> SubmittedJob:
        return self.hook.enhance_photo(
            payload["img_url"],
            payload["model_name"],
            payload["extension"],
            payload["exif"],
            payload.get("DPI"),
            allow_unknown_model=self.allow_unknown_model,
        )

    def _submitted_url(self) -> str | None:
        return self.img_url

    def _source_location(self) -> str | None:
        return _as_url_path(self.img_path) if self.img_path else self.img_url
