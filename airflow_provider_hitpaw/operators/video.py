"""Operator that enhances a video with HitPaw (``POST /api/video-enhancer``), waiting in the worker or in
the triggerer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf

from airflow_provider_hitpaw import labels
from airflow_provider_hitpaw.connection_fields import DEFAULT_CONN_ID
from airflow_provider_hitpaw.contract.catalog import VIDEO_INPUT_FORMATS
from airflow_provider_hitpaw.downloads import check_destination
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.links.hitpaw import HitPawResultLink
from airflow_provider_hitpaw.operators.job import HitPawJobOperator, as_url_path, is_template
from airflow_provider_hitpaw.validation import (
    build_video_payload,
    validate_model_name,
    validate_resolution,
    validate_url,
    validate_video_extension,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_hitpaw.api import SubmittedJob
    from airflow_provider_hitpaw.video_header import VideoHeader

__all__ = ["EnhanceVideoOperator"]

#: HitPaw advises polling every 5 to 10 s for videos.
DEFAULT_VIDEO_POLL_INTERVAL = 10.0
#: A long video can take hours at HitPaw.
DEFAULT_VIDEO_TIMEOUT = 6 * 3600.0


def check_video_upload_name(name: str) -> None:
    """Refuse, without any I/O, a ``video_path`` HitPaw's upload or its video endpoint would not take.

    :raises HitPawValidationError: naming the extensions both accept.
    """
    from airflow_provider_hitpaw.contract.uploads import UPLOAD_CONTENT_TYPES
    from airflow_provider_hitpaw.uploads import check_upload_name

    accepted = [ext for ext in UPLOAD_CONTENT_TYPES if ext in VIDEO_INPUT_FORMATS]
    base = name.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    extension = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if extension not in accepted:
        raise HitPawValidationError(
            f"video_path {base[:120]!r} is not a video HitPaw takes through its upload: the file name must "
            f"end with one of {', '.join('.' + e for e in accepted)}"
        )
    check_upload_name(name)


def _resolution_is_template(value: object) -> bool:
    """Whether a ``resolution`` is only known once rendered: a template string, or a list holding one."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, str) and is_template(v) for v in value)
    return False


