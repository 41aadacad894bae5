"""Video: HitPaw's per-second prices, the checks before paying, and EnhanceVideoOperator end to end
against the sandbox, which scales videos for real (PyAV).

The clips are tiny (32x24 to 160x120, at most 3 s) so that the whole module stays fast.
"""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from airflow_provider_hitpaw.contract.catalog import PriceTable, get_model
from airflow_provider_hitpaw.contract.pricing import (
    UnpricedModelError,
    billed_seconds,
    estimate_video_coins,
    frame_rate_band,
    video_coins_per_second,
    video_resolution_row,
)
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.operators.video import EnhanceVideoOperator
from airflow_provider_hitpaw.retries import RetryPolicy
from airflow_provider_hitpaw.sandbox import start_sandbox
from airflow_provider_hitpaw.sandbox.video import sample_clip
from airflow_provider_hitpaw.video_preflight import check_video_before_paying, url_video_header
from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection
from tests.support.operator_support import FakeTaskInstance, FakeTaskStateStore, make_context
from tests.support.photo_host import PhotoHost

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05, jitter=0)


def submissions(sandbox: Any) -> int:
    return len(sandbox.stats()["submissions"])


def coins_charged(sandbox: Any) -> int:
    return sum(sandbox.stats()["coins_charged_by_key"].values())


def clip_file(folder: Path, name: str = "clip.mp4", **kwargs: Any) -> Path:
    path = folder / name
    path.write_bytes(sample_clip(**kwargs))
    return path


