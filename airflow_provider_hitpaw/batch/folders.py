"""The batch's output folder: local or in object storage, checked before anything is paid for."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from airflow_provider_hitpaw.downloads import check_destination, local_path_of_file_uri
from airflow_provider_hitpaw.errors import HitPawValidationError


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


def check_output_folder(output_path: Any) -> None:
    """Before paying: ``output_path`` is a folder this worker can create and write to.

    A local folder is created if missing and a probe file written and removed; in object storage the
    probe is written through the configured filesystem (a missing connection fails here).

    :raises HitPawValidationError: when it is not so, with the reason.
    """
    check_destination(output_path)
    probe_name = f".hitpaw-probe-{uuid.uuid4().hex[:8]}"
    local = local_folder(output_path)
    try:
        if local is not None:
            if local.exists() and not local.is_dir():
                raise HitPawValidationError(f"output_path {str(local)[:200]!r} is a file, not a folder")
            local.mkdir(parents=True, exist_ok=True)
            probe = local / probe_name
            probe.write_bytes(b"")
            probe.unlink()
        else:
            folder = storage_folder(output_path)
            probe = folder / probe_name
            probe.write_bytes(b"")
            probe.unlink()
    except HitPawValidationError:
        raise
    except Exception as err:
        raise HitPawValidationError(
            f"output_path {str(output_path)[:200]!r} cannot be written by this worker "
            f"({type(err).__name__}: {str(err)[:200]}). Nothing was sent to HitPaw."
        ) from None
