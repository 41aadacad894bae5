"""The model catalog and the checks made before anything is sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.models import (
    MODELS,
    VIDEO_MODELS,
    ModelKind,
    build_submit_payload,
    extension_from_url,
    get_model,
    validate_dpi,
    validate_extension,
    validate_model_name,
    validate_url,
)


def short_id(value):
    """A test id for any value: pytest's own would turn a 5000-digit int into text, which raises."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 1000 else f"int of {value.bit_length()} bits"
    return text if len(text) <= 30 else f"{text[:20]}...({len(text)} chars)"


SEED_PHOTO_MODELS = {
    "face_2x": 2, "face_4x": 4, "face_v2_2x": 2, "face_v2_4x": 4, "general_2x": 2, "general_4x": 4,
    "high_fidelity_2x": 2, "high_fidelity_4x": 4, "sharpen_denoise": 1, "detail_denoise": 1,
    "generative_portrait": 1, "generative": 1,
}
# docs/enhance/image-enhancement.md (current) and the MCP client's spellings.
CURRENT_PHOTO_NAMES = {
    "sharpen_denoise_1x": 1, "detail_denoise_1x": 1, "generative_portrait_1x": 1, "generative_portrait_2x": 2,
    "generative_portrait_4x": 4, "generative_1x": 1, "generative_2x": 2, "generative_4x": 4, "generative_6x": 6,
    "generative_8x": 8, "generative_enhance_fast_model_2x": 2, "generative_enhance_fast_model_4x": 4,
    "generative_enhance_fast_2x": 2, "generative_enhance_fast_4x": 4,
}
NOTES_VIDEO_MODELS = {
    "face_soft_2x", "portrait_restore_1x", "portrait_restore_2x", "general_restore_1x",
    "general_restore_2x", "general_restore_4x", "ultrahd_restore_2x", "generative_1x",
}


def test_catalog_matches_the_documents():
    for name, scale in {**SEED_PHOTO_MODELS, **CURRENT_PHOTO_NAMES}.items():
        spec = get_model(name, video=False)
        assert spec is not None and spec.scale == scale and not spec.is_video, name
        assert validate_model_name(name) is spec
        assert spec.source
    assert {m.name for m in VIDEO_MODELS} == NOTES_VIDEO_MODELS
    # The loosest documented limits (see catalog.py): 70 MP in, 600 MP out; generative 34 MP out.
    assert MODELS["face_2x"].max_input_megapixels == 70 and MODELS["face_2x"].max_output_megapixels == 600
    assert MODELS["generative"].max_input_megapixels is None
    assert MODELS["generative_portrait"].max_output_megapixels == 34
    assert get_model("generative_8x").max_output_megapixels == 34
    assert MODELS["general_restore_4x"].kind is ModelKind.VIDEO
    assert "heif" in MODELS["face_2x"].input_formats and "heif" not in MODELS["face_2x"].output_formats


def test_alias_resolves():
    assert get_model("sharpen_denoise_1x") is MODELS["sharpen_denoise"]
    assert get_model("generative_enhance_fast_2x") is MODELS["generative_enhance_fast_model_2x"]


def test_generative_1x_is_a_photo_and_a_video_model():
    assert get_model("generative_1x", video=False) is MODELS["generative"]
    assert get_model("generative_1x", video=True).is_video
    assert validate_model_name("generative_1x") is MODELS["generative"]
    assert validate_model_name("generative_1x", video=True).is_video


def test_typo_suggests_the_nearest_name():
    with pytest.raises(HitPawValidationError, match=r"Did you mean 'face_2x'\?") as info:
        validate_model_name("face2x")
    assert "general_4x" in str(info.value)  # lists the valid values


def test_unknown_model_needs_opt_in():
    with pytest.raises(HitPawValidationError, match="allow_unknown_model=True"):
        validate_model_name("enhanced_v1")
    assert validate_model_name("enhanced_v1", allow_unknown_model=True) is None


def test_video_and_photo_models_do_not_mix():
    with pytest.raises(HitPawValidationError, match="is a video model"):
        validate_model_name("general_restore_2x")
    with pytest.raises(HitPawValidationError, match="is a photo model"):
        validate_model_name("face_2x", video=True)
    assert validate_model_name("general_restore_2x", video=True).scale == 2


@pytest.mark.parametrize("bad", [None, "", "  ", 5, " face_2x", ["face_2x"]])
def test_bad_model_values(bad):
    with pytest.raises(HitPawValidationError):
        validate_model_name(bad)


@pytest.mark.parametrize(("given_ext", "expected"), [(".jpg", ".jpg"), ("png", ".png"), (".WEBP", ".webp"),
                                                     ("jfif", ".jfif"), (" .tiff", ".tiff")])
def test_extensions_normalised(given_ext, expected):
    assert validate_extension(given_ext, MODELS["face_2x"]) == expected


