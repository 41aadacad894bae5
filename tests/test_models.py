"""The model catalog and the checks made before anything is sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.models import (
    MODELS,
    PHOTO_MODELS,
    VIDEO_MODELS,
    ModelKind,
    extension_from_url,
    get_model,
    validate_dpi,
    validate_extension,
    validate_model_name,
    validate_url,
)

SEED_PHOTO_MODELS = {
    "face_2x": 2, "face_4x": 4, "face_v2_2x": 2, "face_v2_4x": 4, "general_2x": 2, "general_4x": 4,
    "high_fidelity_2x": 2, "high_fidelity_4x": 4, "sharpen_denoise": 1, "detail_denoise": 1,
    "generative_portrait": 1, "generative": 1,
}
NOTES_VIDEO_MODELS = {
    "face_soft_2x", "portrait_restore_1x", "portrait_restore_2x", "general_restore_1x",
    "general_restore_2x", "general_restore_4x", "ultrahd_restore_2x", "generative_1x",
}


def test_catalog_matches_the_documents():
    assert {m.name: m.scale for m in PHOTO_MODELS} == SEED_PHOTO_MODELS
    assert {m.name for m in VIDEO_MODELS} == NOTES_VIDEO_MODELS
    assert MODELS["face_2x"].max_input_megapixels == 67 and MODELS["face_2x"].max_output_megapixels == 600
    assert MODELS["generative"].max_input_megapixels is None
    assert MODELS["generative_portrait"].max_output_megapixels == 33
    assert MODELS["general_restore_4x"].kind is ModelKind.VIDEO
    assert "heif" in MODELS["face_2x"].input_formats and "heif" not in MODELS["face_2x"].output_formats


def test_alias_resolves():
    assert get_model("sharpen_denoise_1x") is MODELS["sharpen_denoise"]


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


def test_extension_from_url():
    assert extension_from_url("https://x.com/a/photo.JPG?sig=1") == ".jpg"
    assert extension_from_url("https://x.com/a/photo") is None
    assert extension_from_url("https://x.com/a/file.exe") is None
    assert extension_from_url("https://x.com/a.png/") is None


@pytest.mark.parametrize("url", ["https://example.com/a.jpg", "http://127.0.0.1:8899/samples/portrait.jpg",
                                 "https://bücher.example/ü.jpg"])
def test_good_urls(url):
    assert validate_url(url) == url


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


@pytest.mark.parametrize("dpi", [0, -5, 10001, 3.5, "3.5", "abc", True, [300], ""])
def test_dpi_bad(dpi):
    with pytest.raises(HitPawValidationError):
        validate_dpi(dpi)


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
