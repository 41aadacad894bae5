"""OpenLineage datasets for HitPaw inputs and results, without depending on OpenLineage."""

from __future__ import annotations

import os
from urllib.parse import urlsplit


def dataset_identity(location: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a URL, an object-storage URL or a local path.

    The query string is dropped: HitPaw's result URLs are signed, and a signature is neither part
    of a dataset's identity nor something to publish.
    """
    parts = urlsplit(location)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{parts.scheme}://{netloc}", parts.path or "/"
    if parts.scheme and parts.scheme != "file" and len(parts.scheme) > 1:  # s3://, gs://, ...
        return f"{parts.scheme}://{parts.hostname or parts.netloc}", parts.path.lstrip("/")
    path = parts.path if parts.scheme == "file" else location
    return "file", os.path.abspath(path)
