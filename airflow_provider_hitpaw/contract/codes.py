"""HitPaw's documented error codes: what each means, the HTTP status it comes with, and its message.

Source: the two error tables of HitPaw's API documentation (common codes 100xxxxxx, enhancer codes
110xxxxxx), https://github.com/shiyao1122/hitpaw-developer-docs. A code encodes its HTTP status in its
middle three digits (110402000 comes with HTTP 402).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorKind(str, Enum):
    """What a code tells a client to do."""

    AUTH = "auth"  # fix the key or its permissions
    INVALID_REQUEST = "invalid_request"  # fix the request
    TASK_NOT_FOUND = "task_not_found"
    JOB_FAILED = "job_failed"
    RATE_LIMIT = "rate_limit"  # slow down and try again
    SERVER = "server"  # HitPaw's side failed
    COINS = "coins"  # top up the account


@dataclass(frozen=True)
class ErrorCode:
    code: int
    kind: ErrorKind
    message: str

    @property
    def http_status(self) -> int:
        return http_status_of(self.code)


def http_status_of(code: int) -> int:
    """The HTTP status a HitPaw code encodes (its middle three digits)."""
    return (code // 1000) % 1000


_K = ErrorKind
ERROR_CODES: dict[int, ErrorCode] = {
    entry.code: entry
    for entry in (
        ErrorCode(100400000, _K.AUTH, "No access"),
        ErrorCode(100400001, _K.INVALID_REQUEST, "Invalid URL"),
        ErrorCode(100400002, _K.INVALID_REQUEST, "Bad Request"),
        ErrorCode(100401000, _K.AUTH, "Token is expired"),
        ErrorCode(100403000, _K.INVALID_REQUEST, "Invalid request parameters"),
        ErrorCode(100403001, _K.AUTH, "Access denied"),
        ErrorCode(100403002, _K.AUTH, "You don't have permission to access this resource"),
        ErrorCode(100429000, _K.RATE_LIMIT, "Too many requests, please try again later"),
        ErrorCode(100500000, _K.SERVER, "Internal error"),
        ErrorCode(100500001, _K.SERVER, "Database error"),
        ErrorCode(100500002, _K.SERVER, "Cache error"),
        ErrorCode(100500003, _K.SERVER, "Failed to create file"),
        ErrorCode(100500004, _K.SERVER, "Signature verification failed"),
        ErrorCode(100500005, _K.SERVER, "Configuration error"),
        ErrorCode(100500006, _K.SERVER, "Unknown error"),
        ErrorCode(100500007, _K.SERVER, "Operation timeout"),
        ErrorCode(110400000, _K.AUTH, "api_key is not valid"),
        ErrorCode(110400002, _K.TASK_NOT_FOUND, "The task does not exist"),
        ErrorCode(110400003, _K.JOB_FAILED, "The task failed, please try again"),
        ErrorCode(110400005, _K.INVALID_REQUEST, "The model is not supported, please try again"),
        ErrorCode(110400007, _K.INVALID_REQUEST, "The extension is not valid"),
        ErrorCode(110400008, _K.INVALID_REQUEST, "The video URL is not valid"),
        ErrorCode(110400009, _K.INVALID_REQUEST, "The input resolution is over limit"),
        ErrorCode(110400010, _K.INVALID_REQUEST, "The target resolution is over limit"),
        ErrorCode(110400011, _K.INVALID_REQUEST, "The video duration is over limit"),
        ErrorCode(110402000, _K.COINS, "The coins are not enough"),
        ErrorCode(110402001, _K.COINS, "The coins are not enough"),
        ErrorCode(110402004, _K.COINS, "The Demo try times exceeded"),
    )
}
