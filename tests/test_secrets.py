"""Secrets and transport: the API key never leaks, TLS stays verified, plain http only on loopback.

A canary API key runs through every example DAG, in the worker and deferred, with transient faults and
retries, a failed job, and a submission whose reply is lost. Afterwards the key must appear nowhere: the
captured task and trigger logs (``dag.test()`` runs the trigger inline, so its logs are there too), the
log files under ``AIRFLOW_HOME``, and the raw bytes of the metadata database (XComs, rendered template
fields, trigger kwargs, task instance notes... every table). Exception texts are checked directly.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import pickle
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hitpaw.connection import HitPawSettings, normalize_base_url
from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH, TASK_STATUS_PATH
from airflow_provider_hitpaw.errors import (
    HitPawConnectionError,
    HitPawError,
    HitPawSubmitOutcomeUnknownError,
    HitPawValidationError,
)
from airflow_provider_hitpaw.hooks.hitpaw import HitPawAsyncHook, HitPawHook
from airflow_provider_hitpaw.hooks.session import close_shared_session
from airflow_provider_hitpaw.retries import RetryPolicy
from airflow_provider_hitpaw.triggers.hitpaw import HitPawTaskStatusTrigger
from tests.support.connections import set_hitpaw_connection
from tests.support.dag_files import load_dag
from tests.support.scripted_server import Step, ok, status_step

CANARY = "canary-9f2e71c4-b0d3-4d2a-SECRET"
EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
ONE_TRY = RetryPolicy(max_attempts=1)


# --- the canary through every example DAG --------------------------------------------------------


def _prepare(dag: Any, deferrable: bool) -> None:
    """Fast polls, the chosen waiting mode, and one retry for every task."""
    from datetime import timedelta

    for task in dag.tasks:
        partial = getattr(task, "partial_kwargs", None)
        if partial is not None:
            partial.update(poll_interval=1, deferrable=deferrable, retries=1, retry_delay=timedelta(0))
            continue
        task.retries, task.retry_delay = 1, timedelta(0)
        if task.task_type in ("EnhancePhotoOperator", "TaskStatusSensor"):
            task.deferrable = deferrable
        if hasattr(task, "poll_interval"):
            task.poll_interval = 1
        if task.task_type == "TaskStatusSensor":
            task.poke_interval = 1


# (DAG file, faults, expected run state)
SCENARIOS = [
    ("example_hitpaw_enhance_photo.py", {"error_5xx": 0.3, "rate_429": 0.2, "fault_endpoints": ["status", "result"]},
     "success"),
    ("example_hitpaw_batch.py", {"error_5xx": 0.3, "drop": 0.1, "fault_endpoints": ["status"]}, "success"),
    ("example_hitpaw_submit_then_sense.py", {"error_5xx": 0.3, "fault_endpoints": ["status", "result"]}, "success"),
    ("example_hitpaw_enhance_photo.py", {"fail_job": 1.0}, "failed"),  # the job fails, the retry too
    ("example_hitpaw_enhance_photo.py", {"drop_after": 1.0, "fault_endpoints": ["submit"]}, "failed"),
]


@pytest.mark.dagtest
@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_canary_key_leaks_nowhere(airflow_db, monkeypatch, tmp_path, caplog, capfd, deferrable):
    from airflow_provider_hitpaw.sandbox import start_sandbox

    caplog.set_level("DEBUG")
    with start_sandbox(api_keys={CANARY: 1_000_000}, job_seconds=0.2) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_HITPAW_DEFAULT", json.dumps(
            {"conn_type": "hitpaw", "host": sandbox.base_url, "password": CANARY,
             "extra": {"max_attempts": 8, "read_timeout": 5}}))
        states = []
        for file_name, faults, expected in SCENARIOS:
            sandbox.reset()
            sandbox.set_faults(**faults, seed=3)
            dag = load_dag(airflow_db, file_name)
            _prepare(dag, deferrable)
            run = dag.test(run_conf={"output_dir": str(tmp_path / "out")})
            states.append((file_name, faults, str(run.state), expected))
            assert sum(sandbox.stats()["faults_injected"].values()) > 0
        assert [s[2] for s in states] == [s[3] for s in states], states

    out, err = capfd.readouterr()
    texts = {"captured logs": caplog.text, "stdout": out, "stderr": err}
    assert "HitPawJobFailedError" in caplog.text + out + err  # the failures were logged...
    assert "HitPawSubmitOutcomeUnknown" in caplog.text + out + err
    assert "retrying" in (caplog.text + out + err).lower()  # ...and so were the retries
    from tests.support.airflow_home import AIRFLOW_HOME

    for path in AIRFLOW_HOME.rglob("*"):
        if path.is_file() and path.suffix != ".py":
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    db_files = [p for p in AIRFLOW_HOME.glob("airflow.db*")]
    assert db_files
    db = b"".join(p.read_bytes() for p in db_files)
    assert b"EnhancePhotoOperator" in db or b"enhance_photo" in db  # the runs are in it
    assert CANARY.encode() not in db, "the API key is in the metadata database"
    for where, text in texts.items():
        assert CANARY not in text, f"the API key leaked into {where}"


def test_trigger_kwargs_and_events_never_carry_the_key(monkeypatch, scripted):
    set_hitpaw_connection(monkeypatch, "hitpaw_canary", scripted.base_url, CANARY)
    scripted.script(TASK_STATUS_PATH, Step(401, {"error_code": 110400000, "message": "api_key is not valid"}))
    trigger = HitPawTaskStatusTrigger("job-1", time.time() + 10, "hitpaw_canary", poll_interval=0.05)
    _, kwargs = trigger.serialize()
    assert CANARY not in json.dumps(kwargs)

    async def run() -> list[dict[str, Any]]:
        try:
            return [e.payload async for e in trigger.run()]
        finally:
            await close_shared_session()

    (event,) = asyncio.run(run())
    assert event["status"] == "error" and CANARY not in json.dumps(event)
    assert scripted.requests[-1].headers.get("Apikey") == CANARY  # it was sent, in the header only


def test_a_key_echoed_by_the_server_is_masked_in_the_trigger_event(monkeypatch, scripted):
    """The event goes into the metadata DB (``next_kwargs``) unmasked: its message must not carry the key
    even when the server quotes it back."""
    set_hitpaw_connection(monkeypatch, "hitpaw_canary", scripted.base_url, CANARY)
    scripted.script(TASK_STATUS_PATH, Step(401, {"error_code": 110400000, "message": f"api_key {CANARY} is bad"}))
    trigger = HitPawTaskStatusTrigger("job-1", time.time() + 10, "hitpaw_canary", poll_interval=0.05)

    async def run() -> list[dict[str, Any]]:
        try:
            return [e.payload async for e in trigger.run()]
        finally:
            await close_shared_session()

    (event,) = asyncio.run(run())
    assert event["error_class"] == "HitPawAuthError"
    assert CANARY not in json.dumps(event) and "***" in event["message"]


@pytest.mark.parametrize(
    "step",
    [
        Step(401, {"error_code": 110400000, "message": f"api_key {CANARY} is not valid"}),
        Step(500, f"<html>key={CANARY}</html>"),
        Step(200, {"code": 200, "data": {"job_id": CANARY}}),
        Step(drop=True),
    ],
    ids=["401-echoing-key", "500-echoing-key", "bad-job-id", "dropped"],
)
def test_exception_texts_never_carry_the_key(monkeypatch, scripted, step, caplog):
    """Even when the server echoes the key back, it is masked in what the error and the logs say."""
    set_hitpaw_connection(monkeypatch, "hitpaw_canary", scripted.base_url, CANARY)
    scripted.script(PHOTO_ENHANCER_PATH, step)
    scripted.script(TASK_STATUS_PATH, step)
    hook = HitPawHook("hitpaw_canary", retry_policy=ONE_TRY)
    errors: list[BaseException] = []
    for call in (lambda: hook.enhance_photo("https://photos.example/a.jpg", "face_2x", ".jpg"),
                 lambda: hook.get_task_status("job-1"), hook.test_connection):
        try:
            call()
        except HitPawError as err:
            errors.append(err)
    hook.close()
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    masker = _secrets_masker()
    for error in errors:
        # What Airflow writes for a failed task passes through the masker: the key must not survive it.
        for text in (str(error), repr(error), repr(pickle.loads(pickle.dumps(error)).args)):
            assert CANARY not in masker.redact(text)
    assert CANARY not in masker.redact(caplog.text)


def test_the_key_is_registered_with_the_secrets_masker(monkeypatch):
    from airflow.sdk import Connection
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    key = "canary-register-only-7d1e"
    HitPawSettings.from_connection(Connection(conn_id="x", conn_type="hitpaw", password=key))
    assert _secrets_masker().redact(f"the key is {key}") == "the key is ***"


# --- transport -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["http://api-base.hitpaw.com", "http://10.0.0.7:8899", "http://localhost.evil.example",
     "http://127.0.0.1.nip.io", "http://[::ffff:10.0.0.1]", "ftp://api-base.hitpaw.com", "file:///etc",
     "http://user:pw@127.0.0.1"],
)
def test_plain_http_is_refused_unless_loopback(monkeypatch, scripted, host):
    with pytest.raises(HitPawValidationError) as caught:
        normalize_base_url(host)
    assert any(word in str(caught.value) for word in ("https", "credentials"))  # a clear reason
    set_hitpaw_connection(monkeypatch, "hitpaw_plain", host, CANARY)
    with pytest.raises(HitPawValidationError):
        HitPawHook("hitpaw_plain").get_task_status("job-1")
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("host", ["http://127.0.0.1:8899", "http://localhost:1", "http://[::1]:2",
                                  "http://127.0.0.9", "https://api.example.com", "api.example.com"])
def test_loopback_http_and_any_https_are_accepted(host):
    assert normalize_base_url(host).startswith(("http://", "https://"))


@pytest.fixture(scope="module")
def self_signed_server(tmp_path_factory):
    """An https server on loopback with a self-signed certificate; counts the requests that got through."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Apikey", ""))
            body = json.dumps({"code": 200, "data": {"job_id": "job-1", "status": "CONVERTING"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_tls_verification_stays_on_in_the_worker(monkeypatch, self_signed_server):
    base_url, seen = self_signed_server
    set_hitpaw_connection(monkeypatch, "hitpaw_tls", base_url, CANARY, connect_timeout=2, read_timeout=2)
    hook = HitPawHook("hitpaw_tls", retry_policy=ONE_TRY)
    with pytest.raises(HitPawConnectionError):
        hook.get_task_status("job-1")
    with pytest.raises(HitPawError) as caught:
        hook.enhance_photo("https://photos.example/a.jpg", "face_2x", ".jpg")
    assert not isinstance(caught.value, HitPawSubmitOutcomeUnknownError) or "certificate" in str(caught.value).lower()
    assert hook.session.verify is True
    hook.close()
    assert seen == []  # the key never crossed an unverified connection


def test_tls_verification_stays_on_in_the_triggerer(monkeypatch, self_signed_server):
    base_url, seen = self_signed_server
    set_hitpaw_connection(monkeypatch, "hitpaw_tls", base_url, CANARY, connect_timeout=2, read_timeout=2)

    async def run() -> Any:
        try:
            with pytest.raises(HitPawConnectionError):
                await HitPawAsyncHook("hitpaw_tls", retry_policy=ONE_TRY).get_task_status("job-1")
            trigger = HitPawTaskStatusTrigger("job-1", time.time() + 10, "hitpaw_tls", poll_interval=0.05,
                                              max_consecutive_errors=2)
            return [e.payload async for e in trigger.run()]
        finally:
            await close_shared_session()

    (event,) = asyncio.run(run())
    assert event["status"] == "error" and event["error_class"] == "HitPawConnectionError"
    assert seen == []


def test_no_code_path_disables_tls_verification():
    source = "\n".join(p.read_text() for p in (Path(__file__).parent.parent / "airflow_provider_hitpaw").rglob("*.py")
                       if "sandbox" not in p.parts)
    for forbidden in ("verify=False", "ssl=False", "CERT_NONE", "check_hostname = False", "verify_ssl=False"):
        assert forbidden not in source, forbidden


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://files.example/out.jpg", "gopher://x/1",
                                      "data:image/jpeg;base64,AAAA"])
def test_result_download_follows_only_http_redirects(monkeypatch, scripted, tmp_path, location):
    set_hitpaw_connection(monkeypatch, "hitpaw_dl", scripted.base_url, CANARY)
    scripted.script("/results/job-1/out.jpg", Step(302, b"", {"Location": location}))
    hook = HitPawHook("hitpaw_dl", retry_policy=ONE_TRY)
    with pytest.raises(HitPawError):
        hook.download_result(scripted.base_url + "/results/job-1/out.jpg", tmp_path / "out.jpg")
    hook.close()
    assert list(tmp_path.iterdir()) == []


def test_result_download_follows_an_https_or_http_redirect_without_the_key(monkeypatch, scripted, tmp_path):
    set_hitpaw_connection(monkeypatch, "hitpaw_dl", scripted.base_url, CANARY)
    scripted.script("/results/job-1/out.jpg", Step(302, b"", {"Location": scripted.base_url + "/cdn/out.jpg"}))
    scripted.script("/cdn/out.jpg", Step(200, b"JPEGDATA"))
    hook = HitPawHook("hitpaw_dl", retry_policy=ONE_TRY)
    written = hook.download_result(scripted.base_url + "/results/job-1/out.jpg", tmp_path / "out.jpg")
    hook.close()
    assert Path(written).read_bytes() == b"JPEGDATA"
    assert all("Apikey" not in r.headers for r in scripted.requests)


def test_the_sandbox_binds_loopback_unless_told_otherwise():
    from airflow_provider_hitpaw.sandbox import SandboxConfig, start_sandbox

    assert SandboxConfig().host == "127.0.0.1"
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(ValueError, match="loopback"):
            SandboxConfig(host=host)
    assert SandboxConfig(host="0.0.0.0", allow_remote=True).admin_enabled is False
    with start_sandbox(api_keys={"k": 1}) as sandbox:
        assert sandbox.base_url.startswith("http://127.0.0.1:")


def test_a_wrong_key_is_an_auth_error_and_the_key_is_not_in_it(monkeypatch, scripted):
    scripted.script(TASK_STATUS_PATH, status_step("CONVERTING"))
    scripted.script(PHOTO_ENHANCER_PATH, ok({"job_id": "job-1", "consume_coins": 1}))
    set_hitpaw_connection(monkeypatch, "hitpaw_nokey", scripted.base_url, "")
    with pytest.raises(HitPawError) as caught:
        HitPawHook("hitpaw_nokey").get_task_status("job-1")
    assert "password" in str(caught.value) and scripted.requests == []
