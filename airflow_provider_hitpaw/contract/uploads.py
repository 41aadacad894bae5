"""HitPaw's presigned uploads: the file types it accepts and the limits of a request.

Source: HitPaw's public developer documentation, https://github.com/shiyao1122/hitpaw-developer-docs,
``docs/common/oss-storage.md`` (its "Supported File Types" table; a file outside it is refused with
HTTP 400). The PUT must carry exactly the Content-Type the presign reply returns, else 403.
Audio and PDF are in HitPaw's whitelist too; no job of this provider takes them, so they are left out.
"""

from __future__ import annotations

#: Extension (lower case, no dot) -> the Content-Type HitPaw expects for it.
UPLOAD_PHOTO_TYPES: dict[str, str] = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
}
UPLOAD_VIDEO_TYPES: dict[str, str] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
}
#: Every file type an upload accepts.
UPLOAD_CONTENT_TYPES: dict[str, str] = {**UPLOAD_PHOTO_TYPES, **UPLOAD_VIDEO_TYPES}

#: ``expire_seconds`` of a presigned URL: 60 to 7200, 3600 when not given.
MIN_UPLOAD_EXPIRE_SECONDS = 60
MAX_UPLOAD_EXPIRE_SECONDS = 7200
DEFAULT_UPLOAD_EXPIRE_SECONDS = 3600
#: Files in one batch presign request.
MAX_UPLOAD_BATCH_FILES = 20
#: How long HitPaw keeps an uploaded file (7 days).
UPLOAD_LIFETIME_SECONDS = 7 * 86400


def upload_extension(filename: str) -> str | None:
    """The lower-case extension of ``filename`` (no dot), or None when it has none."""
    stem, dot, suffix = filename.rpartition(".")
    if not dot or not stem.strip(". /") or "/" in suffix:
        return None
    return suffix.lower()


def upload_content_type(filename: str) -> str | None:
    """The Content-Type HitPaw expects for ``filename``, or None when its type is not accepted."""
    extension = upload_extension(filename)
    return UPLOAD_CONTENT_TYPES.get(extension) if extension is not None else None