def test_bad_extension_lists_valid_ones():
    with pytest.raises(HitPawValidationError, match=r"\.bmp, \.jpeg, \.jpg") as info:
        validate_extension(".gif", MODELS["face_2x"])
    assert "'.gif'" in str(info.value)
    with pytest.raises(HitPawValidationError, match="input only"):
        validate_extension(".heif", MODELS["face_2x"])
    for bad in [None, "", ".", "../x", ".j pg", 3]:
        with pytest.raises(HitPawValidationError):
            validate_extension(bad, MODELS["face_2x"])


@pytest.mark.parametrize("ext", [".mp4", ".heif", "mp4", ".HEIF", ".gif", ".mov"])
def test_unknown_model_still_gets_a_photo_extension(ext):
    """A photo job writes a photo whatever the model: allow_unknown_model does not open the video formats."""
    with pytest.raises(HitPawValidationError):
        build_submit_payload("https://x.com/a.jpg", "enhanced_v1", ext, allow_unknown_model=True)
    with pytest.raises(HitPawValidationError):
        validate_extension(ext, None)


def test_unknown_model_with_a_photo_extension():
    body = build_submit_payload("https://x.com/a.jpg", "enhanced_v1", "PNG", allow_unknown_model=True)
    assert body == {"model_name": "enhanced_v1", "img_url": "https://x.com/a.jpg", "extension": ".png", "exif": False}
    with pytest.raises(HitPawValidationError, match="video format"):
        validate_extension(".mp4", None)


@pytest.mark.parametrize("name", ["\ud800", "face\x00_2x", "face 2x", "enhanced\u200bv1", "x" * 65, "a/b", "-x",
                                  "ﬁ", "x" * 10**6], ids=short_id)
def test_unknown_model_names_must_look_like_names(name):
    with pytest.raises(HitPawValidationError):
        build_submit_payload("https://x.com/a.jpg", name, ".jpg", allow_unknown_model=True)


@pytest.mark.parametrize("kwargs", [
    {"model_name": "x" * 10**6}, {"model_name": 10**5000}, {"extension": "j" * 10**6}, {"extension": "\ud800"},
    {"extension": ".\uff4a\uff50\uff47"}, {"img_url": "https://x.com/\ud800.jpg"}, {"img_url": "https://x.com/" + "a" * 10**6},
    {"img_url": 10**5000}, {"dpi": 10**5000}, {"dpi": float("nan")}, {"dpi": "9" * 10**5}, {"exif": 10**5000},
    {"exif": float("nan")}, {"allow_unknown_model": "no"}, {"allow_unknown_model": None},
], ids=lambda kwargs: "-".join(f"{k}={short_id(v)}" for k, v in kwargs.items()))
def test_build_submit_payload_raises_only_the_typed_error(kwargs):
    args = {"img_url": "https://x.com/a.jpg", "model_name": "face_2x", "extension": ".jpg", **kwargs}
    with pytest.raises(HitPawValidationError) as info:
        build_submit_payload(**args)
    assert len(str(info.value)) < 1000


def test_extension_from_url():
    assert extension_from_url("https://x.com/a/photo.JPG?sig=1") == ".jpg"
    assert extension_from_url("https://x.com/a/photo") is None
    assert extension_from_url("https://x.com/a/file.exe") is None
    assert extension_from_url("https://x.com/a.png/") is None
    assert extension_from_url("https://[::1/a.jpg") is None


PRESIGNED = ("https://bucket.s3.us-east-1.amazonaws.com/in/photo.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIA%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab12")


@pytest.mark.parametrize("url", ["https://example.com/a.jpg", "http://127.0.0.1:8899/samples/portrait.jpg",
                                 "http://localhost:8899/samples/portrait.jpg", "http://[::1]:9000/a.jpg",
                                 "https://cdn/a.jpg", "https://x.com./a.jpg", "http://user:pw@127.0.0.1/a.jpg",
                                 "https://e.com/a.jpg?sig=a%2Bb%3D&exp=1#top", PRESIGNED,
                                 "https://xn--bcher-kva.example/%C3%BC.jpg"])
def test_good_urls(url):
    assert validate_url(url) == url


@pytest.mark.parametrize(("url", "sent"), [
    ("https://bücher.example/ü.jpg", "https://xn--bcher-kva.example/%C3%BC.jpg"),
    ("HTTPS://Photos.Example/A.JPG", "https://photos.example/A.JPG"),
    ("https://x.com", "https://x.com/"),
    ("https://x.com?a=1", "https://x.com/?a=1"),
    ("https://x.com:0443/a.jpg", "https://x.com:443/a.jpg"),
    ("https://x.com:/a.jpg?", "https://x.com/a.jpg"),
    ("https://x.com/a/./b/../c.jpg", "https://x.com/a/c.jpg"),
    ("https://x.com/%7euser/a%2fb%2e.jpg", "https://x.com/~user/a%2Fb..jpg"),
    ("https://x.com/a|b{1}.jpg?q=[1]#f#g", "https://x.com/a%7Cb%7B1%7D.jpg?q=%5B1%5D#f%23g"),
    ("https://x.com/中文.jpg?name=ü", "https://x.com/%E4%B8%AD%E6%96%87.jpg?name=%C3%BC"),
])
def test_urls_are_normalised_to_what_an_http_client_sends(url, sent):
    from requests.models import PreparedRequest

    assert validate_url(url) == sent
    prepared = PreparedRequest()
    prepared.prepare_url(sent, None)
    assert prepared.url == sent  # requests sends it as it is
    assert validate_url(sent) == sent


