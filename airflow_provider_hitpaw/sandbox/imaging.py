"""The Pillow work of the sandbox: reading image headers, enhancing images, drawing the samples.

Pillow is imported on first use only, and a missing Pillow is reported with the command that
installs it. Every function here is blocking: the server runs them in its worker threads.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PILLOW_MISSING_MESSAGE = "The HitPaw sandbox needs Pillow: pip install 'airflow-provider-hitpaw[sandbox]'"

# Pillow's name for each input format the models accept (HEIF opens only with a HEIF plugin).
ACCEPTED_INPUT_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TGA", "TIFF", "WEBP", "HEIF"})

# Output extension -> (Pillow format, content type, keeps alpha, keeps EXIF, keeps DPI)
_OUTPUTS: dict[str, tuple[str, str, bool, bool, bool]] = {
    "jpg": ("JPEG", "image/jpeg", False, True, True),
    "jpeg": ("JPEG", "image/jpeg", False, True, True),
    "jfif": ("JPEG", "image/jpeg", False, True, True),
    "png": ("PNG", "image/png", True, True, True),
    "webp": ("WEBP", "image/webp", True, True, False),
    "bmp": ("BMP", "image/bmp", False, False, True),
    "tiff": ("TIFF", "image/tiff", True, True, True),
    "tga": ("TGA", "image/x-tga", True, False, False),
}

_OTHER_CONTENT_TYPES = {
    "mp4": "video/mp4", "mov": "video/quicktime", "m4v": "video/x-m4v", "mkv": "video/x-matroska",
    "avi": "video/x-msvideo", "gif": "image/gif", "bin": "application/octet-stream",
}

_EXIF_MAKE = 0x010F
_EXIF_SOFTWARE = 0x0131


class PillowMissingError(RuntimeError):
    """Pillow is not installed."""


class NotAnImageError(ValueError):
    """The bytes are not an image in a format the models accept."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says.

    :param width: in pixels (0 when the header was too large for Pillow to read it).
    :param height: in pixels.
    :param format: Pillow's name of the format (``JPEG``).
    :param megapixels: width x height / 1e6; infinite when Pillow refused the header as a
        decompression bomb.
    """

    width: int
    height: int
    format: str
    megapixels: float


def require_pillow() -> Any:
    """Import Pillow's ``Image`` module, or raise :class:`PillowMissingError` saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise PillowMissingError(PILLOW_MISSING_MESSAGE) from None
    return Image


def content_type_for(file_name: str) -> str:
    """The Content-Type of a result file, from its extension."""
    ext = file_name.rsplit(".", 1)[-1].lower()
    if ext in _OUTPUTS:
        return _OUTPUTS[ext][1]
    return _OTHER_CONTENT_TYPES.get(ext, "application/octet-stream")


def probe_image(data: bytes) -> ImageInfo:
    """Read an image's size from its header, without decoding its pixels.

    :raises NotAnImageError: when the bytes are no image, or one in a format no model accepts.
    """
    image_module = require_pillow()
    try:
        with image_module.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            width, height = img.size
    except image_module.DecompressionBombError:
        # Pillow refuses headers over 2 x MAX_IMAGE_PIXELS (about 179 MP): far over any model's limit.
        return ImageInfo(0, 0, "", math.inf)
    except (OSError, ValueError, SyntaxError) as err:
        raise NotAnImageError(f"not an image: {err}") from None
    if fmt not in ACCEPTED_INPUT_FORMATS:
        raise NotAnImageError(f"image format {fmt or 'unknown'} is not accepted")
    return ImageInfo(width, height, fmt, width * height / 1_000_000)


