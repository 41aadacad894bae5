"""EnhancePhotoBatchOperator against the sandbox over real HTTP: ledger, budget, reruns, manifest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_hitpaw.errors import HitPawBatchError, HitPawValidationError
from airflow_provider_hitpaw.operators.batch import EnhancePhotoBatchOperator
from airflow_provider_hitpaw.version_compat import TaskDeferred


def batch(conn: str, output: Path, **kwargs: Any) -> EnhancePhotoBatchOperator:
    kwargs.setdefault("task_id", "enhance_batch")
    kwargs.setdefault("model_name", "face_2x")
    kwargs.setdefault("poll_interval", 1)
    kwargs.setdefault("submits_per_second", 50)
    kwargs.setdefault("deferrable", False)
    return EnhancePhotoBatchOperator(output_path=str(output), hitpaw_conn_id=conn, **kwargs)


def context(run_id: str = "run1", try_number: int = 1) -> Any:
    ti = SimpleNamespace(dag_id="dag", run_id=run_id, task_id="enhance_batch", map_index=-1,
                         try_number=try_number, xcom_push=lambda **kw: None)
    return {"ti": ti}


def run_to_end(op: EnhancePhotoBatchOperator, ctx: Any) -> tuple[dict[str, Any], int]:
    """Execute, and while it defers run its trigger and resume: (result, deferrals)."""
    deferrals = 0
    try:
        return op.execute(ctx), deferrals
    except TaskDeferred as deferred:
        pending = deferred
    while True:
        deferrals += 1
        event = asyncio.run(pending.trigger.wait())
        assert json.loads(json.dumps(pending.trigger.serialize()[1]))  # kwargs survive serialization
        try:
            return op.execute_complete(ctx, event), deferrals
        except TaskDeferred as deferred:
            pending = deferred


def photo_urls(sandbox: Any, count: int) -> list[str]:
    return [sandbox.url(f"/samples/portrait.jpg?copy={n}") for n in range(count)]


def manifest_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(result["manifest"]).read_text().splitlines()]


def charged(sandbox: Any) -> int:
    return sum(sandbox.stats()["coins_charged_by_key"].values())


def submissions(sandbox: Any) -> int:
    return len(sandbox.stats()["submissions"])


def test_a_batch_in_the_worker_saves_every_result_and_reports_the_coins(sandbox, sandbox_conn, tmp_path) -> None:
    urls = photo_urls(sandbox, 6)
    result = batch(sandbox_conn, tmp_path, img_urls=urls, max_in_flight=4).execute(context())

    assert result["counts"] == {"enhanced": 6}
    assert result["coins"] == charged(sandbox) > 0
    assert submissions(sandbox) == 6
    rows = manifest_rows(result)
    assert [row["source"] for row in rows] == urls
    for row in rows:
        assert (tmp_path / row["output"]).stat().st_size > 0
        assert row["output"] == f"portrait-{row['job_id']}.jpg"
    assert sandbox.stats()["peak_in_flight_by_key"] and max(sandbox.stats()["peak_in_flight_by_key"].values()) <= 4


def test_a_deferred_batch_keeps_max_in_flight_and_rerunning_it_pays_nothing(sandbox, sandbox_conn, tmp_path) -> None:
    sandbox.configure(job_seconds=1.0)
    urls = photo_urls(sandbox, 12)
    result, deferrals = run_to_end(batch(sandbox_conn, tmp_path, img_urls=urls, max_in_flight=5, deferrable=True),
                                   context())
    assert result["counts"] == {"enhanced": 12}
    assert deferrals >= 3
    assert max(sandbox.stats()["peak_in_flight_by_key"].values()) <= 5
    coins = charged(sandbox)
    assert result["coins"] == coins

    again, _ = run_to_end(batch(sandbox_conn, tmp_path, img_urls=urls, deferrable=True), context("run2"))
    assert again["counts"] == {"existing": 12}
    assert again["coins"] == 0 and charged(sandbox) == coins

    # Another model is another enhancement; a new URL is a new photo.
    other = batch(sandbox_conn, tmp_path, img_urls=urls[:2] + photo_urls(sandbox, 13)[12:], model_name="general_2x")
    assert other.execute(context("run3"))["counts"] == {"enhanced": 3}
    assert submissions(sandbox) == 15


def test_a_changed_file_is_enhanced_again_and_an_unchanged_one_is_not(sandbox, sandbox_conn, tmp_path) -> None:
    import os
    import shutil

    from airflow_provider_hitpaw.sandbox.server import SAMPLES_DIR

    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(SAMPLES_DIR / "portrait.jpg", inbox / name)
    (inbox / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    first = batch(sandbox_conn, out, input_path=str(inbox)).execute(context())
    assert first["counts"] == {"enhanced": 3}
    assert sorted(p.name.split("-")[0] for p in out.glob("*.jpg")) == ["a", "b", "c"]

    stat = (inbox / "b.jpg").stat()
    os.utime(inbox / "b.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = batch(sandbox_conn, out, input_path=str(inbox / "*.jpg")).execute(context("run2"))
    assert second["counts"] == {"enhanced": 1, "existing": 2}
    assert submissions(sandbox) == 4


def test_the_budget_stops_exactly_where_the_next_photo_could_pass_it(sandbox, sandbox_conn, tmp_path) -> None:
    urls = photo_urls(sandbox, 5)
    one = batch(sandbox_conn, tmp_path / "probe", img_urls=urls[:1]).execute(context("probe"))["coins"]
    result = batch(sandbox_conn, tmp_path / "out", img_urls=urls, max_coins=3 * one + one - 1).execute(context())
    assert result["counts"] == {"enhanced": 3, "skipped_budget": 2}
    assert result["coins"] == 3 * one
    assert submissions(sandbox) == 1 + 3


def test_not_enough_coins_stops_every_further_submission(sandbox, sandbox_conn, tmp_path) -> None:
    urls = photo_urls(sandbox, 6)
    one = batch(sandbox_conn, tmp_path / "probe", img_urls=urls[:1]).execute(context("probe"))["coins"]
    balance = next(iter(sandbox.stats()["balances"].values()))
    sandbox.add_key("poor-key", 2 * one)  # two photos' worth
    from tests.support.connections import set_hitpaw_connection

    mp = pytest.MonkeyPatch()
    try:
        set_hitpaw_connection(mp, "hitpaw_poor", sandbox.base_url, "poor-key")
        with pytest.raises(HitPawBatchError) as failure:
            batch("hitpaw_poor", tmp_path / "out", img_urls=urls, max_failed_items=0).execute(context())
    finally:
        mp.undo()
    assert failure.value.counts == {"enhanced": 2, "refused": 1, "skipped_budget": 3}
    assert balance > 0
    rows = [json.loads(line) for line in next((tmp_path / "out" / "manifests").iterdir()).read_text().splitlines()]
    assert [row["outcome"] for row in rows] == ["enhanced"] * 2 + ["refused"] + ["skipped_budget"] * 3


def test_a_lost_reply_is_never_resubmitted_by_default(sandbox, sandbox_conn, tmp_path) -> None:
    urls = photo_urls(sandbox, 3)
    sandbox.set_faults(drop_after=1.0)
    with pytest.raises(HitPawBatchError, match="unknown_outcome") as failure:
        batch(sandbox_conn, tmp_path, img_urls=urls[:1]).execute(context())
    assert failure.value.counts == {"unknown_outcome": 1}
    sandbox.set_faults(drop_after=0.0)
    # The retry, and a later run, leave it alone: it may have been charged already.
    with pytest.raises(HitPawBatchError):
        batch(sandbox_conn, tmp_path, img_urls=urls[:1]).execute(context(try_number=2))
    assert submissions(sandbox) == 1
    # Resubmitting within a budget of unknown outcomes is a choice.
    result = batch(sandbox_conn, tmp_path, img_urls=urls[:1], on_unknown_outcome="resubmit",
                   max_unknown_outcome_coins=1000).execute(context(try_number=3))
    assert result["counts"] == {"enhanced": 1}
    assert submissions(sandbox) == 2


def test_an_unwritable_output_folder_is_refused_before_paying(sandbox, sandbox_conn, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HitPawValidationError, match=r"cannot be written|not a folder|is a file"):
        batch(sandbox_conn, blocker / "out", img_urls=photo_urls(sandbox, 2)).execute(context())
    assert submissions(sandbox) == 0


def test_failed_jobs_fail_the_task_after_saving_the_rest_and_a_retry_resubmits_only_them(
    sandbox, sandbox_conn, tmp_path
) -> None:
    urls = photo_urls(sandbox, 8)
    sandbox.set_faults(fail_job=0.5, seed=3)
    with pytest.raises(HitPawBatchError) as failure:
        batch(sandbox_conn, tmp_path, img_urls=urls).execute(context())
    failed = failure.value.counts.get("failed", 0)
    assert failed >= 1 and failure.value.counts["enhanced"] == 8 - failed
    assert len(list(tmp_path.glob("*.jpg"))) == 8 - failed
    sandbox.set_faults(fail_job=0.0)
    result = batch(sandbox_conn, tmp_path, img_urls=urls).execute(context(try_number=2))
    assert result["counts"] == {"enhanced": 8}
    assert submissions(sandbox) == 8 + failed


def test_500_photos_through_every_fault_charge_each_at_most_once_and_end_in_the_manifest(
    sandbox, monkeypatch, tmp_path, request
) -> None:
    """5xx, 429, dropped connections before and after processing, failed jobs: then a retry."""
    import io
    from collections import Counter

    from PIL import Image

    from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection
    from tests.support.photo_host import PhotoHost

    set_hitpaw_connection(monkeypatch, "hitpaw_faulty", sandbox.base_url, SANDBOX_API_KEY,
                          read_timeout=3, connect_timeout=2, max_attempts=4, max_retry_seconds=2)
    sandbox.add_key(SANDBOX_API_KEY, 100_000)
    sandbox.configure(job_seconds=0.2)
    # Faults on submissions and status requests (downloads have their own tests: each faulty one
    # costs a retry's pause here, and the point is the charges).
    sandbox.set_faults(error_5xx=0.01, rate_429=0.01, drop=0.01, drop_after=0.01, fail_job=0.03, seed=12,
                       fault_endpoints=["submit", "status"])
    tiny = io.BytesIO()  # small photos: the sandbox really enhances each one
    Image.new("RGB", (64, 64), "teal").save(tiny, "JPEG")
    host = PhotoHost(files={f"/p/{n}.jpg": tiny.getvalue() for n in range(500)}).__enter__()
    request.addfinalizer(lambda: host.__exit__(None, None, None))
    urls = [host.url(f"/p/{n}.jpg") for n in range(500)]
    op = batch("hitpaw_faulty", tmp_path, img_urls=urls, max_in_flight=50, submits_per_second=100,
               preflight=False, max_failed_items=500)
    with pytest.raises(HitPawBatchError) as failure:  # the unknown outcomes fail it
        op.execute(context())
    first = {row["source"]: row for row in manifest_rows({"manifest": next((tmp_path / "manifests").iterdir())})}
    assert len(first) == 500
    counts = failure.value.counts
    assert counts.get("unknown_outcome", 0) >= 1 and counts.get("failed", 0) >= 1 and counts["enhanced"] >= 400
    assert set(counts) <= {"enhanced", "failed", "unknown_outcome", "save_failed", "status_failed"}
    charges = Counter(record["img_url"] for record in sandbox.stats()["submissions"])
    assert max(charges.values()) == 1
    for url, row in first.items():
        if row["outcome"] in ("enhanced", "failed", "save_failed", "status_failed"):
            assert charges[url] == 1 and row["job_id"], row
        elif row["outcome"] == "unknown_outcome":
            assert charges[url] <= 1 and row["job_id"] is None
        if row["outcome"] == "enhanced":
            assert (tmp_path / row["output"]).exists()

    # The retry, without faults: failed jobs are submitted again, results not saved are saved,
    # unknown outcomes are left alone (they may be charged already).
    sandbox.set_faults(error_5xx=0.0, rate_429=0.0, drop=0.0, drop_after=0.0, fail_job=0.0)
    with pytest.raises(HitPawBatchError) as retry_failure:
        batch("hitpaw_faulty", tmp_path, img_urls=urls, max_in_flight=50, submits_per_second=100,
              preflight=False, max_failed_items=500).execute(context(try_number=2))
    assert retry_failure.value.counts == {"enhanced": 500 - counts["unknown_outcome"],
                                          "unknown_outcome": counts["unknown_outcome"]}
    charges = Counter(record["img_url"] for record in sandbox.stats()["submissions"])
    for url, row in first.items():
        expected = {"failed": 2, "unknown_outcome": charges[url]}.get(row["outcome"], 1)
        assert charges[url] == expected, (row, charges[url])
    second = manifest_rows({"manifest": next((tmp_path / "manifests").iterdir())})
    ledger_coins = sum(row["coins"] for row in second)
    charged_unknown = sum(
        record["coins"] for record in sandbox.stats()["submissions"]
        if first[record["img_url"]]["outcome"] == "unknown_outcome"
    )
    assert ledger_coins + charged_unknown == charged(sandbox)


def test_object_storage_input_and_output_keep_the_ledger_in_segments(sandbox, sandbox_conn) -> None:
    """``memory://`` stands for any fsspec object store: no append, one object per ledger write."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    from airflow_provider_hitpaw.batch import ledger as ledger_module
    from airflow_provider_hitpaw.sandbox.server import SAMPLES_DIR

    attach("memory", fs=MemoryFileSystem())

    inbox = ObjectStoragePath("memory://photos/incoming/")
    for name in ("a.jpg", "b.jpg", "c.png.txt"):
        (inbox / name).write_bytes((SAMPLES_DIR / "portrait.jpg").read_bytes())
    op = EnhancePhotoBatchOperator(task_id="enhance_batch", model_name="face_2x", hitpaw_conn_id=sandbox_conn,
                                   input_path="memory://photos/incoming/*.jpg", output_path="memory://photos/out/",
                                   poll_interval=1, submits_per_second=50, deferrable=False)
    result = op.execute(context())
    assert result["counts"] == {"enhanced": 2}
    out = ObjectStoragePath("memory://photos/out/")
    assert sorted(p.name.split("-")[0] for p in out.iterdir() if p.name.endswith(".jpg")) == ["a", "b"]
    segments = list((out / ".hitpaw" / "ledger").iterdir())
    assert len(segments) >= 6  # intent, job and result of each photo: each its own object
    assert ObjectStoragePath(result["manifest"]).read_text().count("\n") == 2

    # Past MAX_SEGMENTS, a load folds the segments into one snapshot that means the same.
    state_before = ledger_module.Ledger("memory://photos/out/").load()
    for _ in range(ledger_module.MAX_SEGMENTS):
        ledger_module.Ledger("memory://photos/out/").append([{"event": "stop", "run": "x", "try": 1, "reason": "r"}])
    folded = ledger_module.Ledger("memory://photos/out/").load()
    assert len(list((out / ".hitpaw" / "ledger").iterdir())) == 1
    assert folded.items == state_before.items
    again = op.execute(context("run2"))
    assert again["counts"] == {"existing": 2} and submissions(sandbox) == 2


