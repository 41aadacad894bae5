"""HitPaw's model catalog: every model of its API with the formats and limits HitPaw documents.

Sources: HitPaw's public developer documentation, https://github.com/shiyao1122/hitpaw-developer-docs
(``docs/enhance/image-enhancement.md`` for the photo models, formats and limits;
``docs/enhance/video-enhancement.md`` for the video models and limits), HitPaw's earlier API reference
(https://developer.hitpaw.com/, whose model table has the older names ``sharpen_denoise``,
``generative``...) and HitPaw's own client, https://github.com/HitPaw-Official/hitpaw-mcp-server. Each
:class:`ModelSpec` names its source; so does each alias in :data:`MODEL_ALIASES`.

The photo output formats are those of HitPaw's API reference where it lists input and output formats
apart, with HEIF as an input format only; the current page gives one merged "In/Out" list. HEIF stays
refused as a result format: a refused extension costs nothing, a job HitPaw cannot write costs coins.

Which model is priced by which of HitPaw's tables (``docs/get-started/pricing.md``) is
:attr:`ModelSpec.pricing`; the tables themselves are in :mod:`.pricing`.
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


class PriceTable(str, Enum):
    """Which of HitPaw's price tables bills a model (``docs/get-started/pricing.md``)."""

    STANDARD = "standard"  # Face Clear, Face Natural, General Enhance, High Fidelity, the denoisers
    GENERATIVE_PORTRAIT = "generative_portrait"
    GENERATIVE_ENHANCE = "generative_enhance"
    # Video, billed per output second (``docs/get-started/pricing.md``, "Video Enhancement Pricing").
    VIDEO_STANDARD = "video_standard"  # Face Soft, Portrait Restore, General Restore
    VIDEO_ULTRA_HD = "video_ultra_hd"  # Ultra HD Model
    VIDEO_GENERATIVE = "video_generative"  # Generative Model

    @property
    def per_second(self) -> bool:
        """Whether the table bills per output second (video) rather than per image."""
        return self.value.startswith("video_")


PHOTO_INPUT_FORMATS: tuple[str, ...] = (
    "bmp", "jpeg", "jpg", "png", "jfif", "tga", "tiff", "webp", "heif",
)
PHOTO_OUTPUT_FORMATS: tuple[str, ...] = (
    "bmp", "jpeg", "jpg", "png", "jfif", "tga", "tiff", "webp",
)
#: video-enhancement.md, "Model Specifications" (all video models).
VIDEO_INPUT_FORMATS: tuple[str, ...] = (
    "dv", "mlv", "m2ts", "m2t", "m2v", "nut", "ser", "3g2", "3gp", "asf", "avi", "divx", "f4v", "flv",
    "h261", "h263", "m4v", "mkv", "mov", "mp4", "mpeg", "mpeg4", "mpg", "mxf", "ogv", "rm", "rmvb", "webm",
    "wmv", "3gp2", "dmsm", "dvdmedia", "dvr-ms", "trp", "vob", "vro", "gif", "xvid",
)
VIDEO_OUTPUT_FORMATS: tuple[str, ...] = ("mp4", "mov", "mkv", "m4v", "avi", "gif")

VIDEO_MAX_OUTPUT_MEGAPIXELS = 36.0
VIDEO_MIN_DURATION_SECONDS = 0.5
VIDEO_MAX_DURATION_SECONDS = 3600.0

# Where the names and limits come from.
SOURCE_IMAGE_DOCS = "hitpaw-developer-docs: docs/enhance/image-enhancement.md"
SOURCE_VIDEO_DOCS = "hitpaw-developer-docs: docs/enhance/video-enhancement.md"
SOURCE_API_REFERENCE = "HitPaw API reference (https://developer.hitpaw.com/), earlier model table"
SOURCE_MCP_CLIENT = "HitPaw-Official/hitpaw-mcp-server, model list of its enhance tool"