def enhance_image(
    data: bytes,
    out_path: Path,
    *,
    model_name: str,
    model_kind: str,
    scale: int,
    extension: str,
    keep_exif: bool = False,
    dpi: int | None = None,
) -> None:
    """Enhance an image the way a model of its kind would (roughly) and write the result.

    The image is resized by ``scale`` with LANCZOS, then filtered: sharpening for face and general
    models, detail for high fidelity ones, a median or blur pass for denoise models, contrast and
    colour for generative ones. It is not rotated by its EXIF orientation.

    :param data: the input image's bytes.
    :param out_path: where to write the result (written to a temporary name, then renamed).
    :param model_name: the model's API name (``face_2x``).
    :param model_kind: ``enhance``, ``denoise`` or ``generative``.
    :param scale: how many times each side grows.
    :param extension: output extension without the dot (``png``).
    :param keep_exif: copy the input's EXIF into the result when the format can hold it.
    :param dpi: DPI to record in the result when the format can hold it.
    """
    image_module = require_pillow()
    pil_format, _, keeps_alpha, keeps_exif, keeps_dpi = _OUTPUTS[extension]
    with image_module.open(io.BytesIO(data)) as source:
        exif = source.getexif() if keep_exif and keeps_exif else None
        has_alpha = source.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            source.mode == "P" and "transparency" in source.info
        )
        rgba = source.convert("RGBA") if has_alpha else None
        rgb = rgba.convert("RGB") if rgba is not None else source.convert("RGB")
    alpha = rgba.getchannel("A") if rgba is not None else None
    if scale != 1:
        size = (rgb.width * scale, rgb.height * scale)
        rgb = rgb.resize(size, image_module.Resampling.LANCZOS)
        if alpha is not None:
            alpha = alpha.resize(size, image_module.Resampling.LANCZOS)
    result = _apply_model_filter(rgb, model_name, model_kind)
    if alpha is not None:
        if keeps_alpha:
            result.putalpha(alpha)
        else:
            background = image_module.new("RGB", result.size, "white")
            background.paste(result, mask=alpha)
            result = background

    options: dict[str, Any] = {}
    if pil_format == "JPEG":
        options["quality"] = 92
    if exif is not None and len(exif):
        options["exif"] = exif.tobytes()
    if dpi is not None and keeps_dpi:
        options["dpi"] = (dpi, dpi)
    partial = out_path.with_name(out_path.name + ".partial")
    result.save(partial, format=pil_format, **options)
    os.replace(partial, out_path)


def _apply_model_filter(img: Any, model_name: str, model_kind: str) -> Any:
    from PIL import ImageEnhance, ImageFilter, ImageOps

    if model_kind == "generative":
        img = ImageOps.autocontrast(img, cutoff=1)
        img = ImageEnhance.Color(img).enhance(1.15)
        return img.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=3))
    if model_kind == "denoise":
        if model_name.startswith("sharpen"):
            return img.filter(ImageFilter.MedianFilter(3)).filter(
                ImageFilter.UnsharpMask(radius=1.5, percent=80, threshold=2)
            )
        return img.filter(ImageFilter.GaussianBlur(0.7)).filter(ImageFilter.DETAIL)
    if model_name.startswith("high_fidelity"):
        return img.filter(ImageFilter.DETAIL)
    if model_name.startswith("face"):
        return img.filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=3))
    return img.filter(ImageFilter.UnsharpMask(radius=1.5, percent=100, threshold=2))


def landscape_png() -> bytes:
    """A small colourful 320x200 PNG."""
    image_module = require_pillow()
    from PIL import ImageDraw

    size = (320, 200)
    red = image_module.linear_gradient("L").resize(size)
    green = image_module.linear_gradient("L").rotate(90).resize(size)
    blue = image_module.radial_gradient("L").resize(size)
    img = image_module.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(img)
    draw.ellipse((220, 20, 290, 90), fill=(255, 220, 60))
    draw.polygon([(0, 200), (110, 80), (200, 200)], fill=(40, 110, 60))
    draw.polygon([(120, 200), (240, 100), (320, 200)], fill=(30, 80, 50))
    return _encode(img, "PNG")


def exif_jpeg() -> bytes:
    """The landscape as a JPEG carrying EXIF (Make and Software tags)."""
    image_module = require_pillow()
    img = image_module.open(io.BytesIO(landscape_png())).convert("RGB")
    exif = image_module.Exif()
    exif[_EXIF_MAKE] = "HitPaw Sandbox"
    exif[_EXIF_SOFTWARE] = "airflow-provider-hitpaw sandbox"
    return _encode(img, "JPEG", exif=exif.tobytes(), quality=90)


def huge_png(width: int = 9000, height: int = 8000) -> bytes:
    """A one-colour PNG whose header says 72 MP (over the 67 MP input limit); about 25 KB."""
    image_module = require_pillow()
    return _encode(image_module.new("1", (width, height), 1), "PNG")


def _encode(img: Any, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()
