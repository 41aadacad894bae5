"""The bodies the sandbox answers with: HitPaw's envelope, its error shapes and gateway pages."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from airflow_provider_hitpaw.contract.codes import ERROR_CODES

INVALID_API_KEY = 110400000
INVALID_URL = 100400001
BAD_REQUEST = 100400002
TOO_MANY_REQUESTS = 100429000
INTERNAL_ERROR = 100500000
TASK_NOT_FOUND = 110400002
MODEL_NOT_SUPPORTED = 110400005
EXTENSION_NOT_VALID = 110400007
VIDEO_URL_NOT_VALID = 110400008
INPUT_RESOLUTION_OVER_LIMIT = 110400009
TARGET_RESOLUTION_OVER_LIMIT = 110400010
VIDEO_DURATION_OVER_LIMIT = 110400011
COINS_NOT_ENOUGH = 110402000

_GATEWAY_PAGES = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
}


def ok(data: dict[str, Any]) -> web.Response:
    """HitPaw's success envelope around ``data``."""
    return web.json_response({"code": 200, "message": "OK", "data": data})


def error(code: int, shape: str = "error_code", headers: dict[str, str] | None = None) -> web.Response:
    """An error reply with HitPaw's message for ``code`` and the HTTP status the code encodes.

    :param code: a documented HitPaw error code.
    :param shape: ``error_code``, ``code`` or ``code_msg`` (see :class:`SandboxConfig`).
    :param headers: extra headers.
    """
    message = ERROR_CODES[code].message
    if shape == "code":
        body: dict[str, Any] = {"code": code, "message": message}
    elif shape == "code_msg":
        body = {"code": code, "msg": message}
    else:
        body = {"error_code": code, "message": message}
    return web.json_response(body, status=ERROR_CODES[code].http_status, headers=headers)


def too_many_requests(shape: str) -> web.Response:
    return error(TOO_MANY_REQUESTS, shape, headers={"Retry-After": "1"})


def gateway_error(status: int) -> web.Response:
    """An HTML error page like the one a load balancer sends (not HitPaw's JSON)."""
    title = _GATEWAY_PAGES[status]
    html = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=html, content_type="text/html")


def admin_error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
