"""Operator that enhances a video with HitPaw (``POST /api/video-enhancer``), waiting in the worker or in
the triggerer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_hitpaw import labels
from airflow_provider_hitpaw.contract.catalog import VIDEO_INPUT_FORMATS
from airflow_provider_hitpaw.downloads import check_destination
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.links.hitpaw import HitPawResultLink
from airflow_provider_hitpaw.operators.job import HitPawJobOperator, is_template
from airflow_provider_hitpaw.validation import (
    build_video_payload,
    validate_model_name,
    validate_resolution,
    validate_url,
    validate_video_extension,
)

if TYPE_CHECKING:

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
    source_url_field = "video_url"
    source_path_field = "video_path"

    def __init__(
        self,
        *,
        video_url: str | None = None,
        video_path: str | None = None,
        model_name: str,
        resolution: list[int] | tuple[int, int] | str,
        extension: str = ".mp4",
        original_resolution: list[int] | tuple[int, int] | str | None = None,
        poll_interval: float = DEFAULT_VIDEO_POLL_INTERVAL,
        timeout: float = DEFAULT_VIDEO_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poll_interval=poll_interval, timeout=timeout, **kwargs)  # and the others every job operator has
        self.video_url = video_url
        self.video_path = video_path
        self.model_name = model_name
        self.resolution = resolution
        self.extension = extension
        self.original_resolution = original_resolution
        self._check_arguments()

    # --- checks ---------------------------------------------------------------------------------

    def _check_arguments(self) -> None:
        """Check at parse time every argument already known (no Jinja, no XCom); no connection lookup."""
        self._check_common_arguments()
        spec, model_known = None, False
        if not is_template(self.model_name):
            spec = validate_model_name(self.model_name, video=True, allow_unknown_model=self.allow_unknown_model)
            model_known = True
        self._check_source()
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

    def _check_price(self, payload: dict[str, Any], local: VideoHeader | None) -> None:
        """The video's duration (``preflight``) and its price against ``max_coins``; ``local`` is the
        header read from ``video_path`` before its upload."""
        from airflow_provider_hitpaw.video_preflight import check_video_before_paying

        check_video_before_paying(
            self.hook,
            str(payload["video_url"]),
            str(payload["model_name"]),
            list(payload["resolution"]),
            preflight=self.preflight,
            max_coins=self.max_coins,
            logger=self.log,
            header=local,
        )

    def _read_local_source(self, path: Any) -> VideoHeader | None:
        """The video's header, from the file itself before its upload."""
        from airflow_provider_hitpaw.video_preflight import file_video_header

        return file_video_header(path)

    def _check_upload(self, name: str) -> None:
        check_video_upload_name(name)

    # --- execution ------------------------------------------------------------------------------

    @property
    def video_label(self) -> str:
        """The video's file name, short and without the URL's query string: ``map_index_template="{{ task.video_label }}"``."""
        return labels.photo_label(self._source_location())

    def _send(self, payload: dict[str, Any]) -> SubmittedJob:
        return self.hook.enhance_video(
            payload["video_url"],
            payload["model_name"],
            payload["resolution"],
            payload["extension"],
            payload.get("original_resolution"),
            allow_unknown_model=self.allow_unknown_model,
        )