class EnhanceVideoOperator(HitPawJobOperator):
    """Enhance a video with a HitPaw video model and (by default) wait for the result.

    It submits the video (which costs coins: HitPaw bills every second of the result, by its resolution
    and frame rate), pushes ``job_id`` and ``consume_coins`` to XCom, then waits, in the worker or,
    with ``deferrable=True``, in the triggerer. The result can be copied to ``output_path``. Its return
    value (XCom ``return_value``) is a dict with ``job_id``, ``status``, ``res_url``, ``original_url``,
    ``consume_coins`` and ``output_path``.

    Retries, clears, a lost reply, a job that ends in NSFW, REJECT or CANCEL and ``new_job`` behave
    as with :class:`~airflow_provider_hitpaw.operators.hitpaw.EnhancePhotoOperator`: a retry or a plain
    clear reconnects to the job it already paid for (Airflow 3.3+), and a submission whose outcome is
    unknown is never sent again by itself.

    Literal arguments are checked when the DAG is parsed; templated ones once rendered, before any
    request.

    :param video_url: public http(s) URL of the video. (templated)
    :param video_path: a private video to upload first, instead of ``video_url``: a local path, a
        ``file:`` URI or an object-storage URL. It is uploaded to HitPaw's storage (free; .mp4, .mov,
        .avi, .mkv or .webm) and its ``access_url`` submitted; a retry reuses the upload while HitPaw
        keeps it. Give exactly one of ``video_url`` and ``video_path``. (templated)
    :param model_name: the HitPaw video model, e.g. ``general_restore_2x`` or ``face_soft_2x``. (templated)
    :param resolution: the result's ``[width, height]`` (or ``"1920x1080"``), at most 36 MP. (templated)
    :param extension: the result's container: ``.mp4`` (default), ``.mov``, ``.mkv``, ``.m4v``, ``.avi``
        or ``.gif``. (templated)
    :param original_resolution: the source's ``[width, height]``, sent to HitPaw as given (optional).
        (templated)
    :param hitpaw_conn_id: the ``hitpaw`` connection holding the API key.
    :param wait_for_completion: wait for the job to end; with False the task ends right after the
        submission (wait with :class:`~airflow_provider_hitpaw.sensors.hitpaw.TaskStatusSensor`).
    :param deferrable: wait in the triggerer instead of holding a worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: seconds between two status requests, at least 1; 10 by default (HitPaw
        advises 5 to 10 s for videos).
    :param timeout: seconds the wait may last, counted from the submission (or the reconnection); 6
        hours by default, at most 30 days.
    :param output_path: where to copy the result: a local path, a ``file:`` URI or an
        ``ObjectStoragePath`` URL. A folder (existing, or ending with ``/``) gets
        ``<video stem>-<job_id><extension>``. Its form is checked before the submission. (templated)
    :param allow_unknown_model: send a model name this provider does not list.
    :param max_consecutive_errors: transient status errors in a row that end a deferred wait.
    :param new_job: ask for a new job (which costs coins) where a clear would otherwise reconnect to the
        job an earlier run paid for. (templated)
    :param preflight: before paying, read the video's duration, frame rate and size from its
        container's header (PyAV, the ``video`` extra: ranged reads of ``video_url``, at most 16 MiB,
        never with the API key; ``video_path`` is read before its upload) and refuse a video shorter
        than 0.5 s or longer than an hour. Without PyAV, or when the header cannot be read, the video is
        submitted anyway, with a log line.
    :param max_coins: refuse, before paying, a job whose price (HitPaw's per-second price for the
        result's resolution and the source's frame rate, times its seconds, see
        :func:`~airflow_provider_hitpaw.contract.pricing.estimate_video_coins`) is over this many coins.
        When the duration is not known an hour at 120 fps must be within it; a model or size with no
        published price is refused.
    """

    template_fields: Sequence[str] = (
        "video_url", "video_path", "model_name", "resolution", "extension", "original_resolution",
        "output_path", "new_job",
    )
    ui_color = "#e3dcff"
    operator_extra_links = (HitPawResultLink(),)
    media_noun = "video"

    def __init__(
        self,
        *,
        video_url: str | None = None,
        video_path: str | None = None,
        model_name: str,
        resolution: list[int] | tuple[int, int] | str,
        extension: str = ".mp4",
        original_resolution: list[int] | tuple[int, int] | str | None = None,
        hitpaw_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_VIDEO_POLL_INTERVAL,
        timeout: float = DEFAULT_VIDEO_TIMEOUT,
        output_path: str | None = None,
        allow_unknown_model: bool = False,
        max_consecutive_errors: int = 5,
        new_job: bool | str = False,
        preflight: bool = True,
        max_coins: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_url = video_url
        self.video_path = video_path
        self.model_name = model_name
        self.resolution = resolution
        self.extension = extension
        self.original_resolution = original_resolution
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
        self._access_url: str | None = None  # video_path's upload, once made: the submitted video_url
        self._check_arguments()

    # --- checks ---------------------------------------------------------------------------------

    def _check_arguments(self) -> None:
        """Check at parse time every argument already known (no Jinja, no XCom); no connection lookup."""
        self._check_common_arguments()
        if not isinstance(self.preflight, bool):
            raise HitPawValidationError(f"preflight must be True or False, got {self.preflight!r}")
        if self.max_coins is not None and (
            isinstance(self.max_coins, bool) or not isinstance(self.max_coins, int) or self.max_coins < 0
        ):
            raise HitPawValidationError(f"max_coins must be a whole number of coins or None, got {self.max_coins!r}")
        spec, model_known = None, False
        if not is_template(self.model_name):
            spec = validate_model_name(self.model_name, video=True, allow_unknown_model=self.allow_unknown_model)
            model_known = True
        self._check_video_source()
        if self.video_path is not None and not is_template(self.video_path):
            check_video_upload_name(str(self.video_path))
        elif self.video_url is not None and not is_template(self.video_url):
            validate_url(self.video_url, field="video_url")
        if model_known and not _resolution_is_template(self.resolution):
            validate_resolution(self.resolution, spec)
        if self.original_resolution is not None and not _resolution_is_template(self.original_resolution):
            validate_resolution(self.original_resolution, field="original_resolution", limited=False)
        if not is_template(self.extension):
            validate_video_extension(self.extension, spec if model_known else None)
        if self.output_path and not is_template(self.output_path):
            check_destination(self.output_path)

    def _check_video_source(self) -> None:
        """Exactly one of ``video_url`` and ``video_path`` (a rendered empty string counts as none)."""
        has_url = self.video_url not in (None, "", self._access_url)  # not the upload set by execute
        has_path = self.video_path is not None and self.video_path != ""
        if has_url == has_path:
            raise HitPawValidationError(
                "Give exactly one of video_url (a public URL) and video_path (a file to upload first), "
                f"got {'both' if has_url else 'neither'}"
            )

    def _submission_payload(self) -> dict[str, Any]:
        """The rendered arguments, checked in full; raises before any request is sent."""
        if self.output_path:
            check_destination(self.output_path)  # a result paid for and then not kept is money lost
        original = self.original_resolution
        if isinstance(original, str) and original.strip() in ("", "None", "null"):
            original = None  # what a template renders for a missing value
        return build_video_payload(
            str(self.video_url),
            self.model_name,
            self.resolution,
            self.extension,
            original or None,
            allow_unknown_model=self.allow_unknown_model,
        )

    def _fingerprinted(self, payload: dict[str, Any]) -> dict[str, Any]:
        """With ``video_path``, the path rather than the upload's ``access_url`` (a new upload on a retry
        must not look like another submission)."""
        if self.video_path:
            return {**payload, "video_url": None, "video_path": str(self.video_path)}
        return payload

    def _check_before_paying(
        self, payload: dict[str, Any], header: VideoHeader | None = None
    ) -> HitPawValidationError | None:
        """The video's duration (``preflight``) and its price against ``max_coins``; the refusal, if
        any, is raised by :meth:`_run_job` only before a new submission."""
        from airflow_provider_hitpaw.video_preflight import check_video_before_paying

        try:
            check_video_before_paying(
                self.hook,
                str(payload["video_url"]),
                str(payload["model_name"]),
                list(payload["resolution"]),
                preflight=self.preflight,
                max_coins=self.max_coins,
                logger=self.log,
                header=header,
            )
        except HitPawValidationError as refusal:
            return refusal
        return None

    # --- execution ------------------------------------------------------------------------------

    @property
    def video_label(self) -> str:
        """The video's file name, short and without the URL's query string: ``map_index_template="{{ task.video_label }}"``."""
        return labels.photo_label(self._source_location())

    def execute(self, context: Context) -> dict[str, Any]:
        labels.check_map_index(self, context)  # before any request: a label Airflow could not store
        local_header = None
        if self.video_path:  # a private video: uploaded first (free), its access_url is submitted
            self._check_video_source()
            check_video_upload_name(str(self.video_path))
            if self.preflight:  # from the file itself, before the upload
                from airflow_provider_hitpaw.video_preflight import file_video_header

                local_header = file_video_header(self.video_path)
            self.video_url = self._access_url = self._uploaded_url(context, self.video_path, photos_only=False)
        payload = self._submission_payload()
        refusal = self._check_before_paying(payload, local_header)
        return self._run_job(context, payload, refusal)

    def _send(self, payload: dict[str, Any]) -> SubmittedJob:
        return self.hook.enhance_video(
            payload["video_url"],
            payload["model_name"],
            payload["resolution"],
            payload["extension"],
            payload.get("original_resolution"),
            allow_unknown_model=self.allow_unknown_model,
        )

    def _submitted_url(self) -> str | None:
        return self.video_url

    def _source_location(self) -> str | None:
        return as_url_path(self.video_path) if self.video_path else self.video_url
