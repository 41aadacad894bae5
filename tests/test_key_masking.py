"""The API key quoted back by a server never survives, whole or as a prefix, at any position relative to
the cuts a reply goes through (the 500-character message, the 200-byte snippet of a non-JSON body, the
short quotes of odd fields); and a wait that outlives a key rotation goes on with the new key.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_hitpaw.api import MAX_MESSAGE_CHARS, Reply, read_status_reply, read_submit_reply
from airflow_provider_hitpaw.errors import HitPawError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from tests.support.connections import set_hitpaw_connection

KEY = "SeCrEtKeY-7f3a9c2e41b8d605"
SUBMISSION = {"img_url": "https://example.com/p.jpg", "model_name": "face_2x", "extension": ".jpg"}
SNIPPET_BYTES = 200


def _fragments(text: str) -> list[str]:
    """Every piece of the key of 6 characters or more found in ``text``."""
    return [KEY[i:j] for i in range(len(KEY)) for j in range(i + 6, len(KEY) + 1) if KEY[i:j] in text]


def _texts(err: BaseException) -> str:
    parts = []
    cause: BaseException | None = err
    while cause is not None:
        parts += [str(cause), repr(cause), getattr(cause, "message", "")]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


def _positions(cut: int) -> range:
    return range(max(0, cut - len(KEY) - 2), cut + 3)


def _error_of(reply: Reply, *, submit: bool) -> HitPawError:
    with pytest.raises(HitPawError) as info:
        if submit:
            read_submit_reply(reply, SUBMISSION, KEY)
        else:
            read_status_reply(reply, "job-1", KEY)
    return info.value


@pytest.mark.parametrize("submit", [False, True], ids=["status", "submit"])
@pytest.mark.parametrize("http_status", [200, 400, 500])
def test_key_in_a_json_message_at_every_position_around_the_cut(submit, http_status):
    for position in _positions(MAX_MESSAGE_CHARS):
        for escaped in (False, True):
            message = "m" * position + KEY + "n" * 600
            body = json.dumps({"code": 110400000, "message": message}, ensure_ascii=True)
            if escaped:  # the key spelled with JSON escapes: its bytes never appear in the body
                body = body.replace(KEY[:3], "".join(f"\\u{ord(c):04x}" for c in KEY[:3]))
            err = _error_of(Reply(http_status, body.encode(), {}), submit=submit)
            assert not _fragments(_texts(err)), (position, escaped, _fragments(_texts(err)))


@pytest.mark.parametrize("submit", [False, True], ids=["status", "submit"])
@pytest.mark.parametrize("http_status", [200, 502])
def test_key_in_a_non_json_body_at_every_position_around_the_snippet_cut(submit, http_status):
    for position in _positions(SNIPPET_BYTES):
        body = ("<html>" + "h" * position)[:position] + KEY + "t" * 300
        err = _error_of(Reply(http_status, body.encode(), {}), submit=submit)
        assert not _fragments(_texts(err)), (position, _fragments(_texts(err)))


@pytest.mark.parametrize(("field", "cut"), [("status", 40), ("job_id", 80)])
def test_key_in_short_quoted_status_fields_at_every_position(field, cut):
    for position in _positions(cut):
        value = "s" * position + KEY
        data: dict[str, Any] = {"job_id": "job-1", "status": "CONVERTING", field: value}
        if field == "status":
            data["status"] = 12345 if position % 2 else value  # a non-string too, quoted the same way
        body = json.dumps({"code": 200, "data": data}).encode()
        try:
            read_status_reply(Reply(200, body, {}), "job-1", KEY)
        except HitPawError as err:
            assert not _fragments(_texts(err)), (field, position)


def test_key_in_a_redirect_location_at_every_position():
    for position in _positions(200):
        location = "https://elsewhere.example/" + "p" * position + KEY
        err = _error_of(Reply(302, b"", {"Location": location}), submit=True)
        assert not _fragments(_texts(err)), position


def test_key_straddling_the_cut_is_masked_in_the_trigger_event(monkeypatch, scripted):
    """Over HTTP, through the trigger: the event (stored in the metadata database) holds no piece of it."""
    from tests.support.scripted_server import Step

    position = MAX_MESSAGE_CHARS - len(KEY) // 2
    scripted.script("/api/task-status", Step(400, {"code": 110400000, "message": "m" * position + KEY}))
    set_hitpaw_connection(monkeypatch, "straddle", scripted.base_url, KEY)

    async def run() -> dict[str, Any]:
        try:
            trigger = HitPawTaskStatusTrigger("job-1", deadline=time.time() + 10, hitpaw_conn_id="straddle",
                                              poll_interval=1)
            events = [event async for event in trigger.run()]
            return events[0].payload
        finally:
            await close_shared_session()

    event = asyncio.run(run())
    assert event["status"] == "error"
    assert not _fragments(json.dumps(event))


def test_a_wait_outlives_a_key_rotation(monkeypatch, sandbox):
    """The key is rotated at HitPaw and in the connection while a trigger waits: it goes on with the new key."""
    old, new = "old-key-5e1f0a", "new-key-93bd27"
    sandbox.add_key(old, 100)
    sandbox.configure(job_seconds=4)
    set_hitpaw_connection(monkeypatch, "rotating", sandbox.base_url, old)
    job = HitPawHook("rotating").enhance_photo(sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")

    async def run() -> dict[str, Any]:
        async def rotate() -> None:
            await asyncio.sleep(1.5)
            sandbox.rotate_key(old, new)
            set_hitpaw_connection(monkeypatch, "rotating", sandbox.base_url, new)

        try:
            trigger = HitPawTaskStatusTrigger(job.job_id, deadline=time.time() + 30, hitpaw_conn_id="rotating",
                                              poll_interval=1)
            rotation = asyncio.ensure_future(rotate())
            events = [e async for e in trigger.run()]
            event = events[0].payload
            await rotation
            return event
        finally:
            await close_shared_session()

    event = asyncio.run(run())
    assert event["status"] == "success", event
    assert event["job_id"] == job.job_id
