"""The sandbox as a process: the command line, start_sandbox_process, and a cheap import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH

MODULE = "airflow_provider_hitpaw.sandbox"


def wait_for(path: Path, proc: subprocess.Popen, deadline: float = 60) -> str:
    end = time.monotonic() + deadline
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "sandbox not ready in time"
        time.sleep(0.05)
    return path.read_text().strip()


def test_cli_prints_the_line_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "HITPAW_SANDBOX_API_KEYS": "env-key-1, env-key-2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--port", "0", "--api-key", "cli-key", "--coins", "20",
         "--job-seconds", "0.1", "--seed", "1", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        base_url = wait_for(ready, proc)
        line = proc.stdout.readline().strip()
        assert line == f"HitPaw sandbox listening on {base_url}"
        assert base_url.startswith("http://127.0.0.1:")
        assert requests.get(base_url + "/healthz", timeout=5).text == "ok"
        body = {"model_name": "face_2x", "img_url": base_url + "/samples/portrait.jpg", "extension": ".png"}
        for key in ("cli-key", "env-key-2"):
            reply = requests.post(base_url + PHOTO_ENHANCER_PATH, json=body, headers={"Apikey": key}, timeout=10)
            assert reply.status_code == 200, reply.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        _, stderr = proc.communicate()
        for key in ("cli-key", "env-key-1", "env-key-2"):
            assert key not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_remote_host_without_allow_remote() -> None:
    result = subprocess.run(
        [sys.executable, "-m", MODULE, "--host", "0.0.0.0", "--port", "0", "--api-key", "k"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "allow_remote" in result.stderr


def test_start_sandbox_process_round_trip() -> None:
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    with start_sandbox_process(api_keys={"proc-key-aaaa": 50, "proc-key-bbbb": 5}, job_seconds=0.1,
                               faults={"seed": 3}) as sb:
        process = sb.process
        body = {"model_name": "face_2x", "img_url": sb.url("/samples/portrait.jpg"), "extension": ".jpg"}
        reply = requests.post(sb.url(PHOTO_ENHANCER_PATH), json=body, headers={"Apikey": "proc-key-bbbb"}, timeout=10)
        assert reply.status_code == 402  # per-key balances reach the process
        stats = sb.stats()
        assert sorted(stats["balances"].values()) == [5, 50]
        assert sb.set_faults(drop=1.0, fault_endpoints={"status"})["fault_endpoints"] == ["status"]
        assert sb.add_key("proc-key-cccc", 7)["balance"] == 7
        assert len(sb.create_jobs("proc-key-cccc", count=3)) == 3
        sb.forget_jobs()
        sb.reset()
        assert sb.faults()["drop"] == 0.0
    assert process.returncode == 0
    sb.stop()  # idempotent


def test_importing_the_sandbox_does_not_import_airflow() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_hitpaw.sandbox as s\n"
        "import airflow_provider_hitpaw.sandbox.config, airflow_provider_hitpaw.sandbox.runner\n"
        "s.SandboxConfig(api_keys=['k']); s.start_sandbox; s.start_sandbox_process\n"
        "assert 'airflow' not in sys.modules and 'PIL' not in sys.modules and 'aiohttp' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_pillow_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_hitpaw.sandbox import imaging, start_sandbox

    monkeypatch.setitem(sys.modules, "PIL", None)
    message = "The HitPaw sandbox needs Pillow: pip install 'airflow-provider-hitpaw[sandbox]'"
    with pytest.raises(imaging.PillowMissingError) as caught:
        imaging.require_pillow()
    assert str(caught.value) == message
    with pytest.raises(imaging.PillowMissingError, match="needs Pillow"):
        start_sandbox(api_keys=["k"])
