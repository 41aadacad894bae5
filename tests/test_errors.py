"""Every documented HitPaw error code and body shape becomes the right typed error."""

from __future__ import annotations

import json
import pickle

import pytest
from airflow.exceptions import AirflowException

from airflow_provider_hitpaw.api import error_from_reply
from airflow_provider_hitpaw.errors import (
    ERROR_CODES,
    HitPawAuthError,
    HitPawError,
    HitPawInsufficientCoinsError,
    HitPawInvalidRequestError,
    HitPawJobFailedError,
    HitPawRateLimitError,
    HitPawResponseError,
    HitPawServerError,
    HitPawSubmitOutcomeUnknownError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
)

# The seed's two tables, typed out again here so that a slip in errors.py cannot hide.
SEED_TABLE = [
    (100400000, 400, "No access", HitPawAuthError),
    (100400001, 400, "Invalid URL", HitPawInvalidRequestError),
    (100400002, 400, "Bad Request", HitPawInvalidRequestError),
    (100401000, 401, "Token is expired", HitPawAuthError),
    (100403000, 403, "Invalid request parameters", HitPawInvalidRequestError),
    (100403001, 403, "Access denied", HitPawAuthError),
    (100403002, 403, "You don't have permission to access this resource", HitPawAuthError),
    (100429000, 429, "Too many requests, please try again later", HitPawRateLimitError),
    (100500000, 500, "Internal error", HitPawServerError),
    (100500001, 500, "Database error", HitPawServerError),
    (100500002, 500, "Cache error", HitPawServerError),
    (100500003, 500, "Failed to create file", HitPawServerError),
    (100500004, 500, "Signature verification failed", HitPawServerError),
    (100500005, 500, "Configuration error", HitPawServerError),
    (100500006, 500, "Unknown error", HitPawServerError),
    (100500007, 500, "Operation timeout", HitPawServerError),
    (110400000, 400, "api_key is not valid", HitPawAuthError),
    (110400002, 400, "The task does not exist", HitPawTaskNotFoundError),
    (110400003, 400, "The task failed, please try again", HitPawJobFailedError),
    (110400005, 400, "The model is not supported, please try again", HitPawInvalidRequestError),
    (110400007, 400, "The extension is not valid", HitPawInvalidRequestError),
    (110400008, 400, "The video URL is not valid", HitPawInvalidRequestError),
    (110400009, 400, "The input resolution is over limit", HitPawInvalidRequestError),
    (110400010, 400, "The target resolution is over limit", HitPawInvalidRequestError),
    (110400011, 400, "The video duration is over limit", HitPawInvalidRequestError),
    (110402000, 402, "The coins are not enough", HitPawInsufficientCoinsError),
    (110402001, 402, "The coins are not enough", HitPawInsufficientCoinsError),
    (110402004, 402, "The Demo try times exceeded", HitPawInsufficientCoinsError),
]


def test_catalog_covers_exactly_the_seed_tables():
    assert set(ERROR_CODES) == {row[0] for row in SEED_TABLE}


@pytest.mark.parametrize(("code", "http", "message", "cls"), SEED_TABLE)
@pytest.mark.parametrize("shape", ["error_code", "code", "code_msg"])
def test_every_code_in_every_shape(code, http, message, cls, shape):
    body = {
        "error_code": {"error_code": code, "message": message},
        "code": {"code": code, "message": message},
        "code_msg": {"code": code, "msg": message},
    }[shape]
    error = error_from_reply(http, json.dumps(body).encode(), job_id="j1")
    assert type(error) is cls
    assert error.http_status == http
    assert error.code == code
    assert error.message == message
    assert error.job_id == "j1"
    assert str(code) in str(error) and message in str(error)


@pytest.mark.parametrize(("code", "http", "message", "cls"), SEED_TABLE)
def test_code_without_message_uses_the_documented_one(code, http, message, cls):
    error = error_from_reply(http, json.dumps({"code": str(code)}).encode())
    assert type(error) is cls and error.message == message


def test_error_code_inside_http_200_is_still_an_error():
    error = error_from_reply(200, b'{"code": 110402000, "message": "The coins are not enough"}')
    assert isinstance(error, HitPawInsufficientCoinsError)


@pytest.mark.parametrize("success", [b'{"code":200,"message":"OK","data":{}}', b'{"code":0,"data":{}}',
                                     b'{"data":{"job_id":"x"}}'])
def test_success_envelopes(success):
    assert error_from_reply(200, success) is None


@pytest.mark.parametrize(
    ("http", "body", "cls"),
    [
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", HitPawServerError),
        (503, b"", HitPawServerError),
        (504, b"<html>timeout</html>", HitPawServerError),
        (429, b"", HitPawRateLimitError),
        (401, b"<html>401</html>", HitPawAuthError),
        (402, b"", HitPawInsufficientCoinsError),
        (404, b"<html>Not Found</html>", HitPawResponseError),
        (400, b"\xff\xfe\x00garbage", HitPawInvalidRequestError),
        (200, b"", HitPawResponseError),
        (200, b"<html>hello</html>", HitPawResponseError),
        (200, b"[1, 2, 3]", HitPawResponseError),
        (200, b'{"message": "no code, no data"}', HitPawResponseError),
        (200, b"\xff\xfe\xfd", HitPawResponseError),
    ],
)
def test_html_empty_and_odd_bodies(http, body, cls):
    error = error_from_reply(http, body)
    assert type(error) is cls
    assert error.http_status == http


def test_unknown_code_is_classed_by_the_status_it_encodes():
    assert type(error_from_reply(400, b'{"code": 110402777, "msg": "new"}')) is HitPawInsufficientCoinsError
    assert type(error_from_reply(200, b'{"code": 100503123}')) is HitPawServerError
    assert type(error_from_reply(400, b'{"code": 42}')) is HitPawInvalidRequestError


def test_retry_after_is_read_from_429():
    error = error_from_reply(429, b'{"error_code": 100429000}', retry_after="7")
    assert isinstance(error, HitPawRateLimitError) and error.retry_after == 7.0
    assert error_from_reply(429, b"", retry_after="soon").retry_after is None


def test_long_html_message_is_cut():
    error = error_from_reply(502, b"<html>" + b"x" * 10_000 + b"</html>")
    assert len(str(error)) < 700


def test_hierarchy_for_retry_policies():
    for _, _, _, cls in SEED_TABLE:
        assert issubclass(cls, HitPawError) and issubclass(cls, AirflowException)
    assert issubclass(HitPawValidationError, HitPawInvalidRequestError)
    assert issubclass(HitPawValidationError, ValueError)
    assert {c for c in (HitPawRateLimitError, HitPawServerError) if c.retryable} == {
        HitPawRateLimitError,
        HitPawServerError,
    }
    assert not HitPawSubmitOutcomeUnknownError.retryable
    assert not HitPawAuthError.retryable


def test_errors_survive_pickling_with_their_attributes():
    original = HitPawJobFailedError("job failed", job_status="NSFW", job_id="j9", http_status=200)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is HitPawJobFailedError
    assert (copy.job_status, copy.job_id, copy.http_status, str(copy)) == (
        "NSFW", "j9", 200, str(original)
    )
    unknown = pickle.loads(pickle.dumps(HitPawSubmitOutcomeUnknownError("m", img_url="u", model_name="x")))
    assert (unknown.img_url, unknown.model_name) == ("u", "x")
