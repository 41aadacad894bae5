"""The sandbox's HitPaw API over real HTTP: submissions, status, results, errors and the ledger."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
import requests
from PIL import Image

from airflow_provider_hitpaw.contract.endpoints import (
    PHOTO_ENHANCER_PATH,
    TASK_STATUS_PATH,
    VIDEO_ENHANCER_PATH,
)
from airflow_provider_hitpaw.contract.pricing import estimate_coins
from airflow_provider_hitpaw.sandbox.video import probe_video

PORTRAIT_SIZE = (512, 600)  # /samples/portrait.jpg

KEY = "test-key"
TIMEOUT = 10


def post(sb: Any, path: str, body: Any = None, key: str | None = KEY, **kwargs: Any) -> requests.Response:
    headers = {"Apikey": key} if key is not None else {}
    if body is not None and not isinstance(body, bytes | str):
        kwargs["json"] = body
    elif body is not None:
        kwargs["data"] = body
    return requests.post(sb.url(path), headers=headers, timeout=TIMEOUT, **kwargs)


def photo(sb: Any, model: str = "face_2x", sample: str = "portrait.jpg", ext: str = ".jpg", **extra: Any) -> dict:
    return {"model_name": model, "img_url": sb.url(f"/samples/{sample}"), "extension": ext, **extra}


def submit(sb: Any, **kwargs: Any) -> dict:
    reply = post(sb, PHOTO_ENHANCER_PATH, photo(sb, **kwargs))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["code"] == 200 and body["message"] == "OK"
    return body["data"]


def wait_final(sb: Any, job_id: str, key: str = KEY, deadline: float = 20) -> tuple[dict, list[str]]:
    """Poll until a final state; return the last data and the distinct states seen in order."""
    seen: list[str] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        reply = post(sb, TASK_STATUS_PATH, {"job_id": job_id}, key=key)
        assert reply.status_code == 200, reply.text
        data = reply.json()["data"]
        if not seen or seen[-1] != data["status"]:
            seen.append(data["status"])
        if data["status"] in ("COMPLETED", "ERROR"):
            return data, seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} not final after {deadline} s: {seen}")


def download(url: str) -> requests.Response:
    reply = requests.get(url, timeout=TIMEOUT)
    assert reply.status_code == 200
    return reply


def assert_error(reply: requests.Response, code: int, http_status: int, message: str) -> None:
    assert reply.status_code == http_status, reply.text
    assert reply.json() == {"error_code": code, "message": message}


def balance(sb: Any, key: str = KEY) -> int:
    from airflow_provider_hitpaw.sandbox.ledger import key_id

    return sb.stats()["balances"][key_id(key)]


# -- round trips ------------------------------------------------------------------------------------


def test_face_2x_round_trip_goes_through_states_and_doubles_the_size(sandbox: Any) -> None:
    data = submit(sandbox, model="face_2x")
    assert data["consume_coins"] == estimate_coins("face_2x", *PORTRAIT_SIZE) == 10
    final, seen = wait_final(sandbox, data["job_id"])
    assert seen[-1] == "COMPLETED"
    assert len(seen) >= 3 and set(seen[:-1]) <= {"WAITING", "INPUT_PREPARING", "CONVERTING", "OUTPUT_SAVING"}
    assert final["job_id"] == data["job_id"]
    assert final["original_url"] == sandbox.url("/samples/portrait.jpg")
    assert final["res_url"].startswith(sandbox.base_url + "/results/")
    reply = download(final["res_url"])
    assert reply.headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(reply.content))
    assert (img.format, img.size) == ("JPEG", (1024, 1200))


def test_status_before_completion_has_no_res_url(sandbox: Any) -> None:
    sandbox.configure(job_seconds=30)
    job_id = submit(sandbox)["job_id"]
    data = post(sandbox, TASK_STATUS_PATH, {"job_id": job_id}).json()["data"]
    assert data["status"] == "WAITING" and data["res_url"] == ""


@pytest.mark.parametrize(
    ("model", "size"),
    [("face_4x", (2048, 2400)), ("general_2x", (1024, 1200)), ("sharpen_denoise", (512, 600)),
     ("generative", (512, 600))],
)
def test_models_scale_the_image(sandbox: Any, model: str, size: tuple[int, int]) -> None:
    final, _ = wait_final(sandbox, submit(sandbox, model=model)["job_id"])
    assert Image.open(io.BytesIO(download(final["res_url"]).content)).size == size


@pytest.mark.parametrize(
    ("ext", "fmt", "content_type"),
    [("png", "PNG", "image/png"), (".WEBP", "WEBP", "image/webp"), (".tiff", "TIFF", "image/tiff"),
     (".bmp", "BMP", "image/bmp"), (".tga", "TGA", "image/x-tga"), (".jfif", "JPEG", "image/jpeg")],
)
def test_output_format_follows_the_extension(sandbox: Any, ext: str, fmt: str, content_type: str) -> None:
    final, _ = wait_final(sandbox, submit(sandbox, model="sharpen_denoise", ext=ext)["job_id"])
    reply = download(final["res_url"])
    assert reply.headers["Content-Type"] == content_type
    assert Image.open(io.BytesIO(reply.content)).format == fmt


def test_png_input_with_png_output(sandbox: Any) -> None:
    final, _ = wait_final(sandbox, submit(sandbox, model="detail_denoise", sample="landscape.png", ext=".png")["job_id"])
    img = Image.open(io.BytesIO(download(final["res_url"]).content))
    assert (img.format, img.size) == ("PNG", (320, 200))


def test_dpi_is_set(sandbox: Any) -> None:
    final, _ = wait_final(sandbox, submit(sandbox, model="sharpen_denoise", DPI=300)["job_id"])
    img = Image.open(io.BytesIO(download(final["res_url"]).content))
    assert tuple(round(v) for v in img.info["dpi"]) == (300, 300)


@pytest.mark.parametrize("keep", [True, False])
def test_exif_kept_or_dropped(sandbox: Any, keep: bool) -> None:
    job_id = submit(sandbox, model="sharpen_denoise", sample="exif.jpg", exif=keep)["job_id"]
    final, _ = wait_final(sandbox, job_id)
    exif = Image.open(io.BytesIO(download(final["res_url"]).content)).getexif()
    assert (exif.get(0x010F) == "HitPaw Sandbox") is keep


def test_video_job_is_scaled_and_charged_per_second(sandbox: Any) -> None:
    body = {"video_url": sandbox.url("/samples/clip-32x24-12fps-1000ms.mp4"), "model_name": "general_restore_2x",
            "resolution": [64, 48], "extension": ".mkv"}
    reply = post(sandbox, VIDEO_ENHANCER_PATH, body)
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert data["consume_coins"] == 10  # HitPaw's HD, <= 30 fps rate, 10 coins a second, for 1 s
    final, _ = wait_final(sandbox, data["job_id"])
    assert final["status"] == "COMPLETED" and final["original_url"] == body["video_url"]
    reply = download(final["res_url"])
    assert reply.headers["Content-Type"] == "video/x-matroska"
    info = probe_video(reply.content)
    assert (info.width, info.height, info.fps, info.duration) == (64, 48, 12.0, 1.0)


# -- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
def test_invalid_key_is_refused_first(sandbox: Any, key: str | None) -> None:
    for path in (PHOTO_ENHANCER_PATH, VIDEO_ENHANCER_PATH, TASK_STATUS_PATH):
        assert_error(post(sandbox, path, b"not json", key=key), 110400000, 400, "api_key is not valid")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b"\xff\xfe", {"img_url": "http://x/y.jpg", "extension": ".jpg"},
     {"model_name": 5, "img_url": "http://x/y.jpg", "extension": ".jpg"},
     {"model_name": "face_2x", "img_url": "http://x/y.jpg", "extension": ".jpg", "exif": "yes"},
     {"model_name": "face_2x", "img_url": "http://x/y.jpg", "extension": ".jpg", "DPI": True},
     {"model_name": "face_2x", "img_url": "http://x/y.jpg", "extension": ".jpg", "DPI": 0}],
)
def test_malformed_photo_body_is_bad_request(sandbox: Any, body: Any) -> None:
    assert_error(post(sandbox, PHOTO_ENHANCER_PATH, body), 100400002, 400, "Bad Request")


@pytest.mark.parametrize("model", ["enhanced_v1", "general_restore_2x", "FACE_2X", ""])
def test_unknown_or_video_model_is_refused_on_photo(sandbox: Any, model: str) -> None:
    reply = post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, model=model, sample="nothing-here.jpg"))
    assert_error(reply, 110400005, 400, "The model is not supported, please try again")


def test_model_alias_is_accepted(sandbox: Any) -> None:
    data = submit(sandbox, model="sharpen_denoise_1x")
    assert data["consume_coins"] == estimate_coins("sharpen_denoise", *PORTRAIT_SIZE)


@pytest.mark.parametrize("ext", [".heif", ".gif", "jpg ", ".mp4"])
def test_extension_not_valid(sandbox: Any, ext: str) -> None:
    assert_error(post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, ext=ext)), 110400007, 400,
                 "The extension is not valid")


@pytest.mark.parametrize("url", ["", "ftp://example.com/a.jpg", "example.com/a.jpg", "http:///a.jpg",
                                 "http://exa mple.com/a.jpg", "http://example.com:99999/a.jpg"])
def test_invalid_img_url(sandbox: Any, url: str) -> None:
    body = {"model_name": "face_2x", "img_url": url, "extension": ".jpg"}
    assert_error(post(sandbox, PHOTO_ENHANCER_PATH, body), 100400001, 400, "Invalid URL")


@pytest.mark.parametrize("path", ["/samples/missing.jpg", "/healthz"])
def test_unfetchable_or_non_image_url(sandbox: Any, path: str) -> None:
    body = {"model_name": "face_2x", "img_url": sandbox.url(path), "extension": ".jpg"}
    assert_error(post(sandbox, PHOTO_ENHANCER_PATH, body), 100400001, 400, "Invalid URL")


def test_unreachable_host_is_invalid_url(sandbox: Any) -> None:
    body = {"model_name": "face_2x", "img_url": "http://127.0.0.1:9/a.jpg", "extension": ".jpg"}
    assert_error(post(sandbox, PHOTO_ENHANCER_PATH, body), 100400001, 400, "Invalid URL")


def test_huge_input_is_over_the_input_limit(sandbox: Any) -> None:
    reply = post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, sample="huge.png"))
    assert_error(reply, 110400009, 400, "The input resolution is over limit")


def test_generative_model_has_an_output_limit_instead(sandbox: Any) -> None:
    reply = post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, model="generative", sample="huge.png"))
    assert_error(reply, 110400010, 400, "The target resolution is over limit")


@pytest.mark.parametrize(
    ("body", "code"),
    [({"model_name": "face_2x", "resolution": [640, 480]}, 110400005),
     ({"model_name": "general_restore_2x", "resolution": [640, 480], "extension": ".webm"}, 110400007),
     ({"model_name": "general_restore_2x", "resolution": [640, 480], "video_url": "http://127.0.0.1:9/x.mp4"},
      110400008),
     ({"model_name": "generative_1x", "resolution": [7680, 4320]}, 110400010),
     ({"model_name": "general_restore_2x", "resolution": [64, 48], "video_url": "/samples/clip-32x24-10fps-200ms.mp4"},
      110400011),
     ({"model_name": "general_restore_2x", "resolution": [8000, 6000]}, 110400010),
     ({"model_name": "general_restore_2x", "resolution": [640, 480], "video_url": "file:///x.mp4"}, 110400008),
     ({"model_name": "general_restore_2x", "resolution": [640]}, 100400002),
     ({"model_name": "general_restore_2x", "resolution": [640, "480"]}, 100400002)],
)
def test_video_refusals(sandbox: Any, body: dict, code: int) -> None:
    body = {"video_url": "/samples/clip-32x24-12fps-1000ms.mp4", **body}
    if body["video_url"].startswith("/"):
        body["video_url"] = sandbox.url(body["video_url"])
    reply = post(sandbox, VIDEO_ENHANCER_PATH, body)
    assert reply.status_code == 400 and reply.json()["error_code"] == code


def test_task_status_refusals(sandbox: Any) -> None:
    sandbox.add_key("other-key", 100)
    job_id = submit(sandbox)["job_id"]
    not_found = (110400002, 400, "The task does not exist")
    assert_error(post(sandbox, TASK_STATUS_PATH, {"job_id": "no-such-job"}), *not_found)
    assert_error(post(sandbox, TASK_STATUS_PATH, {"job_id": job_id}, key="other-key"), *not_found)
    assert_error(post(sandbox, TASK_STATUS_PATH, {"job_id": 12}), 100400002, 400, "Bad Request")
    assert_error(post(sandbox, TASK_STATUS_PATH, {}), 100400002, 400, "Bad Request")
    sandbox.forget_jobs()
    assert_error(post(sandbox, TASK_STATUS_PATH, {"job_id": job_id}), *not_found)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [("code", {"code": 110400000, "message": "api_key is not valid"}),
     ("code_msg", {"code": 110400000, "msg": "api_key is not valid"})],
)
def test_other_error_shapes(sandbox: Any, shape: str, expected: dict) -> None:
    sandbox.configure(error_shape=shape)
    reply = post(sandbox, TASK_STATUS_PATH, {"job_id": "x"}, key="wrong")
    assert reply.status_code == 400 and reply.json() == expected


# -- ledger -----------------------------------------------------------------------------------------


def test_each_model_is_charged_its_price(sandbox: Any) -> None:
    for model in ("face_2x", "face_4x", "sharpen_denoise", "generative_portrait"):
        before = balance(sandbox)
        price = estimate_coins(model, *PORTRAIT_SIZE)
        assert submit(sandbox, model=model)["consume_coins"] == price
        assert balance(sandbox) == before - price


def test_refused_requests_are_not_charged(sandbox: Any) -> None:
    post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, sample="huge.png"))
    post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, ext=".gif"))
    post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox, sample="missing.png"))
    assert balance(sandbox) == 1000
    assert sandbox.stats()["coins_charged_by_key"] == {}


def test_not_enough_coins_is_402_and_charges_nothing(sandbox: Any) -> None:
    sandbox.add_key("poor-key", 15)
    assert post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox), key="poor-key").status_code == 200
    reply = post(sandbox, PHOTO_ENHANCER_PATH, photo(sandbox), key="poor-key")
    assert_error(reply, 110402000, 402, "The coins are not enough")
    assert balance(sandbox, "poor-key") == 5
    body = {"video_url": sandbox.url("/samples/clip.mp4"), "model_name": "generative_1x", "resolution": [64, 64]}
    assert post(sandbox, VIDEO_ENHANCER_PATH, body, key="poor-key").status_code == 402


def test_custom_prices() -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox

    with start_sandbox(api_keys=["k-custom-price"], coins=3, prices={"face_2x": 3}) as sb:
        reply = post(sb, PHOTO_ENHANCER_PATH, photo(sb), key="k-custom-price")
        assert reply.json()["data"]["consume_coins"] == 3
        assert post(sb, PHOTO_ENHANCER_PATH, photo(sb), key="k-custom-price").status_code == 402


# -- other routes -----------------------------------------------------------------------------------


def test_healthz_and_samples(sandbox: Any) -> None:
    assert requests.get(sandbox.url("/healthz"), timeout=TIMEOUT).text == "ok"
    portrait = Image.open(io.BytesIO(download(sandbox.url("/samples/portrait.jpg")).content))
    assert portrait.size == (512, 600)
    landscape = download(sandbox.url("/samples/landscape.png"))
    assert landscape.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(landscape.content)).size == (320, 200)
    huge = download(sandbox.url("/samples/huge.png"))
    assert len(huge.content) < 200_000
    assert Image.open(io.BytesIO(huge.content)).size[0] * Image.open(io.BytesIO(huge.content)).size[1] > 67e6
    assert requests.get(sandbox.url("/samples/nope.png"), timeout=TIMEOUT).status_code == 404


def test_results_of_unknown_or_unfinished_jobs_are_404(sandbox: Any) -> None:
    sandbox.configure(job_seconds=30)
    job_id = submit(sandbox)["job_id"]
    assert requests.get(sandbox.url(f"/results/{job_id}/result.jpg"), timeout=TIMEOUT).status_code == 404
    assert requests.get(sandbox.url("/results/nope/result.jpg"), timeout=TIMEOUT).status_code == 404


def test_fail_job_when_work_is_over_the_work_cap() -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox

    with start_sandbox(api_keys=[KEY], job_seconds=0, max_work_megapixels=1.0) as sb:
        final, _ = wait_final(sb, submit(sb, model="face_2x")["job_id"])
        assert final["status"] == "ERROR" and final["res_url"] == ""
