"""Where a downloaded result goes: the destination path, a safe file name, and an atomic write.

The HTTP side of a download lives in the hooks; this module never opens a socket.

Destinations (``output_path``) come in these forms:

* a local path, ``/data/out/`` or ``out/portrait.png`` (a ``str`` or an ``os.PathLike``);
* a ``file:`` URI naming a local path: ``file:///data/out/``, ``file://localhost/data/out/`` or
  ``file:/data/out/``, percent-encoded as URIs are (``file:///data/my%20out/``). A ``file:`` URI
  naming another host (``file://nas/share/``) is refused: this provider cannot write there;
* an object-storage URL (``s3://bucket/photos/``) or an ``ObjectStoragePath``.

A destination that ends with ``/`` or is an existing folder is a folder: the result gets a name of
this module's making (see :func:`result_file_name`). Any other destination is the file to write,
used as given.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_hitpaw.errors import (
    HitPawError,
    HitPawResultNotSavedError,
    HitPawResultNotSavedFailure,
    HitPawValidationError,
)
from airflow_provider_hitpaw.validation import JOB_ID_PATTERN

# 64 KiB: with requests' iter_content, 1 MiB chunks streamed at about 40% of curl's rate here, 64 KiB
# ones at about curl's (BENCHMARKS.md, download).
DOWNLOAD_CHUNK_BYTES = 64 * 1024

#: The longest file name (in UTF-8 bytes) most file systems accept (ext4, XFS, btrfs, APFS, ZFS).
MAX_NAME_BYTES = 255
#: The name used when nothing usable is left of the URL's.
FALLBACK_STEM = "result"
#: The extension of a result whose format neither ``res_url`` nor the photo's URL tells.
FALLBACK_EXTENSION = ".bin"

_URL_WITH_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# Kept in a name: Unicode letters and digits, "_", and a few harmless marks. Everything else (path
# separators, backslashes, NUL and other control or format characters, "%", "?", "#", ":", quotes,
# shell and glob characters) becomes "_".
_UNSAFE_CHARS = re.compile(r"[^\w.+=@,~() -]")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,10}")
# ".<name>.<12 hex>.part": the temporary file a local write goes through.
_PART_OVERHEAD_BYTES = len(".") + len(".") + 12 + len(".part")


# --- checking a destination ----------------------------------------------------------------------


def check_destination(destination: Any) -> None:
    """Check the form of a destination without touching the network or the file system.

    Call it before submitting a job: a destination refused after the job was paid for is a result
    paid for and not kept.

    :raises HitPawValidationError: for an empty destination, one holding a NUL character, a ``file:``
        URI that names another host or a relative path or carries a query or fragment, a malformed
        URL, an ``http(s)://`` URL (not writable), or an object that is no path.
    """
    if isinstance(destination, str):
        _check_text(destination)
        if _is_file_uri(destination):
            local_path_of_file_uri(destination)
        elif _URL_WITH_AUTHORITY.match(destination):
            scheme = destination.split(":", 1)[0].lower()
            if scheme in ("http", "https"):
                raise HitPawValidationError(
                    f"output_path {_show(destination)} is an {scheme}:// URL, which cannot be written "
                    "to: give a local path, a file:/// URI or an object-storage URL such as s3://bucket/"
                )
        return
    if _is_storage_path(destination):
        return
    if isinstance(destination, os.PathLike):
        text = os.fspath(destination)
        if isinstance(text, bytes):
            raise HitPawValidationError("output_path must be a text path, not bytes")
        _check_text(text)
        return
    raise HitPawValidationError(
        f"output_path must be a path, a URL or an ObjectStoragePath, got {type(destination).__name__}"
    )


def check_writable_destination(destination: Any) -> None:
    """:func:`check_destination`, then what this machine can tell before a job is paid for: a local
    destination's folder exists or can be created, and a file can be written there; an object-storage
    destination's filesystem is configured in this Airflow (no request is sent to the storage).

    Run by the operators in the worker, right before a new submission (not when a DAG file is parsed:
    the DAG processor need not see the workers' disks).

    :raises HitPawValidationError: with what is wrong and where; nothing was paid.
    """
    check_destination(destination)
    if isinstance(destination, str) and _is_file_uri(destination):
        text = local_path_of_file_uri(destination)
        _check_local_folder(Path(text), text.endswith("/"), destination)
    elif isinstance(destination, str) and _URL_WITH_AUTHORITY.match(destination):
        path = _storage_path(destination)
        if _is_local_storage(path):
            _check_local_folder(Path(path.path), destination.endswith("/"), destination)
    elif _is_storage_path(destination):
        if _is_local_storage(destination):
            _check_local_folder(Path(destination.path), False, str(destination))
        else:
            _storage_path(destination)
    else:
        text = os.fspath(destination)
        _check_local_folder(Path(text), text.endswith(("/", os.sep)), text)


def _storage_path(destination: Any) -> Any:
    """An ``ObjectStoragePath`` whose filesystem this Airflow can open (its scheme is registered by an
    installed provider); building the filesystem sends no request."""
    from airflow.sdk import ObjectStoragePath

    try:
        path = destination if _is_storage_path(destination) else ObjectStoragePath(destination)
        path.fs  # noqa: B018 - raises when no filesystem is registered for the scheme
    except Exception as err:
        raise HitPawValidationError(
            f"output_path {_show(str(destination))} cannot be written from this Airflow: {err}. Install the "
            "provider of that storage (apache-airflow-providers-amazon for s3://, -google for gs://...) and "
            "configure its connection; nothing was submitted"
        ) from None
    return path


def _check_local_folder(path: Path, as_folder: bool, shown: str) -> None:
    """The folder a local result goes to exists, or can be created, and takes a new file."""
    folder = path if as_folder or _is_dir(path) else path.parent
    existing = folder
    while not _exists(existing) and existing.parent != existing:
        existing = existing.parent
    where = f"output_path {_show(shown)}"
    if not _is_dir(existing):
        raise HitPawValidationError(
            f"{where} cannot be used: {str(existing)!r} is a file, not a folder, so {str(folder)!r} cannot "
            "be created; nothing was submitted"
        )
    probe = existing / f".hitpaw-write-check-{os.urandom(6).hex()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as err:
        missing = "" if existing == folder else f"{str(folder)!r} does not exist and "
        raise HitPawValidationError(
            f"{where} cannot be written on this worker: {missing}no file can be created in "
            f"{str(existing)!r} ({err.strerror or err}); a read-only or missing mount? Nothing was submitted"
        ) from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a folder on the way that may not be searched
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_storage_path(destination: Any) -> bool:
    """Whether it is an ``ObjectStoragePath`` (a ``pathlib.Path`` too on Airflow 3.1, whose
    ``os.fspath`` is its URL: it must not be read as a local path)."""
    return not isinstance(destination, str) and hasattr(destination, "protocol") and hasattr(destination, "open")


def _check_text(text: str) -> None:
    if not text.strip():
        raise HitPawValidationError("output_path must not be empty")
    if "\x00" in text:
        raise HitPawValidationError(f"output_path must not contain a NUL character: {_show(text)}")


def _is_file_uri(text: str) -> bool:
    return text[:5].lower() == "file:"


def local_path_of_file_uri(uri: str) -> str:
    """The local path a ``file:`` URI names, percent-decoded (RFC 8089).

    ``file:///abs``, ``file://localhost/abs`` and ``file:/abs`` all name ``/abs``; a trailing ``/`` is
    kept (it marks a folder).

    :raises HitPawValidationError: for another host (``file://nas/share``), a relative or empty path,
        a query or fragment, or a path that decodes to a NUL character.
    """
    host, path = split_file_uri(uri)
    if host:
        raise HitPawValidationError(
            f"output_path {_show(uri)} names a file on host {host!r}; only local files can be written: "
            "use file:///path (or file://localhost/path), or mount the share and give its local path"
        )
    return path


def split_file_uri(uri: str) -> tuple[str, str]:
    """``(host, path)`` of a ``file:`` URI, the host empty for the local machine, the path decoded.

    :raises HitPawValidationError: when it is not a well-formed ``file:`` URI with an absolute path.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as err:
        raise HitPawValidationError(f"output_path {_show(uri)} is not a valid file: URI: {err}") from None
    if parts.scheme.lower() != "file":
        raise HitPawValidationError(f"{_show(uri)} is not a file: URI")
    if parts.query or parts.fragment or uri.endswith(("?", "#")):
        raise HitPawValidationError(
            f"output_path {_show(uri)} has a query or fragment ('?' or '#'), which a file: URI of a "
            "local file cannot have: write them percent-encoded (%3F, %23) or give a plain path"
        )
    host = parts.netloc
    if host.lower() == "localhost":
        host = ""
    # Undecodable bytes map to surrogates, which os functions turn back into the same bytes.
    path = unquote(parts.path, errors="surrogateescape")
    if not host and path.startswith("//"):  # file:////server/share: a UNC path, not a local one
        host = path[2:].split("/", 1)[0] or "?"
    if not path.startswith("/"):
        raise HitPawValidationError(
            f"output_path {_show(uri)} is a file: URI without an absolute path: use file:///absolute/path"
        )
    if "\x00" in path:
        raise HitPawValidationError(f"output_path {_show(uri)} decodes to a path with a NUL character")
    return host, path


def _show(text: str) -> str:
    return repr(text[:200] + ("..." if len(text) > 200 else ""))


# --- a result paid for and not saved ----------------------------------------------------------------

#: How long HitPaw keeps an enhancement's result after the job ends: 8 days (HitPaw's FAQ,
#: docs/faq.md of its developer docs).
RESULT_KEPT_SECONDS = 8 * 24 * 3600


def result_not_saved_error(
    job_id: str, res_url: str, destination: Any, err: BaseException, *, clear_reconnects: bool
) -> HitPawResultNotSavedError:
    """The error for a completed, paid job whose result could not be copied to ``destination``.

    It names the job, the result's URL (without its query string: the full URL is in the XCom
    ``res_url``), until when HitPaw keeps it, and what a retry or a clear does.

    :param clear_reconnects: whether a retry or a clear reconnects to the job (Airflow 3.3+) rather
        than paying again; if not, the error fails the task without retries.
    """
    from datetime import UTC, datetime, timedelta

    from airflow_provider_hitpaw.api import shown_url

    until = datetime.now(UTC) + timedelta(seconds=RESULT_KEPT_SECONDS)
    reason = f"{type(err).__name__}: {str(err)[:300]}" if not isinstance(err, HitPawError) else str(err)[:300]
    message = (
        f"HitPaw job {job_id} is completed and paid for, but its result could not be copied to "
        f"{_show(str(destination))} ({reason}). The result is at {shown_url(res_url)} (the full URL is in "
        f"the XCom 'res_url'); HitPaw keeps it 8 days after the job ended, so until "
        f"{until:%Y-%m-%d %H:%M} UTC at the latest. "
    )
    if clear_reconnects:
        message += (
            "Fix output_path's folder, then clear this task: it reconnects to the same job and copies "
            "the result without paying again."
        )
        return HitPawResultNotSavedError(message, job_id=job_id, res_url=res_url)
    message += (
        "Not retried: on this Airflow (before 3.3) a retry or a clear submits the photo again and pays "
        "again; fetch the result from its URL instead."
    )
    return HitPawResultNotSavedFailure(message, job_id=job_id, res_url=res_url)


# --- resolving a destination ---------------------------------------------------------------------


def resolve_destination(
    res_url: str, destination: Any, *, job_id: str | None = None, source_url: str | None = None
) -> Any:
    """The file a result is written to: a :class:`~pathlib.Path`, or an ``ObjectStoragePath``.

    A destination naming a file is used as given (a ``file:`` URI becomes its local path). A
    destination naming a folder (it ends with ``/``, or is an existing folder) gets the file name
    :func:`result_file_name` makes: with a ``job_id``, ``<photo's stem>-<job_id><result's
    extension>`` (``portrait-7f3a.png``), so two jobs never overwrite each other in one folder and a
    retry of the same job writes the same name; without one, a safe form of the name ``res_url``
    ends with. A name never holds a path separator, so the file is always inside the folder.

    :param res_url: the result's URL (only its file name and extension are used here).
    :param destination: see the module's description for the forms accepted.
    :param job_id: the HitPaw job the result belongs to.
    :param source_url: the photo's URL, whose file name gives the result's stem.
    :raises HitPawValidationError: for a destination :func:`check_destination` refuses, or an invalid
        ``job_id``.
    """
    check_destination(destination)
    name = result_file_name(res_url, job_id=job_id, source_url=source_url)
    if isinstance(destination, str) and not _is_file_uri(destination) and _URL_WITH_AUTHORITY.match(destination):
        from airflow.sdk import ObjectStoragePath

        as_folder = destination.endswith("/")
        path: Any = ObjectStoragePath(destination)
        if _is_local_storage(path):
            return _local_target(Path(path.path), as_folder, name)
        return path / name if as_folder or path.is_dir() else path
    if isinstance(destination, str) and _is_file_uri(destination):
        text = local_path_of_file_uri(destination)
        return _local_target(Path(text), text.endswith("/"), name)
    if _is_storage_path(destination):
        if _is_local_storage(destination):
            return _local_target(Path(destination.path), False, name)
        return destination / name if destination.is_dir() else destination
    text = os.fspath(destination)  # a str or an os.PathLike (check_destination let nothing else by)
    return _local_target(Path(text), text.endswith(("/", os.sep)), name)


def _is_local_storage(path: Any) -> bool:
    return getattr(path, "protocol", None) in ("file", "local")


def _local_target(path: Path, as_folder: bool, name: str) -> Path:
    if not (as_folder or path.is_dir()):
        return path
    target = path / name
    # Belt and braces: result_file_name never yields a separator, "." or "..".
    if target.parent != path or target.name != name:
        raise HitPawValidationError(f"Refusing to write result name {name!r} outside {str(path)!r}")
    return target


# --- naming a result ------------------------------------------------------------------------------


def result_file_name(res_url: str, *, job_id: str | None = None, source_url: str | None = None) -> str:
    """The file name a result gets in a destination folder.

    With a ``job_id``: ``<stem>-<job_id><extension>``, where

    * ``<stem>`` is the file name of ``source_url`` (the photo's URL) without query string and
      extension, percent-decoded and made safe (see :func:`safe_file_name`), with ``-`` turned into
      ``_`` (so the first ``-`` always ends the stem and no two job ids can give one name), or
      ``result`` when nothing is left;
    * ``<job_id>`` is the job id (a ``:`` in it becomes ``~``);
    * ``<extension>`` is the extension of ``res_url``'s file name, lower-cased, else that of
      ``source_url``, else ``.bin``.

    The stem is shortened so the name fits in 255 bytes. Same inputs, same name: a retry of a job
    writes over its own earlier copy and nothing else.

    Without a ``job_id`` (direct hook use): the safe form of ``res_url``'s own file name.
    """
    if job_id is None:
        return safe_file_name(_last_segment(res_url))
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise HitPawValidationError(f"job_id must be a HitPaw job id, got {str(job_id)[:80]!r}")
    job_part = job_id.replace(":", "~")
    extension = _extension_of(_last_segment(res_url))
    if extension is None and source_url:
        extension = _extension_of(_last_segment(source_url))
    extension = extension or FALLBACK_EXTENSION
    stem = ""
    if source_url:
        source_name = safe_file_name(_last_segment(source_url), fallback="")
        stem = source_name[: -len(ext)] if (ext := _extension_of(source_name)) else source_name
    stem = _tidy(stem.replace("-", "_"))
    budget = MAX_NAME_BYTES - len(f"-{job_part}{extension}".encode())
    stem = _tidy(_truncate_utf8(stem, budget)) or FALLBACK_STEM
    return f"{stem}-{job_part}{extension}"


def safe_file_name(name: str, *, fallback: str = FALLBACK_STEM) -> str:
    """A file name that cannot leave its folder or hide: one path segment, at most 255 UTF-8 bytes.

    Every character other than letters, digits and ``_ . + = @ , ~ ( ) -`` and the space becomes
    ``_`` (so no ``/``, ``\\``, NUL or control character survives); leading dots (hidden names, ``.``,
    ``..``), leading ``-`` and trailing dots and spaces are dropped; an over-long name is cut before
    its extension. Nothing left gives ``fallback``.
    """
    cleaned = _tidy(_UNSAFE_CHARS.sub("_", unicodedata.normalize("NFC", name)))
    if not cleaned:
        return fallback
    if len(cleaned.encode()) <= MAX_NAME_BYTES:
        return cleaned
    extension = _extension_of(cleaned) or ""
    stem = _tidy(_truncate_utf8(cleaned[: len(cleaned) - len(extension)], MAX_NAME_BYTES - len(extension)))
    return (stem or fallback) + extension


def _last_segment(url: str) -> str:
    """The last segment of a URL's path, percent-decoded *before* splitting, so ``%2F`` splits too."""
    try:
        path = urlsplit(url).path
    except ValueError:
        path = url.split("?", 1)[0].split("#", 1)[0]
    decoded = unquote(path, errors="replace")
    return re.split(r"[/\\]", decoded)[-1]


def _extension_of(name: str) -> str | None:
    stem, dot, suffix = name.rpartition(".")
    extension = f".{suffix.lower()}"
    if dot and stem.strip(".") and _EXTENSION.fullmatch(extension):
        return extension
    return None


def _tidy(name: str) -> str:
    return name.lstrip(".- ").rstrip(". ")


def _truncate_utf8(text: str, max_bytes: int) -> str:
    if max_bytes <= 0:
        return ""
    return text.encode()[:max_bytes].decode(errors="ignore")


# --- writing --------------------------------------------------------------------------------------


def write_stream(chunks: Any, target: Any) -> int:
    """Write chunks to ``target``; a local file goes through a temporary name and a rename.

    :return: the number of bytes written.
    """
    written = 0
    if isinstance(target, Path) and not _is_storage_path(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp: its 0600 mode would stick to the result; "x" mode honours the umask. The
        # temporary name stays within the 255-byte limit however long the target's name is.
        prefix = _truncate_utf8(target.name, MAX_NAME_BYTES - _PART_OVERHEAD_BYTES)
        tmp_name = target.parent / f".{prefix}.{os.urandom(6).hex()}.part"
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

