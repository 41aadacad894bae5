"""Where a downloaded result goes: the destination path, a safe file name, and an atomic write.

The HTTP side of a download lives in the hooks; this module never opens a socket.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_hitpaw.errors import HitPawValidationError

# 64 KiB: with requests' iter_content, 1 MiB chunks streamed at about 40% of curl's rate here, 64 KiB
# ones at about curl's (BENCHMARKS.md, download).
DOWNLOAD_CHUNK_BYTES = 64 * 1024


def resolve_destination(res_url: str, destination: Any) -> Any:
    name = unquote(urlsplit(res_url).path.rsplit("/", 1)[-1]) or "result"
    name = name.replace("\\", "_")
    if name in (".", ".."):
        name = "result"
    if isinstance(destination, str) and "://" in destination and not destination.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        as_folder = destination.endswith("/")
        path: Any = ObjectStoragePath(destination)
        return path / name if as_folder or path.is_dir() else path
    if isinstance(destination, (str, os.PathLike)):
        text = os.fspath(destination)
        if text.startswith("file://"):
            text = text[len("file://"):]
        local = Path(text)
        if text.endswith(("/", os.sep)) or local.is_dir():
            return local / name
        return local
    if hasattr(destination, "open"):  # an ObjectStoragePath
        return destination / name if destination.is_dir() else destination
    raise HitPawValidationError(f"destination must be a path or an ObjectStoragePath, got {destination!r}")


def write_stream(chunks: Any, target: Any) -> int:
    written = 0
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp: its 0600 mode would stick to the result; "x" mode honours the umask.
        tmp_name = target.parent / f".{target.name}.{secrets.token_hex(6)}.part"
        try:
            with open(tmp_name, "xb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    written += len(chunk)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return written
    with target.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            written += len(chunk)
    return written