def long_clip(path: Path) -> Path:
    """A 16x16 clip whose header says 3701 s: two frames an hour apart (a few hundred bytes)."""
    with av.open(str(path), mode="w") as target:
        stream = target.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for pts in (0, 3700):
            frame = av.VideoFrame(16, 16, "yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 1)
            for packet in stream.encode(frame):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return path


def decoded(path: Path) -> tuple[int, int, int, float]:
    """(width, height, frames decoded, duration in seconds) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert container.duration is not None
        return stream.codec_context.width, stream.codec_context.height, frames, container.duration / 1_000_000


@pytest.fixture
def hook(sandbox_conn: str) -> Any:
    h = HitPawHook(sandbox_conn, retry_policy=FAST)
    yield h
    h.close()


# --- HitPaw's price table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "band"),
    [(1, 0), (24, 0), (29.97, 0), (30, 0), (30.01, 1), (50, 1), (60, 1), (60.5, 2), (90, 2), (119.88, 2),
     (120, 3), (240, 3)],
)
def test_frame_rate_bands(fps: float, band: int) -> None:
    assert frame_rate_band(fps) == band


@pytest.mark.parametrize(
    ("size", "row"),
    [((64, 48), 0), ((1280, 720), 0), ((1281, 720), 1), ((1080, 1920), 1), ((1920, 1080), 1), ((2560, 1440), 2),
     ((3840, 2160), 3), ((3841, 2160), 4), ((7680, 4320), 4), ((6000, 6000), 4)],
)
def test_resolution_rows(size: tuple[int, int], row: int) -> None:
    assert video_resolution_row(*size) == row


def test_the_tables_are_hitpaws() -> None:
    # docs/get-started/pricing.md: a few cells of each table, corners first.
    assert video_coins_per_second(PriceTable.VIDEO_STANDARD, 1280, 720, 24) == 10
    assert video_coins_per_second(PriceTable.VIDEO_STANDARD, 7680, 4320, 120) == 198
    assert video_coins_per_second(PriceTable.VIDEO_STANDARD, 2560, 1440, 50) == 39
    assert video_coins_per_second(PriceTable.VIDEO_ULTRA_HD, 1280, 720, 24) == 15
    assert video_coins_per_second(PriceTable.VIDEO_ULTRA_HD, 7680, 4320, 120) == 264
    assert video_coins_per_second(PriceTable.VIDEO_ULTRA_HD, 3840, 2160, 90) == 135
    assert video_coins_per_second(PriceTable.VIDEO_GENERATIVE, 1280, 720, 24) == 15
    assert video_coins_per_second(PriceTable.VIDEO_GENERATIVE, 3840, 2160, 120) == 338
    with pytest.raises(UnpricedModelError, match="stops at 4K"):
        video_coins_per_second(PriceTable.VIDEO_GENERATIVE, 7680, 4320, 24)
    assert get_model("ultrahd_restore_2x", video=True).pricing is PriceTable.VIDEO_ULTRA_HD
    assert get_model("face_soft_2x", video=True).pricing is PriceTable.VIDEO_STANDARD


def test_seconds_are_rounded_up_to_whole_seconds() -> None:
    assert [billed_seconds(d) for d in (0.5, 1.0, 1.0000001, 1.4, 2.0, 3599.2)] == [1, 1, 1, 2, 2, 3600]
    assert estimate_video_coins("general_restore_2x", 1920, 1080, 25, 10.2) == 15 * 11
    with pytest.raises(UnpricedModelError):
        estimate_video_coins("face_2x", 1920, 1080, 25, 10)  # a photo model
    with pytest.raises(ValueError):
        estimate_video_coins("general_restore_2x", 1920, 1080, 0, 10)


# (model, resolution, clip fps, clip milliseconds): every resolution row and frame-rate band once.
TIERS = [
    ("general_restore_2x", [640, 480], 24, 1500),
    ("face_soft_2x", [1920, 1080], 50, 1000),
    ("portrait_restore_1x", [2560, 1440], 90, 500),
    ("general_restore_4x", [3840, 2160], 120, 1000),
    ("ultrahd_restore_2x", [7680, 4320], 24, 2400),
    ("ultrahd_restore_2x", [1280, 720], 60, 1000),
    ("generative_1x", [3840, 2160], 30, 700),
]


def test_the_estimate_is_the_sandboxs_charge_for_every_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    # max_work_megapixels: the sandbox charges, then ends these large jobs in ERROR without scaling them.
    with start_sandbox(api_keys={SANDBOX_API_KEY: 100_000}, job_seconds=0, max_work_megapixels=0.01) as sb:
        set_hitpaw_connection(monkeypatch, "hitpaw_tiers", sb.base_url, SANDBOX_API_KEY)
        hook = HitPawHook("hitpaw_tiers", retry_policy=FAST)
        seen = set()
        for model, resolution, fps, milliseconds in TIERS:
            url = sb.url(f"/samples/clip-32x24-{fps}fps-{milliseconds}ms.mp4")
            estimate = check_video_before_paying(hook, url, model, resolution).estimated_coins
            job = hook.enhance_video(url, model, resolution)
            assert estimate is not None and job.consume_coins == estimate, (model, resolution, fps)
            seen.add(estimate)
        assert len(seen) == len(TIERS)  # every case is a different price: none passes by accident
        assert coins_charged(sb) == sum(seen)
        hook.close()


# --- refusals before paying -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name": "video_enhance_v2"}, "Unknown HitPaw model"),
        ({"model_name": "face_2x"}, "is a photo model"),
        ({"resolution": [1280]}, "two positive whole numbers"),
        ({"resolution": [1280, 0]}, "two positive whole numbers"),
        ({"resolution": "wide"}, "two positive whole numbers"),
        ({"resolution": [8000, 4501]}, "over HitPaw's 36 MP limit"),
        ({"extension": ".webm"}, "not one HitPaw writes for a video"),
        ({"extension": ".png"}, "not one HitPaw writes for a video"),
    ],
)
def test_the_hook_refuses_before_paying(hook: Any, sandbox: Any, kwargs: dict, message: str) -> None:
    arguments: dict[str, Any] = {"video_url": sandbox.url("/samples/clip.mp4"), "model_name": "general_restore_2x",
                                 "resolution": [320, 240], **kwargs}
    with pytest.raises(HitPawValidationError, match=message):
        hook.enhance_video(**arguments)
    with pytest.raises(HitPawValidationError, match=message):
        asyncio.run(HitPawAsyncHook(hook.hitpaw_conn_id).enhance_video(**arguments))
    assert submissions(sandbox) == 0


def test_the_operator_refuses_literal_arguments_at_parse_time() -> None:
    base: dict[str, Any] = {"task_id": "v", "video_url": "https://example.com/a.mp4", "model_name": "general_restore_2x",
            "resolution": [320, 240]}
    bad: dict[str, Any]
    for bad in ({"model_name": "nope"}, {"resolution": [6001, 6000]}, {"extension": ".webm"},
                {"video_path": "/data/a.mp4"}, {"video_url": None}, {"video_url": "ftp://x/a.mp4"},
                {"video_url": None, "video_path": "/data/a.wmv"}, {"poll_interval": 0}):
        with pytest.raises(HitPawValidationError):
            EnhanceVideoOperator(**{**base, **bad})
    op = EnhanceVideoOperator(**{**base, "resolution": "{{ params.resolution }}", "model_name": "{{ params.m }}"})
    assert op.poll_interval == 10 and op.timeout == 6 * 3600 and "resolution" in op.template_fields


def run_operator(conn_id: str, tmp_path: Path, rendered: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run the operator in the worker; ``rendered``: attributes as Jinja would have rendered them."""
    arguments: dict[str, Any] = {"task_id": "enhance_video", "model_name": "general_restore_2x", "resolution": [128, 96],
                 "hitpaw_conn_id": conn_id, "poll_interval": 1, "timeout": 60,
                 "output_path": str(tmp_path / "out") + "/", **kwargs}
    op = EnhanceVideoOperator(**arguments)
    for key, value in (rendered or {}).items():
        setattr(op, key, value)
    return op.execute(make_context(store=FakeTaskStateStore(), ti=FakeTaskInstance(1, 0)))  # type: ignore[arg-type]


def test_every_refusal_of_the_video_itself_costs_nothing(sandbox: Any, sandbox_conn: str, tmp_path: Path) -> None:
    short = clip_file(tmp_path, "short.mp4", width=32, height=24, fps=10, milliseconds=300)
    long = long_clip(tmp_path / "long.mp4")
    # (arguments, what Jinja renders afterwards, the refusal)
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"video_path": str(short)}, {}, r"lasts 0\.300 s"),
        ({"video_path": str(long)}, {}, r"lasts 3701\.000 s"),
        ({"video_url": sandbox.url("/samples/clip-32x24-10fps-300ms.mp4")}, {}, r"lasts 0\.300 s"),
        # The sample lasts 3 s at 12 fps: 3 x 10 coins at HD, <= 30 fps.
        ({"video_url": sandbox.url("/samples/clip.mp4"), "max_coins": 29}, {}, "would cost 30 coins, over max_coins=29"),
        ({"video_url": sandbox.url("/samples/clip.mp4"), "resolution": "{{ params.size }}"},
         {"resolution": "9000x9000"}, "36 MP"),
        ({"video_url": sandbox.url("/samples/clip.mp4"), "model_name": "{{ params.model }}"},
         {"model_name": "video_enhance_v2"}, "Unknown HitPaw model"),
        ({"video_url": sandbox.url("/samples/clip.mp4"), "extension": "{{ params.ext }}"},
         {"extension": ".webm"}, "not one HitPaw writes for a video"),
    ]
    for kwargs, rendered, message in cases:
        op = EnhanceVideoOperator(**{"task_id": "enhance_video", "model_name": "general_restore_2x",
                                     "resolution": [128, 96], "hitpaw_conn_id": sandbox_conn, "poll_interval": 1,
                                     "timeout": 60, **kwargs})
        for key, value in rendered.items():
            setattr(op, key, value)
        with pytest.raises(HitPawValidationError, match=message):
            op.execute(make_context(store=FakeTaskStateStore(), ti=FakeTaskInstance(1, 0)))  # type: ignore[arg-type]
    assert submissions(sandbox) == 0 and coins_charged(sandbox) == 0