def test_a_rate_limit_slows_the_batch_down_and_fails_no_photo(sandbox, monkeypatch, tmp_path) -> None:
    from tests.support.connections import SANDBOX_API_KEY, set_hitpaw_connection

    set_hitpaw_connection(monkeypatch, "hitpaw_limited", sandbox.base_url, SANDBOX_API_KEY, max_attempts=2,
                          max_retry_seconds=1)
    sandbox.set_faults(rate_limit_rps=5)
    result = batch("hitpaw_limited", tmp_path, img_urls=photo_urls(sandbox, 8), submits_per_second=50,
                   preflight=False).execute(context())
    assert result["counts"] == {"enhanced": 8}
    assert sandbox.stats()["requests_by_status"].get("429", 0) >= 1
    assert submissions(sandbox) == 8


def test_a_job_past_its_timeout_fails_the_task_and_the_retry_waits_for_it_without_paying(
    sandbox, sandbox_conn, tmp_path
) -> None:
    sandbox.configure(job_seconds=4)
    urls = photo_urls(sandbox, 2)
    with pytest.raises(HitPawBatchError, match="timed_out") as failure:
        batch(sandbox_conn, tmp_path, img_urls=urls, timeout=1).execute(context())
    assert failure.value.counts == {"timed_out": 2}
    result = batch(sandbox_conn, tmp_path, img_urls=urls, timeout=30).execute(context(try_number=2))
    assert result["counts"] == {"enhanced": 2}
    assert submissions(sandbox) == 2


def test_failures_within_max_failed_fraction_let_the_task_succeed(sandbox, sandbox_conn, tmp_path) -> None:
    urls = [*photo_urls(sandbox, 4), "https://photos.example/a-document.pdf"]  # refused before paying
    with pytest.raises(HitPawBatchError, match="max_failed_fraction"):
        batch(sandbox_conn, tmp_path / "strict", img_urls=urls, max_failed_items=5,
              max_failed_fraction=0.1).execute(context())
    result = batch(sandbox_conn, tmp_path / "lenient", img_urls=urls, max_failed_items=1,
                   max_failed_fraction=0.2).execute(context())
    assert result["counts"] == {"enhanced": 4, "refused": 1}
    assert submissions(sandbox) == 8


def test_arguments_are_checked_when_the_dag_is_parsed(tmp_path) -> None:
    for bad in ({"max_in_flight": 0}, {"submits_per_second": 0}, {"on_unknown_outcome": "resubmit"},
                {"on_unknown_outcome": "maybe"}, {"max_failed_fraction": 2}, {"model_name": "face_2y"},
                {"poll_interval": 0.1}):
        with pytest.raises(HitPawValidationError):
            batch("hitpaw_default", tmp_path, img_urls=[], **bad)
