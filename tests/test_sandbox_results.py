"""The sandbox's result lifetime and its folders, over real HTTP.

Results expire after ``result_seconds`` (HitPaw deletes its outputs after 8 days): ``res_url``
answers 404, a periodic sweep deletes the file, so disk use is bounded by lifetime x rate. A
sandbox that was killed leaves its folder behind; the next one to start removes it, never the
folder of a live sandbox.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hitpaw.contract.endpoints import (
    PHOTO_ENHANCER_PATH,
    TASK_STATUS_PATH,
    VIDEO_ENHANCER_PATH,
)
from airflow_provider_hitpaw.contract.pricing import estimate_coins, estimate_video_coins
from airflow_provider_hitpaw.sandbox import start_sandbox, start_sandbox_process
from airflow_provider_hitpaw.sandbox.config import SandboxConfig

KEY = "results-key"
TIMEOUT = 10
MODULE = "airflow_provider_hitpaw.sandbox"
#: A video job small enough to be nearly free of work: a 0.5 s clip of 32x24 at 10 fps made 64x64.
CLIP = "/samples/clip-32x24-10fps-500ms.mp4"
VIDEO_COINS = estimate_video_coins("general_restore_2x", 64, 64, 10, 0.5)


def video(base_url: str) -> dict:
    return {"video_url": base_url + CLIP, "model_name": "general_restore_2x", "resolution": [64, 64]}


def post(sb: Any, path: str, body: dict, session: Any = requests) -> dict:
    reply = session.post(sb.url(path), json=body, headers={"Apikey": KEY}, timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def wait_completed(sb: Any, job_id: str, deadline: float = 30) -> dict:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        data = post(sb, TASK_STATUS_PATH, {"job_id": job_id})
        if data["status"] == "COMPLETED":
            return data
        assert data["status"] != "ERROR", data
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} not COMPLETED after {deadline} s")


def wait_until(predicate: Any, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, f"not {what} after {deadline} s"
        time.sleep(0.05)


def folder_usage(results_dir: Path) -> tuple[int, int]:
    """(job folders, bytes of their files) under a sandbox's results folder."""
    folders = total = 0
    for entry in list(results_dir.iterdir()):
        folders += 1
        try:  # the sweep may delete it meanwhile
            total += sum(file.stat().st_size for file in entry.iterdir())
        except FileNotFoundError:
            pass
    return folders, total


def test_the_default_lifetime_is_hitpaws_eight_days() -> None:
    assert SandboxConfig().result_seconds == 8 * 86400
    for bad in (0, -1, float("nan"), float("inf"), True, "60", 367 * 86400):
        with pytest.raises(ValueError, match="result_seconds"):
            SandboxConfig(result_seconds=bad)  # type: ignore[arg-type]


def test_a_result_is_downloadable_then_404_and_its_file_deleted() -> None:
    with start_sandbox(api_keys={KEY: 1000}, job_seconds=0.1, result_seconds=1.5) as sb:
        results_dir = Path(sb.stats()["results_dir"])
        body = {"model_name": "general_4x", "img_url": sb.url("/samples/portrait.jpg"), "extension": ".png"}
        job_id = post(sb, PHOTO_ENHANCER_PATH, body)["job_id"]
        data = wait_completed(sb, job_id)
        result_file = results_dir / job_id / "result.png"
        assert result_file.is_file()
        reply = requests.get(data["res_url"], timeout=TIMEOUT)
        assert reply.status_code == 200 and reply.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(reply.content) == result_file.stat().st_size

        wait_until(lambda: requests.get(data["res_url"], timeout=TIMEOUT).status_code == 404, 10, "expired")
        wait_until(lambda: not (results_dir / job_id).exists(), 5, "deleted from disk")
        assert requests.get(data["res_url"], timeout=TIMEOUT).status_code == 404
        # The job is still known and COMPLETED, as HitPaw's would be; the ledger is complete.
        assert post(sb, TASK_STATUS_PATH, {"job_id": job_id})["status"] == "COMPLETED"
        stats = sb.stats()
        assert stats["results_kept"] == 0 and stats["results_deleted"] == 1
        assert [r["job_id"] for r in stats["submissions"]] == [job_id]
        assert sum(stats["coins_charged_by_key"].values()) == estimate_coins("general_4x", 512, 600)