# --- end to end -----------------------------------------------------------------------------------


def test_a_private_video_is_uploaded_enhanced_and_downloaded_in_the_worker(
    sandbox: Any, sandbox_conn: str, tmp_path: Path
) -> None:
    source = clip_file(tmp_path, "holiday.mov", width=64, height=48, fps=24, milliseconds=1000, extension="mov")
    result = run_operator(sandbox_conn, tmp_path, video_path=str(source), extension=".mkv", max_coins=10,
                          original_resolution="{{ params.original }}",
                          rendered={"original_resolution": "None"})  # how Jinja renders a missing value
    assert result["status"] == "COMPLETED" and result["consume_coins"] == 10  # 1 s at HD, <= 30 fps
    output = Path(result["output_path"])
    assert output.name == f"holiday-{result['job_id']}.mkv"
    width, height, frames, duration = decoded(output)
    _, _, source_frames, source_duration = decoded(source)
    assert (width, height) == (128, 96)
    assert abs(frames - source_frames) <= 1 and abs(duration - source_duration) <= 1 / 24
    assert submissions(sandbox) == 1 and coins_charged(sandbox) == 10


def test_the_async_hook_submits_a_video(sandbox: Any, sandbox_conn: str) -> None:
    async def submit() -> Any:
        return await HitPawAsyncHook(sandbox_conn, retry_policy=FAST).enhance_video(
            sandbox.url("/samples/clip-32x24-50fps-1000ms.mp4"), "ultrahd_restore_2x", "64x48", ".avi"
        )

    job = asyncio.run(submit())
    assert job.consume_coins == 31  # Ultra HD, HD row, 30-60 fps, 1 s
    assert sandbox.stats()["submissions"][0]["coins"] == 31


