"""Fuzzing the sandbox's request parsing: whatever arrives, the reply is one of the seed's codes."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw.contract.endpoints import (
    PHOTO_ENHANCER_PATH,
    TASK_STATUS_PATH,
    VIDEO_ENHANCER_PATH,
)
from airflow_provider_hitpaw.errors import ERROR_CODE_HTTP_STATUS
from airflow_provider_hitpaw.models import MODELS

FUZZ_KEY = "fuzz-key-0123456789"
ENDPOINTS = (PHOTO_ENHANCER_PATH, VIDEO_ENHANCER_PATH, TASK_STATUS_PATH)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Fields with values that are sometimes right, so the checks past the first ones get exercised.
# The URLs never point at a host that needs DNS, so no example waits for a lookup.
fields = st.fixed_dictionaries(
    {},
    optional={
        "model_name": st.sampled_from([*MODELS, "enhanced_v1", ""]) | json_values,
        "img_url": st.sampled_from(["SAMPLE", "ftp://x/y.jpg", "", "http://127.0.0.1:9/a.jpg"]) | json_values,
        "video_url": st.sampled_from(["https://127.0.0.1:9/v.mp4", "file:///v.mp4"]) | json_values,
        "extension": st.sampled_from([".jpg", "png", ".mp4", ".gif", "JPG"]) | json_values,
        "exif": st.booleans() | json_values,
        "DPI": st.integers(min_value=-5, max_value=20_000) | json_values,
        "resolution": st.lists(st.integers(min_value=-1, max_value=20_000), max_size=3) | json_values,
        "job_id": st.sampled_from(["nope", ""]) | json_values,
    },
)


@pytest.fixture(scope="module")
def fuzz_sandbox(sandbox_module: Any) -> Any:
    sandbox_module.reset()
    sandbox_module.add_key(FUZZ_KEY, 60)  # a few real jobs at most, then 402
    return sandbox_module


def check(reply: requests.Response) -> None:
    assert reply.status_code != 500, reply.text
    body = reply.json()
    if reply.status_code == 200:
        assert body["code"] == 200 and isinstance(body["data"], dict)
        return
    code = body["error_code"]
    assert code in ERROR_CODE_HTTP_STATUS and ERROR_CODE_HTTP_STATUS[code] == reply.status_code
    assert isinstance(body["message"], str)


def send(sb: Any, path: str, data: bytes, key: str | None = FUZZ_KEY) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Apikey"] = key
    return requests.post(sb.url(path), data=data, headers=headers, timeout=30)


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=fields)
def test_structured_bodies(fuzz_sandbox: Any, path: str, body: dict) -> None:
    import json

    if body.get("img_url") == "SAMPLE":
        body["img_url"] = fuzz_sandbox.url("/samples/landscape.png")
    check(send(fuzz_sandbox, path, json.dumps(body).encode()))


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=json_values)
def test_any_json(fuzz_sandbox: Any, path: str, body: Any) -> None:
    import json

    check(send(fuzz_sandbox, path, json.dumps(body).encode()))


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), data=st.binary(max_size=300), with_key=st.booleans())
def test_raw_bytes(fuzz_sandbox: Any, path: str, data: bytes, with_key: bool) -> None:
    reply = send(fuzz_sandbox, path, data, key=FUZZ_KEY if with_key else None)
    check(reply)
    if not with_key:
        assert reply.json()["error_code"] == 110400000


def test_still_healthy_after_fuzzing(fuzz_sandbox: Any) -> None:
    assert requests.get(fuzz_sandbox.url("/healthz"), timeout=5).text == "ok"
    stats = fuzz_sandbox.stats()
    assert "500" not in stats["requests_by_status"]
    assert all(v >= 0 for v in stats["balances"].values())