# The photo limits, in megapixels (10**6 pixels). HitPaw's documents disagree:
# - standard models (enhance, denoise): 70 MP in and 432 MP out in image-enhancement.md (Model
#   Specifications); 67 MP in and 600 MP out in the earlier API reference;
# - generative models: 34 MP in and 34 MP out in image-enhancement.md; 67 MP in and 33 MP out in the
#   earlier API reference and the MCP client.
# The provider enforces, before paying, the LOOSEST documented value of each. Refusing a photo HitPaw
# would take loses the job for nothing; sending one HitPaw refuses costs nothing (a refused submission,
# 110400009 / 110400010, is not charged). So a photo is refused here only when no HitPaw document
# allows it. A generative model's result is never smaller than its input (scale >= 1), so the output
# limit (34 MP) refuses every photo either input limit (34 or 67 MP) would: no input limit is kept
# for them (None), and a too large photo is reported as a too large result, as the seed's table
# (output limit only) has it. A limit is inclusive: a photo of exactly 70 MP is accepted.
STANDARD_MAX_INPUT_MEGAPIXELS = 70.0
STANDARD_MAX_OUTPUT_MEGAPIXELS = 600.0
GENERATIVE_MAX_INPUT_MEGAPIXELS: float | None = None
GENERATIVE_MAX_OUTPUT_MEGAPIXELS = 34.0


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
    :param source: the public document that lists this name.
    :param pricing: the price table that bills it.
    """

    name: str
    display_name: str
    kind: ModelKind
    scale: int
    input_formats: tuple[str, ...]
    output_formats: tuple[str, ...]
    max_input_megapixels: float | None
    max_output_megapixels: float
    source: str = SOURCE_IMAGE_DOCS
    pricing: PriceTable = PriceTable.STANDARD

    @property
    def is_video(self) -> bool:
        return self.kind is ModelKind.VIDEO

    @property
    def max_input_pixels(self) -> int | None:
        """:attr:`max_input_megapixels` as a whole number of pixels (exact comparisons)."""
        return None if self.max_input_megapixels is None else round(self.max_input_megapixels * 1_000_000)

    @property
    def max_output_pixels(self) -> int:
        """:attr:`max_output_megapixels` as a whole number of pixels (exact comparisons)."""
        return round(self.max_output_megapixels * 1_000_000)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The result's size for an input of ``width`` x ``height`` (each side times :attr:`scale`)."""
        return width * self.scale, height * self.scale


def _photo(
    name: str,
    display: str,
    kind: ModelKind,
    scale: int,
    source: str = SOURCE_IMAGE_DOCS,
    pricing: PriceTable | None = None,
) -> ModelSpec:
    generative = kind is ModelKind.GENERATIVE
    return ModelSpec(
        name=name,
        display_name=display,
        kind=kind,
        scale=scale,
        input_formats=PHOTO_INPUT_FORMATS,
        output_formats=PHOTO_OUTPUT_FORMATS,
        max_input_megapixels=GENERATIVE_MAX_INPUT_MEGAPIXELS if generative else STANDARD_MAX_INPUT_MEGAPIXELS,
        max_output_megapixels=GENERATIVE_MAX_OUTPUT_MEGAPIXELS if generative else STANDARD_MAX_OUTPUT_MEGAPIXELS,
        source=source,
        pricing=pricing or (PriceTable.GENERATIVE_ENHANCE if generative else PriceTable.STANDARD),
    )


def _video(name: str, display: str, scale: int, pricing: PriceTable = PriceTable.VIDEO_STANDARD) -> ModelSpec:
    # A video's result size is the request's ``resolution``, not the input times the scale: ``scale``
    # is the model's nominal factor only. "Max Input Resolution: No limit".
    return ModelSpec(
        name=name,
        display_name=display,
        kind=ModelKind.VIDEO,
        scale=scale,
        input_formats=VIDEO_INPUT_FORMATS,
        output_formats=VIDEO_OUTPUT_FORMATS,
        max_input_megapixels=None,
        max_output_megapixels=VIDEO_MAX_OUTPUT_MEGAPIXELS,
        source=SOURCE_VIDEO_DOCS,
        pricing=pricing,
    )


_E, _D, _G = ModelKind.ENHANCE, ModelKind.DENOISE, ModelKind.GENERATIVE
_PORTRAIT = PriceTable.GENERATIVE_PORTRAIT

