"""Bad input, property-based: whatever a user passes, nothing invalid is ever sent (so nothing is charged).

For any model name, extension, URL, DPI and EXIF flag, the hook and the operator either raise
``HitPawValidationError`` with no request made, or send a submission whose body is one HitPaw accepts by
contract. Templated values that render to garbage fail the same way, before any request. Literal garbage
fails already when the DAG is parsed.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import set_hitpaw_connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from operator_support import make_context
from scripted_server import ok

from airflow_provider_hitpaw.api import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.models import (
    MAX_URL_LENGTH,
    MODEL_ALIASES,
    PHOTO_MODELS,
    PHOTO_OUTPUT_FORMATS,
    VIDEO_MODELS,
)
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PHOTO_NAMES = [m.name for m in PHOTO_MODELS]

anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.binary(max_size=8) \
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)

model_names = st.one_of(
    st.sampled_from(PHOTO_NAMES + list(MODEL_ALIASES)),
    st.sampled_from([m.name for m in VIDEO_MODELS] + ["enhanced_v1", "", " ", "face_3x", "FACE_2X"]),
    st.sampled_from(PHOTO_NAMES).map(lambda n: f" {n}"),
    st.sampled_from(PHOTO_NAMES).map(lambda n: n + "\n"),
    st.text(max_size=30),
    anything,
)
extensions = st.one_of(
    st.sampled_from(PHOTO_OUTPUT_FORMATS).flatmap(lambda e: st.sampled_from([e, "." + e, "." + e.upper(), e.upper()])),
    st.sampled_from([".heif", ".gif", ".mp4", ".", "..", "", " .jpg", ".jpg ", ".j pg", ".jpg/../x", ".ñ"]),
    st.text(max_size=10),
    anything,
)
hosts = st.sampled_from(["photos.example", "127.0.0.1", "[::1]", "xn--bcher-kva.example", "bücher.example", ""])
paths = st.sampled_from(["/a.jpg", "/a.png", "/ü.jpg", "/a b.jpg", "/a.jpg?x=1", "/a\n.jpg", "/" + "p" * 5000, ""])
urls = st.one_of(
    st.builds(lambda scheme, host, path: f"{scheme}{host}{path}",
              st.sampled_from(["https://", "http://", "HTTPS://", "ftp://", "file://", "javascript:", "data:", "//", "",
                               "https:/", "https:///", "http://user:pw@"]),
              hosts, paths),
    st.sampled_from(["https://photos.example:99999/a.jpg", "https://photos.example:-1/a.jpg",
                     "https://photos.example/a.jpg\x00", " https://photos.example/a.jpg",
                     "https://" + "a" * (MAX_URL_LENGTH + 10) + ".example/a.jpg", "https://[::1/a.jpg"]),
    st.text(max_size=40),
    anything,
)
dpis = st.one_of(st.none(), st.integers(min_value=-10, max_value=20_000), st.integers(), st.floats(),
                 st.booleans(), st.sampled_from(["300", " 72 ", "0", "-1", "3e2", "300dpi", "", "١٢٣"]), anything)
exifs = st.one_of(st.booleans(), anything)


def assert_body_is_valid(body: dict[str, Any]) -> None:
    """The contract of a photo submission: what HitPaw accepts (so what may cost coins)."""
    from urllib.parse import urlsplit

    assert set(body) <= {"model_name", "img_url", "extension", "exif", "DPI"}
    assert body["model_name"] in PHOTO_NAMES or body["model_name"] in MODEL_ALIASES
    assert body["extension"][0] == "." and body["extension"][1:] in PHOTO_OUTPUT_FORMATS
    url = body["img_url"]
    assert isinstance(url, str) and len(url) <= MAX_URL_LENGTH and url == url.strip()
    assert not any(c.isspace() or ord(c) < 32 for c in url)
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname
    assert isinstance(body["exif"], bool)
    if "DPI" in body:
        assert type(body["DPI"]) is int and 1 <= body["DPI"] <= 10_000


@pytest.fixture
def fuzz_hook(monkeypatch, scripted):
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-1", "consume_coins": 10}))
    scripted.script(TASK_STATUS_PATH, ok({"job_id": "job-1", "status": "COMPLETED",
                                          "res_url": "https://r.example/job-1/out.jpg"}))
    set_hitpaw_connection(monkeypatch, "hitpaw_fuzz", scripted.base_url, "fuzz-key", read_timeout=2)
    hook = HitPawHook("hitpaw_fuzz")
    yield hook
    hook.close()


def _submissions(scripted: Any) -> list[Any]:
    return [r.body for r in scripted.requests if r.path == PHOTO_ENHANCER_PATH]


@FUZZ
@given(img_url=urls, model_name=model_names, extension=extensions, exif=exifs, dpi=dpis)
def test_hook_sends_only_valid_submissions(fuzz_hook, scripted, img_url, model_name, extension, exif, dpi):
    before = len(_submissions(scripted))
    try:
        job = fuzz_hook.enhance_photo(img_url, model_name, extension, exif, dpi)
    except HitPawValidationError as err:
        assert len(_submissions(scripted)) == before, "a refused submission was sent"
        assert str(err)
        return
    assert job.job_id == "job-1"
    sent = _submissions(scripted)
    assert len(sent) == before + 1
    assert_body_is_valid(sent[-1])


@FUZZ
@given(img_url=urls, model_name=model_names, extension=st.none() | extensions, dpi=dpis)
def test_operator_literal_garbage_fails_at_parse_time(img_url, model_name, extension, dpi):
    if any(isinstance(v, str) and ("{{" in v or "{%" in v) for v in (img_url, model_name, extension, dpi)):
        return  # a template is only checked once rendered (next test)
    try:
        op = EnhancePhotoOperator(task_id="fuzz", img_url=img_url, model_name=model_name, extension=extension,
                                  dpi=dpi, hitpaw_conn_id="hitpaw_fuzz")
    except HitPawValidationError:
        return
    # Accepted at parse time: only values the submission check accepts too (or ones it cannot see yet).
    assert op.task_id == "fuzz"


@FUZZ
@given(img_url=urls, model_name=model_names, extension=st.none() | extensions, dpi=dpis)
def test_operator_templates_rendering_to_garbage_fail_before_any_request(fuzz_hook, scripted, img_url, model_name,
                                                                          extension, dpi):
    op = EnhancePhotoOperator(task_id="fuzz", img_url="{{ params.img_url }}", model_name="{{ params.model }}",
                              extension="{{ params.ext }}" if extension is not None else None,
                              dpi="{{ params.dpi }}", hitpaw_conn_id="hitpaw_fuzz", poll_interval=0.01)
    # What rendering gives: Jinja turns every value into text (native types stay off by default).
    rendered = {"img_url": img_url, "model": model_name, "ext": extension, "dpi": dpi}
    context = make_context(params=rendered)
    op.render_template_fields(context)
    before = len(_submissions(scripted))
    try:
        result = op.execute(context)
    except HitPawValidationError:
        assert len(_submissions(scripted)) == before, "a refused submission was sent"
        return
    sent = _submissions(scripted)
    assert len(sent) == before + 1 and result["job_id"] == "job-1"
    assert_body_is_valid(sent[-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_interval": 0}, {"poll_interval": -1}, {"poll_interval": "5"}, {"poll_interval": True},
        {"timeout": 0}, {"timeout": float("nan")}, {"timeout": None}, {"max_consecutive_errors": 0},
        {"max_consecutive_errors": 1.5}, {"exif": "yes"}, {"exif": None},
    ],
)
def test_operator_wait_settings_of_the_wrong_type_fail_at_parse_time(kwargs):
    with pytest.raises(HitPawValidationError):
        EnhancePhotoOperator(task_id="fuzz", img_url="https://photos.example/a.jpg", model_name="face_2x", **kwargs)


def test_no_coins_for_refused_input_against_the_sandbox(monkeypatch, sandbox):
    """The same, counted in coins: a batch of bad submissions leaves the sandbox's ledger untouched."""
    set_hitpaw_connection(monkeypatch, "hitpaw_fuzz_sb", sandbox.base_url, "test-key")
    hook = HitPawHook("hitpaw_fuzz_sb")
    good = sandbox.url("/samples/portrait.jpg")
    bad = [
        (good, "face_3x", ".jpg", None), (good, "face_2x", ".heif", None), (good, "face_2x", ".jpg", 0),
        (good, "face_2x", ".jpg", True), ("file:///etc/passwd", "face_2x", ".jpg", None),
        ("", "face_2x", ".jpg", None), (good + "\n", "face_2x", ".jpg", None), (good, "general_restore_2x", ".jpg", None),
        (good, None, ".jpg", None), (good, "face_2x", None, None), (good, "face_2x", ".jpg", 1.5),
    ]
    for img_url, model, ext, dpi in bad:
        with pytest.raises(HitPawValidationError):
            hook.enhance_photo(img_url, model, ext, dpi=dpi)
    stats = sandbox.stats()
    assert stats["submissions"] == [] and sum(stats["coins_charged_by_key"].values()) == 0
    assert stats["requests_by_endpoint"] == {}
    hook.close()
