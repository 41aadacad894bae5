"""The items of a batch: photos given as URLs or found under an input path, each with a key that names
one enhancement of one version of one photo (the same source, model, extension, EXIF and DPI)."""

from __future__ import annotations

import glob as globbing
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_hitpaw.contract.uploads import UPLOAD_PHOTO_TYPES, upload_extension
from airflow_provider_hitpaw.errors import HitPawValidationError

#: The folder, under ``output_path``, where the ledger lives: skipped when listing an input folder.
HIDDEN_FOLDER = ".hitpaw"
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class BatchItem:
    """One photo of a batch.

    :param source: the URL or the path as listed (for the manifest and the result's name).
    :param version: what tells this version of the source from another: the URL itself, or a file's
        size and modification time (or ETag) beside its path.
    :param is_file: a file to upload first (free), rather than a public URL.
    """

    source: str
    version: str
    is_file: bool

    def key(self, settings: dict[str, Any]) -> str:
        """The item's name in the ledger: the same photo version with the same settings, same key."""
        identity = json.dumps([self.version, settings], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(identity.encode()).hexdigest()[:32]


def url_items(img_urls: object) -> list[BatchItem]:
    """The items of ``img_urls`` (a list of strings), in order, duplicates dropped."""
    if img_urls is None:
        return []
    if isinstance(img_urls, str) or not isinstance(img_urls, (list, tuple)):
        raise HitPawValidationError(f"img_urls must be a list of URLs, got {type(img_urls).__name__}")
    seen: set[str] = set()
    items = []
    for url in img_urls:
        if not isinstance(url, str) or not url.strip():
            raise HitPawValidationError(f"img_urls must hold non-empty strings, got {str(url)[:80]!r}")
        url = url.strip()
        if url not in seen:
            seen.add(url)
            items.append(BatchItem(source=url, version=url, is_file=False))
    return items


def path_items(input_path: object) -> list[BatchItem]:
    """The photos under ``input_path``: a local folder (its files, not its subfolders), a glob
    (``/data/in/*.jpg``, ``s3://bucket/in/*.jpg``), an object-storage prefix (``s3://bucket/in/``) or
    an ``ObjectStoragePath``. Only the photo types HitPaw's upload accepts are kept; sorted by path.

    :raises HitPawValidationError: for a local folder that does not exist, or a glob matching nothing
        while its folder does not exist (a typo should not look like an empty night).
    """
    if input_path is None or input_path == "":
        return []
    text = input_path if isinstance(input_path, str) else None
    if text is not None and "://" not in text and not text.lower().startswith("file:"):
        return _local_items(text)
    if text is not None and text.lower().startswith("file:"):
        from airflow_provider_hitpaw.downloads import local_path_of_file_uri

        return _local_items(local_path_of_file_uri(text))
    return _storage_items(input_path)


def _is_photo(name: str) -> bool:
    return upload_extension(name) in UPLOAD_PHOTO_TYPES


def _local_items(text: str) -> list[BatchItem]:
    if _GLOB_CHARS & set(text):
        paths = [Path(p) for p in globbing.glob(os.path.expanduser(text))]
        if not paths and not Path(os.path.expanduser(text)).parent.is_dir():
            raise HitPawValidationError(f"input_path {text[:200]!r}: its folder does not exist")
    else:
        folder = Path(os.path.expanduser(text))
        if not folder.is_dir():
            raise HitPawValidationError(f"input_path {text[:200]!r} is not a folder")
        paths = [p for p in folder.iterdir() if not p.name.startswith(".")]
    items = []
    for path in sorted(paths):
        if not path.is_file() or not _is_photo(path.name) or HIDDEN_FOLDER in path.parts:
            continue
        stat = path.stat()
        absolute = str(path.absolute())
        items.append(BatchItem(absolute, f"{absolute}|{stat.st_size}|{stat.st_mtime_ns}", is_file=True))
    return items


def _storage_items(input_path: Any) -> list[BatchItem]:
    from airflow.sdk import ObjectStoragePath

    base = input_path if not isinstance(input_path, str) else None
    text = str(input_path)
    pattern = None
    if base is None:
        if _GLOB_CHARS & set(text):
            folder, _, pattern = text.rpartition("/")
            base = ObjectStoragePath(folder + "/")
        else:
            base = ObjectStoragePath(text)
    candidates = base.glob(pattern) if pattern else base.iterdir()
    items = []
    for path in sorted(candidates, key=str):
        name = path.name
        if name.startswith(".") or not _is_photo(name) or not path.is_file():
            continue
        info = path.stat()
        size = _info(info, "size")
        stamp = _info(info, "ETag") or _info(info, "etag") or _info(info, "mtime") or _info(info, "LastModified")
        items.append(BatchItem(str(path), f"{path}|{size}|{stamp}", is_file=True))
    return items


def _info(info: Any, name: str) -> Any:
    try:
        value = info[name] if isinstance(info, dict) else getattr(info, name, None)
    except (KeyError, TypeError):
        return None
    if value is None:
        return None
    return value if isinstance(value, (int, float, str)) else str(value)
