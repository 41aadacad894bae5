"""Job states and the parsing of submit and status replies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw.api import (
    JobStatus,
    parse_status_reply,
    parse_submit_reply,
)
from airflow_provider_hitpaw.errors import HitPawResponseError, HitPawValidationError
from airflow_provider_hitpaw.validation import validate_job_id

DOCUMENTED = [
    "WAITING", "PENDING", "INPUT_PREPARING", "CONVERTING", "CONVERT_COMPLETED", "OUTPUT_SAVING",
    "OUTPUT_SAVED", "COMPLETED", "ERROR", "ERROR_INTERRUPTION", "TIMEOUT", "CANCEL", "REJECT", "NSFW",
]
FAILURES = {"ERROR", "ERROR_INTERRUPTION", "TIMEOUT", "CANCEL", "REJECT", "NSFW"}


def envelope(data):
    return json.dumps({"code": 200, "message": "OK", "data": data}).encode()


@pytest.mark.parametrize("name", DOCUMENTED)
def test_all_fourteen_states(name):
    status = JobStatus.parse(name)
    assert status.value == name
    assert status.is_success == (name == "COMPLETED")
    assert status.is_failure == (name in FAILURES)
    assert status.is_terminal == (name == "COMPLETED" or name in FAILURES)


@pytest.mark.parametrize("name", ["DONE", "SUCCESS", "FINISHED", "", "completed_ok", "QUEUED"])
def test_unknown_state_is_never_success_or_terminal(name):
    status = JobStatus.parse(name)
    assert status is JobStatus.UNKNOWN
    assert not status.is_success and not status.is_terminal


def test_case_and_space_are_forgiven():
    assert JobStatus.parse(" completed ") is JobStatus.COMPLETED


def test_status_reply_completed():
    status = parse_status_reply(200, envelope(
        {"job_id": "j1", "status": "COMPLETED", "res_url": "https://cdn/x.jpg", "original_url": "https://a/b.jpg"}
    ), "j1")
    assert status.is_success and status.res_url == "https://cdn/x.jpg"
    assert status.to_dict() == {
        "job_id": "j1", "status": "COMPLETED", "res_url": "https://cdn/x.jpg", "original_url": "https://a/b.jpg"
    }


def test_status_reply_in_progress_drops_res_url():
    status = parse_status_reply(200, envelope({"job_id": "j1", "status": "CONVERTING", "res_url": "https://x"}), "j1")
    assert status.status is JobStatus.CONVERTING and status.res_url is None


def test_unknown_status_is_kept_raw():
    status = parse_status_reply(200, envelope({"job_id": "j1", "status": "QUANTUM"}), "j1")
    assert status.status is JobStatus.UNKNOWN and status.raw_status == "QUANTUM"


@pytest.mark.parametrize(
    "data",
    [
        {"job_id": "j1", "status": "COMPLETED"},
        {"job_id": "j1", "status": "COMPLETED", "res_url": ""},
        {"job_id": "j1", "status": "COMPLETED", "res_url": "ftp://x/y"},
        {"job_id": "j1", "status": "COMPLETED", "res_url": 5},
        {"job_id": "j1"},
        {"job_id": "j1", "status": None},
        {"job_id": "j1", "status": 3},
        {"job_id": "other", "status": "COMPLETED", "res_url": "https://x"},
    ],
)
def test_malformed_status_replies(data):
    with pytest.raises(HitPawResponseError):
        parse_status_reply(200, envelope(data), "j1")


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'{"code":200}', b'{"data": "x"}', b"\xff"])
def test_status_reply_without_data(body):
    with pytest.raises(HitPawResponseError):
        parse_status_reply(200, body, "j1")


def test_submit_reply():
    job = parse_submit_reply(200, envelope({"job_id": "f5007c0b-e902-4070-8c75-f337d896168f", "consume_coins": 75}))
    assert job.job_id == "f5007c0b-e902-4070-8c75-f337d896168f" and job.consume_coins == 75
    assert parse_submit_reply(200, envelope({"job_id": "a", "consume_coins": "5"})).consume_coins == 5


@pytest.mark.parametrize("data", [{}, {"job_id": ""}, {"job_id": 12}, {"job_id": "a b"},
                                  {"job_id": "a", "consume_coins": -1}, {"job_id": "a", "consume_coins": "x"},
                                  {"job_id": "a", "consume_coins": True}])
def test_malformed_submit_replies(data):
    with pytest.raises(HitPawResponseError):
        parse_submit_reply(200, envelope(data))


def test_job_id_validation():
    assert validate_job_id("f5007c0b-e902-4070-8c75-f337d896168f")
    for bad in ["", " ", "a/b", "x" * 200, None, 5, "../etc", "id\n"]:
        with pytest.raises(HitPawValidationError):
            validate_job_id(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=json_values, raw=st.binary(max_size=64))
def test_random_replies_never_crash_or_succeed_falsely(data, raw):
    """Any reply: a TaskStatus, or HitPawResponseError; never KeyError/TypeError; never a false success."""
    for body in (envelope(data), json.dumps(data).encode(), raw):
        try:
            status = parse_status_reply(200, body, "j1")
        except HitPawResponseError:
            continue
        if status.is_success:
            assert isinstance(data, dict) and data.get("status", "").strip().upper() == "COMPLETED"
            assert status.res_url and status.res_url.startswith(("http://", "https://"))
        try:
            parse_submit_reply(200, body)
        except HitPawResponseError:
            pass


def test_unicode_digits_are_not_numbers():
    from airflow_provider_hitpaw.api import error_from_reply

    error = error_from_reply(400, '{"code": "²", "message": "odd"}'.encode())
    assert error is not None and error.code is None
    with pytest.raises(HitPawResponseError):
        parse_submit_reply(200, envelope({"job_id": "a", "consume_coins": "²"}))
