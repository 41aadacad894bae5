"""The checks before paying (preflight.py): a photo's size read from its first bytes (ranged, capped,
within the connection's timeouts, never with the API key), the model's limits, and max_coins."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from airflow_provider_hitpaw.contract.catalog import get_model
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks import sync_transport
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.preflight import (
    FIRST_READ_BYTES,
    MAX_READ_BYTES,
    PreflightSkipped,
    check_photo_size,
    read_photo_dimensions,
)
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection
from tests.support.operator_support import make_context as _make_context
from tests.support.photo_host import PhotoHost, jpeg_with_late_header, png_header
from tests.support.raw_server import Behaviour, RawServer, http_reply

CANARY_KEY = "canary-KEY-preflight-3b9d-never-send-me"


def read(url: str, timeout: float = 5.0) -> tuple[int, int]:
    session = sync_transport.new_session()
    try:
        return read_photo_dimensions(session, url, connect_timeout=timeout, read_timeout=timeout)
    finally:
        session.close()


def make_context() -> Any:
    return _make_context()


def operator(**kwargs: Any) -> EnhancePhotoOperator:
    kwargs.setdefault("task_id", "enhance")
    kwargs.setdefault("model_name", "face_2x")
    kwargs.setdefault("wait_for_completion", False)
    return EnhancePhotoOperator(**kwargs)


@pytest.fixture
def sandbox_conn(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> str:
    set_hitpaw_connection(monkeypatch, "hitpaw_sandbox", sandbox.base_url, SANDBOX_API_KEY,
                          connect_timeout=2, read_timeout=2)
    return "hitpaw_sandbox"


@pytest.fixture
def canary_conn(monkeypatch: pytest.MonkeyPatch, scripted: Any) -> str:
    set_hitpaw_connection(monkeypatch, "hitpaw_canary", scripted.base_url, CANARY_KEY,
                          connect_timeout=1, read_timeout=1)
    return "hitpaw_canary"


# -- reading the size ----------------------------------------------------------------------------------


def test_the_size_comes_from_one_ranged_get_of_the_first_bytes() -> None:
    with PhotoHost(files={"/p.png": png_header(4000, 3000) + b"\0" * 500_000}) as host:
        assert read(host.url("/p.png")) == (4000, 3000)
    assert [s.headers.get("Range") for s in host.seen] == [f"bytes=0-{FIRST_READ_BYTES - 1}"]


def test_a_header_past_the_first_range_is_read_with_more_ranges() -> None:
    photo = jpeg_with_late_header(321, 123, padding=150_000)
    with PhotoHost(files={"/late.jpg": photo}) as host:
        assert read(host.url("/late.jpg")) == (321, 123)
    ranges = [s.headers.get("Range") for s in host.seen]
    assert len(ranges) >= 2 and ranges[0] == f"bytes=0-{FIRST_READ_BYTES - 1}", ranges
    assert ranges[1].startswith(f"bytes={FIRST_READ_BYTES}-"), ranges


def test_a_header_split_across_short_ranges() -> None:
    with PhotoHost(files={"/p.png": png_header(640, 480)}, max_range_bytes=7) as host:
        assert read(host.url("/p.png")) == (640, 480)
    assert len(host.seen) >= 3  # 7 bytes at a time: the header took several answers


def test_a_header_split_across_socket_reads() -> None:
    photo = png_header(1234, 567)
    reply = http_reply(206, photo, {"Content-Type": "image/png",
                                    "Content-Range": f"bytes 0-{len(photo) - 1}/{len(photo)}"})
    with RawServer() as server:
        # One byte every 5 ms: the header arrives over dozens of reads.
        server.play(Behaviour(reply=reply, trickle=0.005))
        assert read(server.base_url + "/p.png") == (1234, 567)


def test_a_host_without_range_support_is_read_only_to_the_header() -> None:
    photo = png_header(800, 600) + b"\0" * (8 * MAX_READ_BYTES)
    with PhotoHost(files={"/p.png": photo}, ranges=False) as host:
        assert read(host.url("/p.png")) == (800, 600)
    assert len(host.seen) == 1


def test_a_host_without_range_support_is_read_only_to_the_cap() -> None:
    with PhotoHost(files={"/junk.png": b"\0" * (8 * MAX_READ_BYTES)}, ranges=False) as host:
        with pytest.raises(PreflightSkipped, match=f"first {MAX_READ_BYTES} bytes"):
            read(host.url("/junk.png"))


def test_a_ranged_file_with_no_header_is_read_only_to_the_cap() -> None:
    with PhotoHost(files={"/junk.png": b"\0" * (8 * MAX_READ_BYTES)}) as host:
        with pytest.raises(PreflightSkipped, match=f"first {MAX_READ_BYTES} bytes"):
            read(host.url("/junk.png"))
    assert host.sent_bytes == MAX_READ_BYTES


def test_a_host_that_does_not_answer_is_skipped_within_the_timeouts() -> None:
    with RawServer() as server:
        server.play(Behaviour(reply=None, then="stall"))
        start = time.monotonic()
        with pytest.raises(PreflightSkipped, match=r"time limit|timed out|Timeout"):
            read(server.base_url + "/p.png", timeout=0.5)
        assert time.monotonic() - start < 3


def test_an_error_answer_is_skipped() -> None:
    with PhotoHost() as host:
        with pytest.raises(PreflightSkipped, match="HTTP 404"):
            read(host.url("/missing.png"))


# -- limits --------------------------------------------------------------------------------------------


def test_limits() -> None:
    face_2x, generative = get_model("face_2x"), get_model("generative_2x")
    assert face_2x is not None and generative is not None
    check_photo_size(face_2x, 10_000, 7_000)  # exactly 70 MP in, 280 MP out
    with pytest.raises(HitPawValidationError, match="70 MP input limit"):
        check_photo_size(face_2x, 10_000, 7_001)
    check_photo_size(generative, 3400, 2500)  # 6800 x 5000 = exactly 34 MP
    with pytest.raises(HitPawValidationError, match="34 MP output limit"):
        check_photo_size(generative, 3400, 2501)


# -- the operator ----------------------------------------------------------------------------------------


def test_an_over_limit_photo_is_refused_before_paying(sandbox: Any, sandbox_conn: str) -> None:
    op = operator(img_url=sandbox.url("/samples/huge.png"), hitpaw_conn_id=sandbox_conn)
    with pytest.raises(HitPawValidationError, match=r"9000 x 8000 \(72.0 MP\), over the 70 MP input limit"):
        op.execute(make_context())
    stats = sandbox.stats()
    assert stats["submissions"] == [] and stats["coins_charged_by_key"] == {}


def test_a_result_over_the_output_limit_is_refused_before_paying(sandbox: Any, sandbox_conn: str) -> None:
    with PhotoHost(files={"/p.png": png_header(3000, 3000)}) as host:
        op = operator(img_url=host.url("/p.png"), model_name="generative_2x", hitpaw_conn_id=sandbox_conn)
        with pytest.raises(HitPawValidationError, match="34 MP output limit"):
            op.execute(make_context())
    assert sandbox.stats()["submissions"] == []


def test_preflight_off_sends_it_and_hitpaw_refuses_it_free(sandbox: Any, sandbox_conn: str) -> None:
    op = operator(img_url=sandbox.url("/samples/huge.png"), hitpaw_conn_id=sandbox_conn, preflight=False)
    with pytest.raises(Exception, match="input resolution is over limit"):
        op.execute(make_context())
    assert sandbox.stats()["coins_charged_by_key"] == {}


def test_the_estimate_is_logged_and_matches_the_charge(sandbox: Any, sandbox_conn: str,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    op = operator(img_url=sandbox.url("/samples/portrait.jpg"), hitpaw_conn_id=sandbox_conn, max_coins=10)
    with caplog.at_level(logging.INFO):
        op.execute(make_context())
    logged = caplog.text + capsys.readouterr().out  # Airflow's task logger may write to stdout
    assert "the photo is 512 x 600; face_2x makes it 1024 x 1200 (1.2 MP): HitPaw's price is 10 coins" in logged
    assert [r["coins"] for r in sandbox.stats()["submissions"]] == [10]


def test_max_coins_refuses_with_no_request(scripted: Any, canary_conn: str) -> None:
    with PhotoHost(files={"/p.png": png_header(2000, 1000)}) as host:  # face_2x: 8 MP out, 20 coins
        op = operator(img_url=host.url("/p.png"), hitpaw_conn_id=canary_conn, max_coins=19)
        with pytest.raises(HitPawValidationError, match="would cost 20 coins, over max_coins=19"):
            op.execute(make_context())
    assert scripted.requests == []


def test_max_coins_with_an_unknown_size_takes_the_highest_price(scripted: Any, canary_conn: str) -> None:
    op = operator(img_url="https://photos.example/p.png", hitpaw_conn_id=canary_conn, max_coins=100,
                  preflight=False)
    with pytest.raises(HitPawValidationError, match="can cost up to 480 coins"):
        op.execute(make_context())
    op = operator(img_url="https://photos.example/p.png", model_name="enhanced_v1", allow_unknown_model=True,
                  hitpaw_conn_id=canary_conn, max_coins=1000, preflight=False)
    with pytest.raises(HitPawValidationError, match="No price is known"):
        op.execute(make_context())
    assert scripted.requests == []


def test_the_key_never_reaches_the_photo_host(sandbox: Any, sandbox_conn: str) -> None:
    with PhotoHost(files={"/p.png": png_header(640, 480)}) as host:
        op = operator(img_url=host.url("/p.png"), hitpaw_conn_id=sandbox_conn)
        op.execute(make_context())
    assert len(sandbox.stats()["submissions"]) == 1
    assert host.seen, "neither the preflight nor the sandbox fetched the photo"
    assert host.seen[0].headers.get("Range") == f"bytes=0-{FIRST_READ_BYTES - 1}"  # the preflight's
    for seen in host.seen:
        assert "apikey" not in {k.lower() for k in seen.headers}
        assert not any(SANDBOX_API_KEY in value for value in seen.headers.values())


@pytest.mark.parametrize(("kwargs", "fragment"), [({"max_coins": -1}, "max_coins"), ({"max_coins": True}, "max_coins"),
                                                  ({"max_coins": 2.5}, "max_coins"), ({"preflight": "yes"}, "preflight")])
def test_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HitPawValidationError, match=fragment):
        operator(img_url="https://photos.example/p.png", **kwargs)


def test_a_photo_host_too_slow_for_the_preflight_is_submitted_anyway(
    monkeypatch: pytest.MonkeyPatch, sandbox: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    set_hitpaw_connection(monkeypatch, "hitpaw_fast", sandbox.base_url, SANDBOX_API_KEY,
                          connect_timeout=0.5, read_timeout=0.5)
    photo = png_header(640, 480)
    with RawServer() as server:
        # The preflight's request gets no answer; the sandbox's fetch, the next one, gets the photo.
        server.play(Behaviour(reply=None, then="stall"),
                    Behaviour(reply=http_reply(200, photo, {"Content-Type": "image/png"})))
        op = operator(img_url=server.base_url + "/p.png", hitpaw_conn_id="hitpaw_fast")
        with caplog.at_level(logging.INFO):
            op.execute(make_context())
    assert len(sandbox.stats()["submissions"]) == 1
    assert "Preflight skipped, the photo is submitted unchecked" in caplog.text + capsys.readouterr().out


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store is Airflow 3.3+")
def test_a_retry_reconnects_to_the_paid_job_whatever_max_coins_says(scripted: Any, canary_conn: str) -> None:
    from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
    from airflow_provider_hitpaw.resume import STATE_KEY, submission_fingerprint
    from tests.support.operator_support import FakeTaskStateStore
    from tests.support.scripted_server import status_step

    scripted.script(TASK_STATUS_PATH, status_step("COMPLETED", job_id="job-1", res_url="https://r.example/o.jpg"))
    # The photo's URL no longer answers (a signed URL that expired): its size, so its price, is unknown.
    op = operator(img_url="https://photos.example/p.png", hitpaw_conn_id=canary_conn, max_coins=10,
                  wait_for_completion=True)
    store = FakeTaskStateStore()
    store.set(STATE_KEY, {"job_id": "job-1", "consume_coins": 10,
                          "fingerprint": submission_fingerprint(op._submission_payload())})
    context: Any = _make_context(store=store)
    result = op.execute(context)
    assert result["job_id"] == "job-1" and scripted.count(PHOTO_ENHANCER_PATH) == 0


def test_a_local_photo_is_measured_from_its_own_first_bytes(sandbox: Any, sandbox_conn: str, tmp_path: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``img_path``: the size comes from the file, not from a GET of the upload; over the limit, nothing
    is submitted."""
    import airflow_provider_hitpaw.preflight as preflight

    photo = tmp_path / "big.png"
    photo.write_bytes(png_header(9000, 8000))
    remote_reads: list[str] = []
    monkeypatch.setattr(preflight, "photo_dimensions", lambda hook, url: remote_reads.append(url))
    op = operator(img_path=str(photo), hitpaw_conn_id=sandbox_conn)
    with pytest.raises(HitPawValidationError, match=r"9000 x 8000 \(72.0 MP\), over the 70 MP input limit"):
        op.execute(make_context())
    assert remote_reads == []
    assert sandbox.stats()["submissions"] == []
    assert preflight.file_photo_dimensions(photo) == (9000, 8000)
    assert preflight.file_photo_dimensions(f"file://{photo}") == (9000, 8000)