# The seed's names stay the canonical entries of the models it knows (the current documents' spellings
# of the same models are aliases, below). The 1x models keep the input's size.
PHOTO_MODELS: tuple[ModelSpec, ...] = (
    _photo("face_2x", "Face Clear Model 2x", _E, 2),
    _photo("face_4x", "Face Clear Model 4x", _E, 4),
    _photo("face_v2_2x", "Face Natural Model 2x", _E, 2),
    _photo("face_v2_4x", "Face Natural Model 4x", _E, 4),
    _photo("general_2x", "General Enhance Model 2x", _E, 2),
    _photo("general_4x", "General Enhance Model 4x", _E, 4),
    _photo("high_fidelity_2x", "High Fidelity Model 2x", _E, 2),
    _photo("high_fidelity_4x", "High Fidelity Model 4x", _E, 4),
    _photo("sharpen_denoise", "Sharp Denoise Model", _D, 1, SOURCE_API_REFERENCE),
    _photo("detail_denoise", "Detail Denoise Model", _D, 1, SOURCE_API_REFERENCE),
    _photo("generative_portrait", "Generative Portrait Model", _G, 1, SOURCE_API_REFERENCE, _PORTRAIT),
    _photo("generative", "Generative Enhance Model", _G, 1, SOURCE_API_REFERENCE),
    # Listed by the current image-enhancement.md ("Available Models").
    _photo("generative_portrait_2x", "Generative Portrait Model 2x", _G, 2, pricing=_PORTRAIT),
    _photo("generative_portrait_4x", "Generative Portrait Model 4x", _G, 4, pricing=_PORTRAIT),
    _photo("generative_2x", "Generative Enhance Model 2x", _G, 2),
    _photo("generative_4x", "Generative Enhance Model 4x", _G, 4),
    _photo("generative_6x", "Generative Enhance Model 6x", _G, 6),
    _photo("generative_8x", "Generative Enhance Model 8x", _G, 8),
    # The fast generative models: HitPaw's current image documentation spells them
    # generative_enhance_fast_model_2x/4x, its MCP client generative_enhance_fast_2x/4x (an alias).
    # Billed, as generative models, by the Generative Enhance table (pricing.md names no other).
    _photo("generative_enhance_fast_model_2x", "Generative Enhance Fast Model 2x", _G, 2),
    _photo("generative_enhance_fast_model_4x", "Generative Enhance Fast Model 4x", _G, 4),
)

# video-enhancement.md, "Available Models" and "Model Specifications". Its request examples send
# ``video_enhance_v2``, a name its model table does not list (as the seed's photo examples send
# ``enhanced_v1``): not in the catalog, it goes through only with ``allow_unknown_model=True``.
VIDEO_MODELS: tuple[ModelSpec, ...] = (
    _video("face_soft_2x", "Face Soft Model 2x", 2),
    _video("portrait_restore_1x", "Portrait Restore Model 1x", 1),
    _video("portrait_restore_2x", "Portrait Restore Model 2x", 2),
    _video("general_restore_1x", "General Restore Model 1x", 1),
    _video("general_restore_2x", "General Restore Model 2x", 2),
    _video("general_restore_4x", "General Restore Model 4x", 4),
    _video("ultrahd_restore_2x", "Ultra HD Model 2x", 2, PriceTable.VIDEO_ULTRA_HD),
    _video("generative_1x", "Generative Model 1x", 1, PriceTable.VIDEO_GENERATIVE),
)

# Other spellings of the same photo model, each with the document that uses it. ``generative_1x`` is
# also the name of a video model: on the photo endpoint it is the photo model ``generative``.
MODEL_ALIASES: dict[str, str] = {
    "sharpen_denoise_1x": "sharpen_denoise",  # image-enhancement.md
    "detail_denoise_1x": "detail_denoise",  # image-enhancement.md
    "generative_portrait_1x": "generative_portrait",  # image-enhancement.md
    "generative_1x": "generative",  # image-enhancement.md
    "generative_enhance_fast_2x": "generative_enhance_fast_model_2x",  # the MCP client
    "generative_enhance_fast_4x": "generative_enhance_fast_model_4x",  # the MCP client
}
ALIAS_SOURCES: dict[str, str] = {
    "sharpen_denoise_1x": SOURCE_IMAGE_DOCS,
    "detail_denoise_1x": SOURCE_IMAGE_DOCS,
    "generative_portrait_1x": SOURCE_IMAGE_DOCS,
    "generative_1x": SOURCE_IMAGE_DOCS,
    "generative_enhance_fast_2x": SOURCE_MCP_CLIENT,
    "generative_enhance_fast_4x": SOURCE_MCP_CLIENT,
}

PHOTO_MODELS_BY_NAME: dict[str, ModelSpec] = {m.name: m for m in PHOTO_MODELS}
VIDEO_MODELS_BY_NAME: dict[str, ModelSpec] = {m.name: m for m in VIDEO_MODELS}
#: Every model by name. ``generative_1x`` is here the video model (the photo one is an alias).
MODELS: dict[str, ModelSpec] = {**PHOTO_MODELS_BY_NAME, **VIDEO_MODELS_BY_NAME}


def get_model(name: str, *, video: bool | None = None) -> ModelSpec | None:
    """Return the spec of a known model (or of an alias of one), else None.

    :param video: True to look among the video models only, False among the photo models (and
        their aliases) only; None for either, a name of both (``generative_1x``) being the video model.
    """
    if video is None:
        spec = MODELS.get(name)
        return spec if spec is not None else get_model(name, video=False)
    if video:
        return VIDEO_MODELS_BY_NAME.get(name)
    spec = PHOTO_MODELS_BY_NAME.get(name)
    if spec is None and name in MODEL_ALIASES:
        spec = PHOTO_MODELS_BY_NAME[MODEL_ALIASES[name]]
    return spec