def test_a_video_header_is_read_from_an_upload_and_a_non_video_is_skipped(sandbox: Any, hook: Any, tmp_path: Path) -> None:
    source = clip_file(tmp_path, "c.mp4", width=64, height=48, fps=24, milliseconds=1000)
    uploaded = hook.upload_file(source)  # served from disk, with ranges
    header = url_video_header(hook, uploaded.access_url)
    assert header is not None and (header.width, header.height, header.fps, header.duration) == (64, 48, 24.0, 1.0)
    assert url_video_header(hook, sandbox.url("/samples/portrait.jpg")) is None  # skipped, logged
    assert url_video_header(hook, sandbox.url("/samples/none.mp4")) is None


def test_a_header_at_the_end_is_read_through_short_ranges_and_never_with_the_key(hook: Any) -> None:
    clip = sample_clip()  # an MP4 whose index (moov) follows the frames
    assert clip.rfind(b"moov") > clip.find(b"mdat")
    with PhotoHost(files={"/v.mp4": clip}, max_range_bytes=2048) as host:
        header = url_video_header(hook, host.url("/v.mp4"))
    assert header is not None and (header.width, header.height, header.fps, header.duration) == (160, 120, 12.0, 3.0)
    assert len(host.seen) > 1 and all(s.headers.get("Range", "").startswith("bytes=") for s in host.seen)
    assert not any(name.lower() == "apikey" for s in host.seen for name in s.headers)
    with PhotoHost(files={"/v.mp4": clip}, ranges=False) as host:  # a host without ranges: read whole
        assert url_video_header(hook, host.url("/v.mp4")) == header
    assert len(host.seen) == 1


@pytest.mark.dagtest
@pytest.mark.parametrize("deferrable", [pytest.param(False, id="worker"), pytest.param(True, id="deferred")])
def test_the_example_dag_upscales_the_sample_clip(
    airflow_db: Any, monkeypatch: pytest.MonkeyPatch, sandbox: Any, tmp_path: Path, deferrable: bool
) -> None:
    from tests.support.dag_files import load_dag

    monkeypatch.setenv(
        "AIRFLOW_CONN_HITPAW_DEFAULT",
        json.dumps({"conn_type": "hitpaw", "host": sandbox.base_url, "password": SANDBOX_API_KEY}),
    )
    dag = load_dag(airflow_db, "example_hitpaw_enhance_video.py", "example_hitpaw_enhance_video")
    task = dag.get_task("enhance_video")
    task.deferrable, task.poll_interval = deferrable, 1
    run = dag.test(run_conf={"output_dir": str(tmp_path / "results")})
    assert str(run.state) == "success"
    (copied,) = list((tmp_path / "results").iterdir())
    assert copied.suffix == ".mp4"
    assert decoded(copied)[:3] == (320, 240, 36)  # the sample: 160x120, 36 frames at 12 fps
    assert abs(decoded(copied)[3] - 3.0) <= 1 / 12
    assert submissions(sandbox) == 1 and coins_charged(sandbox) == 30


def test_a_retry_reconnects_to_the_paid_job_and_reuses_the_upload(sandbox: Any, sandbox_conn: str, tmp_path: Path) -> None:
    source = clip_file(tmp_path, "c.mp4", width=32, height=24, fps=10, milliseconds=1000)
    store = FakeTaskStateStore()

    def one_try(try_number: int) -> Any:
        op = EnhanceVideoOperator(task_id="enhance_video", video_path=str(source), model_name="general_restore_1x",
                                  resolution=[32, 24], hitpaw_conn_id=sandbox_conn, wait_for_completion=False,
                                  retries=3)
        result = op.execute(make_context(store=store, ti=FakeTaskInstance(try_number, 3)))  # type: ignore[arg-type]
        return op, result

    _, first = one_try(1)
    op, second = one_try(2)
    assert second["job_id"] == first["job_id"] and store.values["hitpaw_upload"]["img_path"] == str(source)
    assert submissions(sandbox) == 1 and coins_charged(sandbox) == 10
    assert op.video_label == "c.mp4"
    lineage = op.get_openlineage_facets_on_complete(None)
    if lineage is not None:  # the OpenLineage provider is optional
        assert [d.name for d in lineage.inputs] and lineage.inputs[0].name.endswith("c.mp4")
