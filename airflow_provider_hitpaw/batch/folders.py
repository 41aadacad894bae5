"""The batch's output folder: a local folder, or a folder in object storage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_provider_hitpaw.downloads import local_path_of_file_uri


def local_folder(output_path: Any) -> Path | None:
    """The local folder ``output_path`` names, or None for object storage."""
    if isinstance(output_path, str):
        if output_path[:5].lower() == "file:":
            return Path(local_path_of_file_uri(output_path))
        if "://" in output_path:
            return None
        return Path(os.path.expanduser(output_path))
    if hasattr(output_path, "protocol") and hasattr(output_path, "open"):  # an ObjectStoragePath
        return Path(output_path.path) if output_path.protocol in ("file", "local") else None
    return Path(os.fspath(output_path))


def storage_folder(output_path: Any) -> Any:
    """``output_path`` as an ``ObjectStoragePath``."""
    if isinstance(output_path, str):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(output_path.rstrip("/") + "/")
    return output_path


def folder_destination(output_path: Any) -> Any:
    """What ``HitPawHook.download_result`` is given so that ``output_path`` is read as a folder."""
    local = local_folder(output_path)
    if local is not None:
        return str(local) + os.sep
    return storage_folder(output_path)