def test_the_sweep_bounds_disk_use_across_many_jobs() -> None:
    lifetime, jobs, rate = 1.0, 200, 50.0
    with start_sandbox(api_keys={KEY: 1_000_000}, job_seconds=0, result_seconds=lifetime) as sb:
        results_dir = Path(sb.stats()["results_dir"])
        session = requests.Session()
        most_folders = most_bytes = 0
        job_ids = []
        start = time.monotonic()
        for n in range(jobs):
            job_ids.append(post(sb, VIDEO_ENHANCER_PATH, video(sb.base_url), session)["job_id"])
            folders, used = folder_usage(results_dir)
            most_folders, most_bytes = max(most_folders, folders), max(most_bytes, used)
            pause = start + (n + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.monotonic() - start
        # A video's result is written by the worker pool, after the reply: wait for the last one.
        one_result = len(requests.get(wait_completed(sb, job_ids[-1])["res_url"], timeout=TIMEOUT).content)

        # At most lifetime + a sweep interval (+ slack for a busy machine) worth of jobs at a time.
        bound = (jobs / elapsed) * (lifetime + 0.25 + 0.5)
        assert most_folders <= bound < jobs / 2, (most_folders, bound, elapsed)
        assert most_bytes <= bound * one_result
        wait_until(lambda: folder_usage(results_dir)[0] == 0, 5, "all swept")
        stats = sb.stats()
        assert stats["results_kept"] == 0 and stats["results_deleted"] == jobs
        # The ledger still has every submission and every coin.
        assert [r["job_id"] for r in stats["submissions"]] == job_ids
        assert sum(stats["coins_charged_by_key"].values()) == jobs * VIDEO_COINS
        assert stats["jobs_by_state"] == {"COMPLETED": jobs}


def test_a_shorter_lifetime_applies_to_results_already_there_and_spares_the_samples() -> None:
    with start_sandbox(api_keys={KEY: 1000}, job_seconds=0) as sb:
        video_job = post(sb, VIDEO_ENHANCER_PATH, video(sb.base_url))["job_id"]
        synthetic_job = sb.create_jobs(KEY, count=1)[0]
        urls = [wait_completed(sb, j)["res_url"] for j in (video_job, synthetic_job)]
        assert [requests.get(u, timeout=TIMEOUT).status_code for u in urls] == [200, 200]
        assert requests.post(sb.url("/admin/settings"), json={"result_seconds": 0}, timeout=TIMEOUT).status_code == 400
        reply = requests.post(sb.url("/admin/settings"), json={"result_seconds": 0.5}, timeout=TIMEOUT)
        assert reply.status_code == 200 and reply.json()["result_seconds"] == 0.5
        wait_until(lambda: sb.stats()["results_deleted"] == 1, 5, "swept")
        assert [requests.get(u, timeout=TIMEOUT).status_code for u in urls] == [404, 404]
        # The synthetic job's result is the shared sample: expired, but never deleted.
        assert requests.get(sb.url("/samples/portrait.jpg"), timeout=TIMEOUT).status_code == 200
        assert sb.configure(result_seconds=60)["result_seconds"] == 60
        sb.reset()
        assert sb.configure()["result_seconds"] == 8 * 86400


def test_a_killed_sandboxs_folder_is_removed_by_the_next_but_a_live_ones_is_kept(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "HITPAW_SANDBOX_API_KEYS": KEY}
    killed = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--port", "0", "--job-seconds", "0", "--ready-file", str(ready)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    live = None
    try:
        wait_until(ready.exists, 60, "ready")
        base_url = ready.read_text().strip()
        stats = requests.get(base_url + "/admin/stats", timeout=TIMEOUT).json()
        killed_dir = Path(stats["results_dir"]).parent
        reply = requests.post(
            base_url + VIDEO_ENHANCER_PATH, json=video(base_url), headers={"Apikey": KEY}, timeout=TIMEOUT
        )
        assert reply.status_code == 200
        wait_until(lambda: any(killed_dir.rglob("result.mp4")), 10, "the result written")

        live = start_sandbox_process(api_keys={KEY: 1000}, job_seconds=0, result_seconds=3600)
        live_dir = Path(live.stats()["results_dir"]).parent
        assert live.configure(result_seconds=7200)["result_seconds"] == 7200
        live_job = post(live, VIDEO_ENHANCER_PATH, video(live.base_url))["job_id"]
        live_url = wait_completed(live, live_job)["res_url"]

        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=15)
        assert killed_dir.is_dir()  # SIGKILL left it behind

        with start_sandbox(api_keys={KEY: 1}) as next_one:
            own_dir = Path(next_one.stats()["results_dir"]).parent
            assert not killed_dir.exists()
            assert live_dir.is_dir() and own_dir.is_dir()
            assert own_dir.parent == killed_dir.parent == live_dir.parent
            assert requests.get(live_url, timeout=TIMEOUT).status_code == 200
        assert not own_dir.exists()  # a sandbox that stops removes its own folder
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
        if live is not None:
            live.stop()
    assert not live_dir.exists()


def test_only_folders_of_dead_owners_are_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_hitpaw.sandbox import workdirs

    monkeypatch.setattr(workdirs, "parent_dir", lambda: tmp_path / "parent")
    mine = workdirs.make_owned_dir()
    assert workdirs.owner_pid(mine) == os.getpid() and mine.parent == tmp_path / "parent"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    start = workdirs.process_start_ticks(os.getpid())
    names = {
        "dead": f"{dead.pid}-0-abc",
        "reused_pid": f"{os.getpid()}-{start + 1}-abc" if start else None,
        "foreign": "not-a-sandbox",
        "pid_1": "1-0-abc",  # alive (init), whatever its owner
    }
    for name in filter(None, names.values()):
        (tmp_path / "parent" / name).mkdir()
    removed = {p.name for p in workdirs.remove_stale_dirs()}
    assert removed == {n for k, n in names.items() if k in ("dead", "reused_pid") and n}
    assert mine.is_dir()
    assert (tmp_path / "parent" / "not-a-sandbox").is_dir() and (tmp_path / "parent" / "1-0-abc").is_dir()
