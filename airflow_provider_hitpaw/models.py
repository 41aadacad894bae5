"""HitPaw model catalog and the checks made before any request that costs coins.

The photo models, formats and limits come from HitPaw's API document (the seed); the video models
and limits come from HitPaw's developer documentation (see the project's HITPAW-NOTES).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow_provider_hitpaw.errors import HitPawValidationError


class ModelKind(str, Enum):
    """What a model does; decides which limits apply."""

    ENHANCE = "enhance"
    DENOISE = "denoise"
    GENERATIVE = "generative"
    VIDEO = "video"


PHOTO_INPUT_FORMATS: tuple[str, ...] = (
    "bmp", "jpeg", "jpg", "png", "jfif", "tga", "tiff", "webp", "heif",
)
PHOTO_OUTPUT_FORMATS: tuple[str, ...] = (
    "bmp", "jpeg", "jpg", "png", "jfif", "tga", "tiff", "webp",
)
VIDEO_OUTPUT_FORMATS: tuple[str, ...] = ("mp4",)

VIDEO_MAX_OUTPUT_MEGAPIXELS = 36.0
VIDEO_MIN_DURATION_SECONDS = 0.5
VIDEO_MAX_DURATION_SECONDS = 3600.0


@dataclass(frozen=True)
class ModelSpec:
    """One HitPaw model and its documented limits.

    :param name: the API ``model_name`` value.
    :param display_name: the name HitPaw shows in its documents.
    :param kind: what the model does.
    :param scale: how many times each side grows (1 keeps the size).
    :param input_formats: file extensions accepted as input, without the dot.
    :param output_formats: file extensions the result may be written as, without the dot.
    :param max_input_megapixels: largest accepted input, or None when HitPaw sets no limit.
    :param max_output_megapixels: largest result HitPaw will produce.
    """

    name: str
    display_name: str
    kind: ModelKind
    scale: int
    input_formats: tuple[str, ...]
    output_formats: tuple[str, ...]
    max_input_megapixels: float | None
    max_output_megapixels: float

    @property
    def is_video(self) -> bool:
        return self.kind is ModelKind.VIDEO


def _photo(name: str, display: str, kind: ModelKind, scale: int) -> ModelSpec:
    generative = kind is ModelKind.GENERATIVE
    return ModelSpec(
        name=name,
        display_name=display,
        kind=kind,
        scale=scale,
        input_formats=PHOTO_INPUT_FORMATS,
        output_formats=PHOTO_OUTPUT_FORMATS,
        max_input_megapixels=None if generative else 67.0,
        max_output_megapixels=33.0 if generative else 600.0,
    )


def _video(name: str, display: str, scale: int) -> ModelSpec:
    return ModelSpec(
        name=name,
        display_name=display,
        kind=ModelKind.VIDEO,
        scale=scale,
        input_formats=(),  # HitPaw documents no list of accepted video containers.
        output_formats=VIDEO_OUTPUT_FORMATS,
        max_input_megapixels=None,
        max_output_megapixels=VIDEO_MAX_OUTPUT_MEGAPIXELS,
    )


# HitPaw documents no scale for the generative models; they are taken to keep the input's size.
PHOTO_MODELS: tuple[ModelSpec, ...] = (
    _photo("face_2x", "Face Clear Model 2x", ModelKind.ENHANCE, 2),
    _photo("face_4x", "Face Clear Model 4x", ModelKind.ENHANCE, 4),
    _photo("face_v2_2x", "Face Natural Model 2x", ModelKind.ENHANCE, 2),
    _photo("face_v2_4x", "Face Natural Model 4x", ModelKind.ENHANCE, 4),
    _photo("general_2x", "General Enhance Model 2x", ModelKind.ENHANCE, 2),
    _photo("general_4x", "General Enhance Model 4x", ModelKind.ENHANCE, 4),
    _photo("high_fidelity_2x", "High Fidelity Model 2x", ModelKind.ENHANCE, 2),
    _photo("high_fidelity_4x", "High Fidelity Model 4x", ModelKind.ENHANCE, 4),
    _photo("sharpen_denoise", "Sharp Denoise Model", ModelKind.DENOISE, 1),
    _photo("detail_denoise", "Detail Denoise Model", ModelKind.DENOISE, 1),
    _photo("generative_portrait", "Generative Portrait Model", ModelKind.GENERATIVE, 1),
    _photo("generative", "Generative Enhance Model", ModelKind.GENERATIVE, 1),
)

VIDEO_MODELS: tuple[ModelSpec, ...] = (
    _video("face_soft_2x", "Face Soft Model 2x", 2),
    _video("portrait_restore_1x", "Portrait Restore Model 1x", 1),
    _video("portrait_restore_2x", "Portrait Restore Model 2x", 2),
    _video("general_restore_1x", "General Restore Model 1x", 1),
    _video("general_restore_2x", "General Restore Model 2x", 2),
    _video("general_restore_4x", "General Restore Model 4x", 4),
    _video("ultrahd_restore_2x", "Ultra HD Restore Model 2x", 2),
    _video("generative_1x", "Generative Video Model 1x", 1),
)

# Other spellings seen in HitPaw's own documents for the same model.
MODEL_ALIASES: dict[str, str] = {
    "sharpen_denoise_1x": "sharpen_denoise",
    "detail_denoise_1x": "detail_denoise",
}

MODELS: dict[str, ModelSpec] = {m.name: m for m in PHOTO_MODELS + VIDEO_MODELS}


def _invalid(message: str) -> HitPawValidationError:
    """The typed error, imported on first use so that the sandbox can use this catalog without Airflow."""
    from airflow_provider_hitpaw.errors import HitPawValidationError

    return HitPawValidationError(message)


def get_model(name: str) -> ModelSpec | None:
    """Return the spec of a known model (or of an alias of one), else None."""
    spec = MODELS.get(name)
    if spec is None and name in MODEL_ALIASES:
        spec = MODELS[MODEL_ALIASES[name]]
    return spec


def _suggestion(name: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def validate_model_name(
    model_name: object, *, video: bool = False, allow_unknown_model: bool = False
) -> ModelSpec | None:
    """Check a model name before it is sent.

    :param model_name: the ``model_name`` to send.
    :param video: whether the request goes to the video endpoint.
    :param allow_unknown_model: let a name that is not in the catalog through to the API
        (HitPaw's model names drift); its limits are then left to HitPaw.
    :return: the model's spec, or None for an allowed unknown name.
    :raises HitPawValidationError: for a missing, mistyped or unknown name.
    """
    if not isinstance(model_name, str) or not model_name.strip():
        raise _invalid(f"model_name must be a non-empty string, got {model_name!r}")
    if model_name != model_name.strip():
        raise _invalid(f"model_name {model_name!r} has leading or trailing white space")
    spec = get_model(model_name)
    family = VIDEO_MODELS if video else PHOTO_MODELS
    names = [m.name for m in family]
    if spec is not None and spec.is_video == video:
        return spec
    if spec is not None:
        kind = "a video" if spec.is_video else "a photo"
        raise _invalid(
            f"model_name {model_name!r} is {kind} model; valid {'video' if video else 'photo'} "
            f"models: {', '.join(names)}"
        )
    if allow_unknown_model:
        return None
    raise _invalid(
        f"Unknown HitPaw model {model_name!r}.{_suggestion(model_name, names + list(MODEL_ALIASES))} "
        f"Valid {'video' if video else 'photo'} models: {', '.join(names)}. "
        "Pass allow_unknown_model=True to send a name this provider does not list."
    )


def normalize_extension(extension: object) -> str:
    """Return an extension in the form the API takes: lower case with a leading dot (``.jpg``)."""
    if not isinstance(extension, str) or not extension.strip(".").strip():
        raise _invalid(
            f"extension must be a non-empty string such as '.jpg', got {extension!r}"
        )
    ext = extension.strip().lower()
    if not ext.startswith("."):
        ext = "." + ext
    if not ext[1:].isalnum():
        raise _invalid(f"extension {extension!r} is not a file extension such as '.jpg'")
    return ext


def validate_extension(extension: object, spec: ModelSpec | None) -> str:
    """Normalise an extension and check that the model can write it.

    :raises HitPawValidationError: with the list of valid extensions.
    """
    ext = normalize_extension(extension)
    allowed = spec.output_formats if spec is not None else PHOTO_OUTPUT_FORMATS
    if spec is None and ext[1:] in PHOTO_INPUT_FORMATS + VIDEO_OUTPUT_FORMATS:
        return ext
    if ext[1:] not in allowed:
        model = f"model {spec.name!r}" if spec is not None else "HitPaw"
        hint = ""
        if ext[1:] in PHOTO_INPUT_FORMATS:
            hint = f" {ext} is accepted as input only: pass extension='.png' or '.jpg' for the result."
        raise _invalid(
            f"Extension {ext!r} is not valid for {model}. Valid extensions: "
            f"{', '.join('.' + f for f in allowed)}.{hint}"
        )
    return ext


def extension_from_url(url: str) -> str | None:
    """The file extension of a URL's path (``.jpg``), or None when it has no known one."""
    path = urlsplit(url).path
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    ext = "." + name.rsplit(".", 1)[-1].lower()
    if ext[1:] in PHOTO_INPUT_FORMATS + VIDEO_OUTPUT_FORMATS:
        return ext
    return None


MAX_URL_LENGTH = 4096


def validate_url(url: object, *, field: str = "img_url") -> str:
    """Check that a media URL is an absolute http(s) URL HitPaw can fetch.

    :raises HitPawValidationError: for anything else.
    """
    if not isinstance(url, str) or not url.strip():
        raise _invalid(f"{field} must be a non-empty URL string, got {url!r}")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"{field} is {len(url)} characters long; at most {MAX_URL_LENGTH}")
    if url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        raise _invalid(f"{field} must not contain white space or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        raise _invalid(f"{field} {url[:200]!r} is not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise _invalid(
            f"{field} must be an http:// or https:// URL that HitPaw can download, got scheme "
            f"{parts.scheme or '(none)'!r}"
        )
    if not parts.hostname:
        raise _invalid(f"{field} {url[:200]!r} has no host name")
    return url


def validate_dpi(dpi: object) -> int | None:
    """Check the optional DPI: a whole number from 1 to 10,000 (booleans are refused)."""
    if dpi is None:
        return None
    if isinstance(dpi, bool) or not isinstance(dpi, int):
        if isinstance(dpi, str) and dpi.strip().isascii() and dpi.strip().isdigit():
            dpi = int(dpi.strip())
        else:
            raise _invalid(f"dpi must be a whole number such as 300, got {dpi!r}")
    if not 1 <= dpi <= 10_000:
        raise _invalid(f"dpi must be between 1 and 10000, got {dpi}")
    return dpi


def validate_exif(exif: object) -> bool:
    if not isinstance(exif, bool):
        raise _invalid(f"exif must be True or False, got {exif!r}")
    return exif


def build_submit_payload(
    img_url: str,
    model_name: str,
    extension: str,
    exif: bool = False,
    dpi: int | None = None,
    *,
    allow_unknown_model: bool = False,
) -> dict[str, Any]:
    """Validate a photo submission and build its JSON body (the API's field names); raises before
    anything is sent."""
    spec = validate_model_name(model_name, allow_unknown_model=allow_unknown_model)
    payload: dict[str, Any] = {
        "model_name": model_name,
        "img_url": validate_url(img_url),
        "extension": validate_extension(extension, spec),
        "exif": validate_exif(exif),
    }
    checked_dpi = validate_dpi(dpi)
    if checked_dpi is not None:
        payload["DPI"] = checked_dpi
    return payload
