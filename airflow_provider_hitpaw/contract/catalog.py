"""HitPaw's model catalog: every model of its API with the formats and limits HitPaw documents.

Sources: HitPaw's public developer documentation, https://github.com/shiyao1122/hitpaw-developer-docs
(``docs/enhance/image-enhancement.md`` for the photo models, formats and limits;
``docs/enhance/video-enhancement.md`` for the video models and limits). The photo output formats are
those of HitPaw's API reference where it lists input and output formats apart, with HEIF as an input
format only; the current page gives one merged "In/Out" list. HEIF stays refused as a result format:
a refused extension costs nothing, a job HitPaw cannot write costs coins.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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


def get_model(name: str) -> ModelSpec | None:
    """Return the spec of a known model (or of an alias of one), else None."""
    spec = MODELS.get(name)
    if spec is None and name in MODEL_ALIASES:
        spec = MODELS[MODEL_ALIASES[name]]
    return spec
