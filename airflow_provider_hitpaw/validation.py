"""The checks made before any request that costs coins: model names, extensions, URLs, DPI, EXIF,
and the submission body they make up. Every failure is a :class:`HitPawValidationError`.

The limits themselves are HitPaw's, in :mod:`airflow_provider_hitpaw.contract.catalog`.
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_hitpaw.contract.catalog import (
    MODEL_ALIASES,
    PHOTO_INPUT_FORMATS,
    PHOTO_MODELS,
    PHOTO_OUTPUT_FORMATS,
    VIDEO_MAX_OUTPUT_MEGAPIXELS,
    VIDEO_MODELS,
    VIDEO_OUTPUT_FORMATS,
    ModelSpec,
    get_model,
)

if TYPE_CHECKING:
    from airflow_provider_hitpaw.errors import HitPawValidationError


def _invalid(message: str) -> HitPawValidationError:
    """The typed error, imported on first use so that the sandbox can use this catalog without Airflow."""
    from airflow_provider_hitpaw.errors import HitPawValidationError

    return HitPawValidationError(message)


def _show(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages.

    Never raises: the repr of an int of more than 4300 digits raises ``ValueError``, and a user's
    object may have any ``__repr__``.
    """
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suggestion(name: str, candidates: list[str]) -> str:
    if len(name) > MAX_MODEL_NAME_LENGTH:
        return ""
    import difflib

    close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


MAX_MODEL_NAME_LENGTH = 64
# What a model name this provider does not list may look like (allow_unknown_model=True): HitPaw's own
# names are ASCII letters, digits and underscores (``face_v2_4x``).
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


#: A job id travels in URLs, logs, file names and XCom: keep it to a sane alphabet and length.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def validate_job_id(job_id: object) -> str:
    """A job id as HitPaw returns them, or :class:`HitPawValidationError`."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise _invalid(
            f"job_id must be a HitPaw job id (letters, digits, '-', '_', '.', ':'; at most 128), "
            f"got {str(job_id)[:80]!r}"
        )
    return job_id


def validate_model_name(
    model_name: object, *, video: bool = False, allow_unknown_model: bool = False
) -> ModelSpec | None:
    """Check a model name before it is sent.

    :param model_name: the ``model_name`` to send.
    :param video: whether the request goes to the video endpoint.
    :param allow_unknown_model: let a name that is not in the catalog through to the API
        (HitPaw's model names drift); its limits are then left to HitPaw. Such a name must still look
        like one: at most 64 ASCII letters, digits, ``_``, ``-`` and ``.``.
    :return: the model's spec, or None for an allowed unknown name.
    :raises HitPawValidationError: for a missing, mistyped or unknown name.
    """
    if not isinstance(allow_unknown_model, bool):
        raise _invalid(f"allow_unknown_model must be True or False, got {_show(allow_unknown_model)}")
    if not isinstance(model_name, str) or not model_name.strip():
        raise _invalid(f"model_name must be a non-empty string, got {_show(model_name)}")
    if model_name != model_name.strip():
        raise _invalid(f"model_name {_show(model_name)} has leading or trailing white space")
    spec = get_model(model_name, video=video)
    family = VIDEO_MODELS if video else PHOTO_MODELS
    names = [m.name for m in family]
    if spec is not None:
        return spec
    spec = get_model(model_name, video=not video)
    if spec is not None:
        kind = "a video" if spec.is_video else "a photo"
        raise _invalid(
            f"model_name {model_name!r} is {kind} model; valid {'video' if video else 'photo'} "
            f"models: {', '.join(names)}"
        )
    if allow_unknown_model:
        if len(model_name) > MAX_MODEL_NAME_LENGTH or not _MODEL_NAME_RE.match(model_name):
            raise _invalid(
                f"model_name {_show(model_name)} is not a model name: at most {MAX_MODEL_NAME_LENGTH} "
                "ASCII letters, digits, '_', '-' and '.'"
            )
        return None
    raise _invalid(
        f"Unknown HitPaw model {_show(model_name)}.{_suggestion(model_name, names + list(MODEL_ALIASES))} "
        f"Valid {'video' if video else 'photo'} models: {', '.join(names)}. "
        "Pass allow_unknown_model=True to send a name this provider does not list."
    )


MAX_EXTENSION_LENGTH = 10


def normalize_extension(extension: object) -> str:
    """Return an extension in the form the API takes: lower case with a leading dot (``.jpg``)."""
    if not isinstance(extension, str) or not extension.strip(".").strip():
        raise _invalid(
            f"extension must be a non-empty string such as '.jpg', got {_show(extension)}"
        )
    ext = extension.strip().lower()
    if not ext.startswith("."):
        ext = "." + ext
    name = ext[1:]
    if len(name) > MAX_EXTENSION_LENGTH or not (name.isascii() and name.isalnum()):
        raise _invalid(f"extension {_show(extension)} is not a file extension such as '.jpg'")
    return ext


def validate_extension(extension: object, spec: ModelSpec | None) -> str:
    """Normalise an extension and check that the model can write it.

    With no spec (a model this provider does not list, or one not known yet) the extension must be
    one HitPaw writes for photos (:data:`PHOTO_OUTPUT_FORMATS`): whatever the model, a photo job
    cannot produce a video or a HEIF file.

    :raises HitPawValidationError: with the list of valid extensions.
    """
    ext = normalize_extension(extension)
    allowed = spec.output_formats if spec is not None else PHOTO_OUTPUT_FORMATS
    if ext[1:] not in allowed:
        model = f"model {spec.name!r}" if spec is not None else "a HitPaw photo job"
        hint = ""
        if ext[1:] in PHOTO_INPUT_FORMATS and ext[1:] not in allowed:
            hint = f" {ext} is accepted as input only: pass extension='.png' or '.jpg' for the result."
        elif ext[1:] in VIDEO_OUTPUT_FORMATS and ext[1:] not in allowed:
            hint = f" {ext} is a video format: a photo job writes a picture."
        raise _invalid(
            f"Extension {ext!r} is not valid for {model}. Valid extensions: "
            f"{', '.join('.' + f for f in allowed)}.{hint}"
        )
    return ext


def extension_from_url(url: str) -> str | None:
    """The file extension of a URL's path (``.jpg``), or None when it has no known one."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    ext = "." + name.rsplit(".", 1)[-1].lower()
    if ext[1:] in PHOTO_INPUT_FORMATS + VIDEO_OUTPUT_FORMATS:
        return ext
    return None


# --- URLs -------------------------------------------------------------------------------------------

MAX_URL_LENGTH = 4096
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63

# RFC 3986: the characters each part of a URL may hold as they are; any other is percent-encoded.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_USERINFO_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:")
_PATH_CHARS = _USERINFO_CHARS | frozenset("@/")
_QUERY_CHARS = _PATH_CHARS | frozenset("?")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# A last label that parsers (WHATWG, libc's inet_aton) read as a number makes the whole host an IPv4
# address: ``1.2.3``, ``0x7f.1``.
_NUMERIC_LABEL_RE = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
_HOST_PORT_RE = re.compile(r"(\[[^\[\]]*\]|[^\[\]:]*)(?::([0-9]*))?\Z")
# Blank characters outside the C* and Z* categories (Unicode Default_Ignorable_Code_Point: the combining
# grapheme joiner, the Hangul fillers, Khmer inherent vowels, Mongolian variation selectors). Emoji
# variation selectors (U+FE0F) are left alone: file names hold emoji.
_INVISIBLE = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
)


