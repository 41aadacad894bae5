"""Bad input, property-based: whatever a user passes, nothing invalid is ever sent (so nothing is charged).

For any model name, extension, URL, DPI and EXIF flag, the hook and the operator either raise
``HitPawValidationError`` with no request made, or send a submission whose body is one HitPaw accepts by
contract. Templated values that render to garbage fail the same way, before any request. Literal garbage
fails already when the DAG is parsed.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.models import (
    MAX_URL_LENGTH,
    MODEL_ALIASES,
    PHOTO_MODELS,
    PHOTO_OUTPUT_FORMATS,
    VIDEO_MODELS,
    build_submit_payload,
    validate_url,
)
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from tests.support.connections import set_hitpaw_connection
from tests.support.operator_support import make_context
from tests.support.scripted_server import ok

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
hosts = st.sampled_from(["photos.example", "127.0.0.1", "[::1]", "xn--bcher-kva.example", "bücher.example", "",
                         "%00", "..", "a..b", "photos.example.", "-x.example", "a_b.example", "1.2.3", "0x7f.1",
                         "[fe80::1%25eth0]", "x\u200b.example", "\ufeffphotos.example", "Photos.EXAMPLE", "💩.la",
                         "photos.example\\@evil.example", "photos.example:0443", "photos.example:0"])
paths = st.sampled_from(["/a.jpg", "/a.png", "/ü.jpg", "/a b.jpg", "/a.jpg?x=1", "/a\n.jpg", "/" + "p" * 5000, "",
                         "/a\x7f.jpg", "/a\x85.jpg", "/a\u200b.jpg", "/\u202ea.jpg", "/a.jpg?s=a%2Fb%2b", "/50%.jpg",
                         "/a/../b.jpg", "/%7e/a.jpg", "/a.jpg#x#y", "/a|b.jpg", "/\ud800.jpg", "/" + "ü" * 1500])
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
    # What an HTTP client sends: printable ASCII only, so no control, format or invisible character.
    assert all("!" <= c <= "~" for c in url) and "\\" not in url
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname
    assert_host_is_a_dns_name_or_ip(parts.hostname)
    assert url == sent_by_requests(url)
    assert isinstance(body["exif"], bool)
    if "DPI" in body:
        assert type(body["DPI"]) is int and 1 <= body["DPI"] <= 10_000


def assert_host_is_a_dns_name_or_ip(host: str) -> None:
    import ipaddress
    import re

    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    assert len(name) <= 253
    labels = name.split(".")
    assert all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels), host
    assert not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", labels[-1]), host


def sent_by_requests(url: str) -> str:
    """The URL ``requests`` puts on the wire for ``url``."""
    from requests.models import PreparedRequest

    prepared = PreparedRequest()
    prepared.prepare_url(url, None)
    assert prepared.url is not None
    return prepared.url


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


# --- build_submit_payload on its own: arbitrary input, typed errors only ------------------------------

huge = st.one_of(
    st.integers(min_value=4, max_value=6).map(lambda n: 10 ** (10**n)),  # int() and str() refuse these
    st.sampled_from(["9" * 5000, "0" * 5000 + "300", "x" * 100_000, "\ud800", "\udfff" * 3]),
    st.floats(allow_nan=True, allow_infinity=True),
)
dns_labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
unicode_labels = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
any_hosts = st.one_of(
    hosts,
    st.lists(dns_labels, min_size=1, max_size=4).map(".".join),
    st.lists(st.one_of(dns_labels, unicode_labels, st.just("")), min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.text(max_size=20),
)
url_texts = st.text(st.characters(), max_size=30)  # every code point: controls, format, surrogates, escapes
clean_texts = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), max_size=12)
escapes = st.sampled_from(["%2F", "%2f", "%41", "%7E", "%2E", "%25", "%", "%Z", "%00", "%C3%BC", "%E2%80%8B"])
components = st.lists(
    st.one_of(clean_texts, clean_texts, url_texts, escapes, st.sampled_from(["/", ".", "..", "?", "#", "@", ":", "[", "]"])),
    max_size=6,
).map("".join)
built_urls = st.builds(
    lambda scheme, userinfo, host, port, path, query, fragment: (
        f"{scheme}{userinfo}{host}{port}{path}{query}{fragment}"),
    st.sampled_from(["https://", "https://", "http://", "HTTP://", "ftp://", "https:/", "//", ""]),
    st.sampled_from(["", "", "", "user:pw@", "@", "a@b@", "u%40x:@"]),
    any_hosts,
    st.sampled_from(["", "", "", ":", ":443", ":0", ":00080", ":65536", ":-1", ":x"]),
    st.one_of(st.just(""), components.map(lambda p: "/" + p), paths),
    st.one_of(st.just(""), components.map(lambda q: "?" + q)),
    st.one_of(st.just(""), components.map(lambda f: "#" + f)),
)
arbitrary = st.one_of(anything, huge, st.text(), st.characters().map(str))


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about three times in four, so that some whole submissions are valid (``one_of`` would
    weigh each of the many branches of ``bad`` like ``good``)."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: good if ok else bad)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(img_url=mostly(built_urls, st.one_of(urls, arbitrary)),
       model_name=mostly(st.sampled_from(PHOTO_NAMES + list(MODEL_ALIASES) + ["enhanced_v1", "x.y-z_2"]),
                         st.one_of(model_names, arbitrary)),
       extension=mostly(st.sampled_from(PHOTO_OUTPUT_FORMATS).map(lambda e: "." + e), st.one_of(extensions, arbitrary)),
       exif=mostly(st.booleans(), st.one_of(exifs, huge)),
       dpi=mostly(st.one_of(st.none(), st.integers(1, 10_000), st.integers(1, 10_000).map(str)),
                  st.one_of(dpis, huge, st.integers(0, 6000).map(lambda n: "9" * n), st.text(string.digits, max_size=8))),
       allow_unknown_model=mostly(st.booleans(), anything))
def test_build_submit_payload_returns_a_sendable_body_or_raises_the_typed_error(
    img_url, model_name, extension, exif, dpi, allow_unknown_model
):
    try:
        body = build_submit_payload(img_url, model_name, extension, exif, dpi,
                                    allow_unknown_model=allow_unknown_model)
    except HitPawValidationError as err:
        assert 0 < len(str(err)) < 2000
        event("refused")
        return
    event("accepted")
    # The body goes out as JSON: it must survive a round trip, strict (no NaN) and in UTF-8.
    text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    assert json.loads(text.encode("utf-8").decode("utf-8")) == body
    assert json.loads(json.dumps(body)) == body
    if allow_unknown_model is True and body["model_name"] not in PHOTO_NAMES and body["model_name"] not in MODEL_ALIASES:
        import re

        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", body["model_name"])
        body = {**body, "model_name": "face_2x"}  # the rest of the contract still holds
    assert_body_is_valid(body)
    assert validate_url(body["img_url"]) == body["img_url"]  # normalising is idempotent


@settings(max_examples=500, deadline=None)
@given(host=st.lists(dns_labels, min_size=1, max_size=5).map(".".join),
       port=st.one_of(st.none(), st.integers(1, 65535)),
       path=st.lists(st.from_regex(r"\A[A-Za-z0-9._~-]{1,8}\Z"), max_size=4).map("/".join),
       query=st.lists(st.tuples(st.from_regex(r"\A[A-Za-z0-9-]{1,8}\Z"),
                                st.sampled_from(["1", "a%2Fb", "x%3D%2B", "AKIA%2F2025%2Fs3"])), max_size=3))
def test_plain_urls_are_kept_as_they_are(host, port, path, query):
    """What was valid stays valid and unchanged: a DNS or loopback host, a path, a presigned query."""
    from hypothesis import assume

    assume(not host.rsplit(".", 1)[-1].isdigit() and not host.rsplit(".", 1)[-1].startswith("0x"))
    assume(all(segment not in (".", "..") for segment in path.split("/")))
    url = f"https://{host}{'' if port is None else f':{port}'}/{path}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query)
    assert validate_url(url) == url


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
                              dpi="{{ params.dpi }}", hitpaw_conn_id="hitpaw_fuzz",
                              wait_for_completion=False)  # what is sent is the point, not the wait
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