@pytest.mark.parametrize("char", ["\x7f", "\x80", "\x85", "\x9f", "\xa0", "\u00ad", "\u200b", "\u200d", "\u2060",
                                  "\ufeff", "\u202e", "\u2066", "\u061c", "\u2028", "\u3000", "\u3164", "\ue000",
                                  "\ud800", "\U000e0001"])
@pytest.mark.parametrize("where", ["https://x.com/a{}.jpg", "https://x{}.com/a.jpg", "https://x.com/a.jpg?s={}",
                                   "{}https://x.com/a.jpg", "https://x.com/a.jpg{}"])
def test_urls_with_control_or_invisible_characters_refused(char, where):
    with pytest.raises(HitPawValidationError, match=r"invisible|white space|control"):
        validate_url(where.format(char))


@pytest.mark.parametrize("host", ["%00", "..", "a..b", ".x.com", "x%2Ecom", "-x.com", "x-.com", "a_b.com", "a b",
                                  "1.2.3", "0x7f.1", "999.1.1.1", "127.0.0.1.", "010.0.0.1", "a" * 64 + ".com",
                                  ".".join(["a" * 63] * 4) + ".com", "[v1.x]", "[fe80::1%25eth0]", "[::1",
                                  "xn--zz.com", "💩.la", "ex*ample.com", "x.com\\@y.com"])
def test_urls_with_a_bad_host_refused(host):
    with pytest.raises(HitPawValidationError):
        validate_url(f"https://{host}/a.jpg")


@pytest.mark.parametrize("url", ["https://x.com/50%", "https://x.com/a%zz.jpg", "https://x.com/a.jpg?s=%2",
                                 "https://x.com:0/a.jpg", "https://x.com/a\\b.jpg"])
def test_urls_with_bad_escapes_ports_or_backslashes_refused(url):
    with pytest.raises(HitPawValidationError):
        validate_url(url)


def test_url_length_counts_once_percent_encoded():
    url = "https://x.com/" + "ü" * 1500  # 1514 characters, 9014 once encoded
    with pytest.raises(HitPawValidationError, match="once percent-encoded"):
        validate_url(url)


@pytest.mark.parametrize("url", [None, "", " ", "ftp://x/a.jpg", "file:///etc/passwd", "javascript:alert(1)",
                                 "/relative/a.jpg", "https://", "https://host:99999/a.jpg",
                                 "https://x.com/a b.jpg", "https://x.com/a\n.jpg", "https://x.com/" + "a" * 5000,
                                 b"https://x.com/a.jpg", 42])
def test_bad_urls(url):
    with pytest.raises(HitPawValidationError):
        validate_url(url)


@pytest.mark.parametrize(("dpi", "expected"), [(None, None), (300, 300), ("72", 72), (1, 1), (10000, 10000)])
def test_dpi_ok(dpi, expected):
    assert validate_dpi(dpi) == expected


@pytest.mark.parametrize("dpi", [0, -5, 10001, 3.5, "3.5", "abc", True, [300], "", float("nan"), float("inf"),
                                 "9" * 5000, "1" + "0" * 4400, 10**5000, -(10**5000), "١٢٣", " ", "+300", "3_00"],
                         ids=short_id)
def test_dpi_bad(dpi):
    with pytest.raises(HitPawValidationError):
        validate_dpi(dpi)


def test_dpi_leading_zeros_and_int_subclasses():
    import enum

    class Dpi(enum.IntEnum):
        PRINT = 300

    assert validate_dpi("0" * 5000 + "300") == 300
    assert type(validate_dpi(Dpi.PRINT)) is int


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.text(max_size=40), st.integers(), st.none(), st.binary(max_size=10)),
       ext=st.one_of(st.text(max_size=10), st.integers(), st.none()),
       url=st.one_of(st.text(max_size=200), st.none(), st.integers()),
       dpi=st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=6), st.booleans()))
def test_validators_only_raise_the_typed_error(name, ext, url, dpi):
    for check in (lambda: validate_model_name(name), lambda: validate_extension(ext, None),
                  lambda: validate_url(url), lambda: validate_dpi(dpi)):
        try:
            check()
        except HitPawValidationError:
            pass