def _unprintable(char: str) -> bool:
    """Control, format (zero-width, BOM, bidi), surrogate, private-use, unassigned, any space, or
    otherwise invisible."""
    import unicodedata

    if char.isascii():
        return not "!" <= char <= "~"
    if unicodedata.category(char)[0] in "CZ":
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _INVISIBLE)


def _quote(text: str, allowed: frozenset[str]) -> str:
    """Percent-encode (UTF-8) every character of ``text`` outside ``allowed`` but its ``%XX`` escapes;
    decode the escapes of unreserved characters and upper-case the others, as RFC 3986 normalises."""

    def escape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    text = _ESCAPE_RE.sub(escape, text)
    return "".join(
        c if c in allowed or c == "%" else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text
    )


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: ``/a/./b/../c`` is ``/a/c``."""
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    output: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment != "..":
            output.append(segment)
        elif len(output) > 1:
            output.pop()
    if not output or output[0]:
        output.insert(0, "")
    if segments[-1] in (".", ".."):
        output.append("")
    return "/".join(output) or "/"


def _canonical_host(host: str, field: str, shown: str) -> str:
    """The host in lower case ASCII (IDNA-encoded), or raise when it is no DNS name or IP address."""

    def bad(reason: str) -> HitPawValidationError:
        return _invalid(f"{field} {shown} has an invalid host: {reason}")

    if not host:
        raise _invalid(f"{field} {shown} has no host name")
    if "%" in host:
        raise bad("percent-escapes are not allowed in a host name")
    if host.startswith("["):
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise bad("not an IPv6 address") from None
        return host.lower()
    if not host.isascii():
        import idna

        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as err:
            raise bad(f"not an internationalised domain name ({_show(str(err))})") from None
    host = host.lower()
    name = host[:-1] if host.endswith(".") else host  # one final dot: a fully qualified name
    if len(name) > MAX_HOST_LENGTH:
        raise bad(f"longer than {MAX_HOST_LENGTH} characters")
    for label in name.split("."):
        if not label:
            raise bad("an empty label (two dots in a row, or a dot at the start)")
        if not _LABEL_RE.match(label):
            raise bad(
                f"label {_show(label)} must be 1 to {MAX_LABEL_LENGTH} letters, digits and hyphens, "
                "and neither start nor end with a hyphen"
            )
        if label.startswith("xn--"):
            import idna

            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                raise bad(f"label {_show(label)} is not valid punycode") from None
    if _NUMERIC_LABEL_RE.match(name.rsplit(".", 1)[-1]):
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise bad("a numeric name that is not an IPv4 address such as 192.0.2.1") from None
    return host


def validate_url(url: object, *, field: str = "img_url") -> str:
    """Check that a media URL is an absolute http(s) URL HitPaw can fetch, and return it normalised.

    Refused: anything but a string; more than :data:`MAX_URL_LENGTH` characters; white space,
    control, format (zero-width, BOM, bidi) or otherwise invisible characters anywhere; a backslash
    (parsers disagree on where it ends the host); a malformed ``%`` escape; a scheme other than
    http(s); a host that is neither a DNS name (labels of letters, digits and hyphens, or Unicode that
    IDNA encodes) nor an IP address; a bad or zero port.

    The URL returned is the one an HTTP client sends (``requests`` sends it unchanged): scheme and
    host in lower case, the host IDNA-encoded, non-ASCII and unsafe characters percent-encoded as
    UTF-8, escapes of unreserved characters decoded, ``.``/``..`` path segments resolved, an empty
    path written ``/``. Escapes such as ``%2F`` in a presigned URL's query are kept.

    :raises HitPawValidationError: for anything else.
    """
    if not isinstance(url, str) or not url.strip():
        raise _invalid(f"{field} must be a non-empty URL string, got {_show(url)}")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"{field} is {len(url)} characters long; at most {MAX_URL_LENGTH}")
    shown = _show(url, 200)
    if any(_unprintable(c) for c in url):
        raise _invalid(
            f"{field} {shown} must not contain white space, control, zero-width, bidi or other "
            "invisible characters"
        )
    if "\\" in url:
        raise _invalid(f"{field} {shown} must not contain a backslash")
    if _BAD_ESCAPE_RE.search(url):
        raise _invalid(f"{field} {shown} has a '%' that does not start an escape such as %2F")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise _invalid(f"{field} {shown} is not a valid URL: {_show(str(err))}") from None
    if parts.scheme not in ("http", "https"):
        raise _invalid(
            f"{field} must be an http:// or https:// URL that HitPaw can download, got scheme "
            f"{parts.scheme or '(none)'!r}"
        )
    userinfo, _, host_port = parts.netloc.rpartition("@")
    match = _HOST_PORT_RE.match(host_port)
    if match is None:
        raise _invalid(f"{field} {shown} is not a valid URL: bad host or port {_show(host_port)}")
    host = _canonical_host(match.group(1), field, shown)
    if port == 0:
        raise _invalid(f"{field} {shown} has port 0")
    netloc = host if port is None else f"{host}:{port}"
    if userinfo:
        netloc = f"{_quote(userinfo, _USERINFO_CHARS)}@{netloc}"
    canonical = f"{parts.scheme}://{netloc}{_remove_dot_segments(_quote(parts.path, _PATH_CHARS)) or '/'}"
    if parts.query:
        canonical += "?" + _quote(parts.query, _QUERY_CHARS)
    if parts.fragment:
        canonical += "#" + _quote(parts.fragment, _QUERY_CHARS)
    if len(canonical) > MAX_URL_LENGTH:
        raise _invalid(
            f"{field} is {len(canonical)} characters long once percent-encoded; at most {MAX_URL_LENGTH}"
        )
    return canonical


MAX_DPI = 10_000


def validate_dpi(dpi: object) -> int | None:
    """Check the optional DPI: a whole number from 1 to 10,000 (booleans are refused).

    A string of ASCII digits (what a template renders) is read as a number.
    """
    if dpi is None:
        return None
    if isinstance(dpi, str):
        text = dpi.strip()
        if not (text.isascii() and text.isdigit()):
            raise _invalid(f"dpi must be a whole number such as 300, got {_show(dpi)}")
        digits = text.lstrip("0") or "0"
        # int() refuses strings of more than 4300 digits (ValueError); no DPI needs more than five.
        if len(digits) > len(str(MAX_DPI)):
            raise _invalid(f"dpi must be between 1 and {MAX_DPI}, got {_show(dpi)}")
        dpi = int(digits)
    if isinstance(dpi, bool) or not isinstance(dpi, int):
        raise _invalid(f"dpi must be a whole number such as 300, got {_show(dpi)}")
    if not 1 <= dpi <= MAX_DPI:
        raise _invalid(f"dpi must be between 1 and {MAX_DPI}, got {_show(dpi)}")
    return int(dpi)


def validate_exif(exif: object) -> bool:
    if not isinstance(exif, bool):
        raise _invalid(f"exif must be True or False, got {_show(exif)}")
    return exif


def build_submit_payload(
    img_url: str,
    model_name: str,
    extension: str,
    exif: bool = False,
    dpi: int | None = None,
    *,
    allow_unknown_model: bool = False,
) -> dict[str, Any]:
    """Validate a photo submission and build its JSON body (the API's field names); raises before
    anything is sent.

    Whatever the arguments, it returns a body or raises :class:`HitPawValidationError`. The
    body's ``img_url`` is the normalised URL (see :func:`validate_url`); its ``extension`` is always
    one HitPaw writes for photos, also for a model this provider does not list.
    """
    spec = validate_model_name(model_name, allow_unknown_model=allow_unknown_model)
    payload: dict[str, Any] = {
        "model_name": str(model_name),
        "img_url": validate_url(img_url),
        "extension": validate_extension(extension, spec),
        "exif": validate_exif(exif),
    }
    checked_dpi = validate_dpi(dpi)
    if checked_dpi is not None:
        payload["DPI"] = checked_dpi
    return payload


# --- video -------------------------------------------------------------------------------------------

MAX_VIDEO_SIDE = 65_535  # no container stores a larger side; keeps the numbers sane before the MP check


def _side(value: object, name: str) -> int:
    """One side of a resolution: a positive whole number, or a string of ASCII digits (a template's)."""
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 6:
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VIDEO_SIDE:
        raise _invalid(f"{name} must be two positive whole numbers [width, height], got {_show(value)} in it")
    return value


def validate_resolution(
    resolution: object, spec: ModelSpec | None = None, *, field: str = "resolution", limited: bool = True
) -> list[int]:
    """A video's ``[width, height]``: two positive whole numbers (a list or tuple, or text such as
    ``"1920x1080"``), at most the model's output limit (36 MP for every video model).

    :param spec: the model, for its output limit; None (an unknown model) uses the video limit.
    :param limited: False for a size HitPaw sets no limit on (``original_resolution``).
    :raises HitPawValidationError: before anything is sent.
    """
    if isinstance(resolution, str):
        parts: object = re.split("\\s*[xX\u00d7,]\\s*", resolution.strip().strip("[]()").strip())
    else:
        parts = resolution
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise _invalid(f"{field} must be two positive whole numbers [width, height], got {_show(resolution)}")
    width, height = (_side(v, field) for v in parts)
    limit = spec.max_output_pixels if spec is not None else round(VIDEO_MAX_OUTPUT_MEGAPIXELS * 1_000_000)
    if limited and width * height > limit:
        raise _invalid(
            f"{field} {width} x {height} is {width * height / 1e6:.1f} MP, over HitPaw's "
            f"{limit / 1e6:g} MP limit for a video's result: HitPaw would refuse it. Nothing was sent."
        )
    return [width, height]


def validate_video_extension(extension: object, spec: ModelSpec | None) -> str:
    """Normalise a video result's extension (``.mp4``) and check that HitPaw writes it.

    :raises HitPawValidationError: with the list of valid extensions.
    """
    ext = normalize_extension(extension)
    allowed = spec.output_formats if spec is not None else VIDEO_OUTPUT_FORMATS
    if ext[1:] not in allowed:
        hint = f" {ext} is a photo format: a video job writes a video (or a .gif)." if ext[1:] in PHOTO_INPUT_FORMATS else ""
        raise _invalid(
            f"Extension {ext!r} is not one HitPaw writes for a video. Valid extensions: "
            f"{', '.join('.' + f for f in allowed)}.{hint}"
        )
    return ext


def build_video_payload(
    video_url: str,
    model_name: str,
    resolution: object,
    extension: str = ".mp4",
    original_resolution: object = None,
    *,
    allow_unknown_model: bool = False,
) -> dict[str, Any]:
    """Validate a video submission and build its JSON body (``POST /api/video-enhancer``); raises
    :class:`HitPawValidationError` before anything is sent.

    The body: ``video_url`` (normalised, see :func:`validate_url`), ``model_name``, ``resolution`` as
    ``[width, height]``, ``extension`` (``.mp4``, ``.mov``, ``.mkv``, ``.m4v``, ``.avi`` or ``.gif``)
    and, when given, ``original_resolution``.
    """
    spec = validate_model_name(model_name, video=True, allow_unknown_model=allow_unknown_model)
    payload: dict[str, Any] = {
        "video_url": validate_url(video_url, field="video_url"),
        "model_name": str(model_name),
        "resolution": validate_resolution(resolution, spec),
        "extension": validate_video_extension(extension, spec),
    }
    if original_resolution is not None:  # the source's size: HitPaw sets no input limit
        payload["original_resolution"] = validate_resolution(
            original_resolution, field="original_resolution", limited=False
        )
    return payload
