"""OpenLineage datasets for HitPaw inputs and results, without depending on OpenLineage."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit


def dataset_identity(location: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a URL, an object-storage URL or a local path.

    The query string is dropped: HitPaw's result URLs are signed, and a signature is neither part
    of a dataset's identity nor something to publish. A local file is ``("file", absolute path)``,
    whether given as a path or as a ``file:`` URI (``file:///a``, ``file://localhost/a``, ``file:/a``,
    percent-decoded); a ``file:`` URI naming another host is ``("file://host", path)``.
    """
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{scheme}://{netloc}", parts.path or "/"
    if scheme == "file":
        host = "" if parts.netloc.lower() == "localhost" else parts.netloc
        path = unquote(parts.path, errors="surrogateescape")
        if host:
            return f"file://{host}", path or "/"
        return "file", os.path.abspath(path or "/")
    if len(scheme) > 1 and location[len(scheme) : len(scheme) + 3] == "://":  # s3://, gs://, ...
        return f"{scheme}://{parts.hostname or parts.netloc}", parts.path.lstrip("/")
    return "file", os.path.abspath(location)
