"""Private photos as inputs: HitPaw's presigned uploads (issue 11), against the sandbox over real HTTP.

The hook's upload (type checked first, presign, streamed PUT without the API key, retried with a
fresh URL), the sandbox's storage host (signature, Content-Type and expiry checked, 403 with an OSS
XML body), a 1 GiB file in constant memory, and the operator's ``img_path`` end to end in a DAG.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from airflow_provider_hitpaw.contract.uploads import UPLOAD_CONTENT_TYPES
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.retries import RetryPolicy
from airflow_provider_hitpaw.sandbox.server import SAMPLES_DIR
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.connections import SANDBOX_API_KEY
from tests.support.dag_files import load_dag

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05, jitter=0)
PORTRAIT = SAMPLES_DIR / "portrait.jpg"  # 512 x 600
PRESIGN, PRESIGN_BATCH, PUT = "POST /api/oss/presign-put", "POST /api/oss/presign-put/batch", "PUT /oss/{object_key}"


@pytest.fixture
def hook(sandbox_conn):
    h = HitPawHook(sandbox_conn, retry_policy=FAST)
    yield h
    h.close()


def requests_to(sandbox: Any, endpoint: str) -> int:
    return int(sandbox.stats()["requests_by_endpoint"].get(endpoint, 0))


def uploads(sandbox: Any) -> dict[str, Any]:
    return dict(sandbox.stats()["uploads"])


def set_upload_knob(sandbox: Any, **values: Any) -> None:
    """Change the sandbox storage host's test knobs (``expire_next``) on its event loop."""
    store = sandbox._server.state.uploads

    def change() -> None:
        for name, value in values.items():
            setattr(store, name, value)

    sandbox._call(change)


def presign(sandbox: Any, filename: str = "photo.jpg", content_type: str = "image/jpeg") -> dict[str, Any]:
    reply = requests.post(
        sandbox.url("/api/oss/presign-put"),
        json={"filename": filename, "content_type": content_type, "expire_seconds": 600},
        headers={"Apikey": SANDBOX_API_KEY},
        timeout=10,
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == 0  # the presign endpoints' success envelope uses 0, not 200
    data: dict[str, Any] = body["data"]
    return data


# -- the storage host ---------------------------------------------------------------------------------


def test_the_put_needs_exactly_the_presigned_content_type(sandbox):
    data = presign(sandbox)
    assert set(data) == {"upload_url", "access_url", "object_key", "content_type", "expire_at"}
    wrong = requests.put(data["upload_url"], data=b"\xff\xd8 not really", headers={"Content-Type": "image/png"},
                         timeout=10)
    assert wrong.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in wrong.text and wrong.headers["Content-Type"].startswith(
        "application/xml"
    )
    tampered = data["upload_url"].replace("Signature=", "Signature=0")
    assert requests.put(tampered, data=b"x", headers={"Content-Type": "image/jpeg"}, timeout=10).status_code == 403
    assert requests.get(data["access_url"], timeout=10).status_code == 404  # nothing stored yet
    right = requests.put(data["upload_url"], data=PORTRAIT.read_bytes(), headers={"Content-Type": "image/jpeg"},
                         timeout=10)
    assert right.status_code == 200 and right.content == b""
    served = requests.get(data["access_url"], timeout=10)
    assert served.status_code == 200 and served.content == PORTRAIT.read_bytes()
    assert served.headers["Content-Type"] == "image/jpeg"


def test_an_expired_upload_url_is_refused(sandbox):
    set_upload_knob(sandbox, expire_next=1)
    data = presign(sandbox)
    reply = requests.put(data["upload_url"], data=b"x", headers={"Content-Type": "image/jpeg"}, timeout=10)
    assert reply.status_code == 403 and "Request has expired" in reply.text


def test_the_presign_endpoints_check_their_requests(sandbox):
    def post(path: str, body: Any, key: str | None = SANDBOX_API_KEY) -> requests.Response:
        return requests.post(sandbox.url(path), json=body, headers={"Apikey": key} if key else {}, timeout=10)

    assert post("/api/oss/presign-put", {"filename": "a.jpg", "content_type": "image/jpeg"}, key=None).status_code == 400
    assert post("/api/oss/presign-put", {"filename": "a.txt", "content_type": "text/plain"}).status_code == 400
    assert post("/api/oss/presign-put", {"filename": "a.jpg", "content_type": "image/png"}).status_code == 400
    for expire in (59, 7201, "3600"):
        body = {"filename": "a.jpg", "content_type": "image/jpeg", "expire_seconds": expire}
        assert post("/api/oss/presign-put", body).status_code == 400, expire
    files = [{"filename": f"{i}.png", "content_type": "image/png"} for i in range(21)]
    assert post("/api/oss/presign-put/batch", {"files": files}).status_code == 400
    assert post("/api/oss/presign-put/batch", {"files": []}).status_code == 400
    reply = post("/api/oss/presign-put/batch", {"files": [files[0], {"filename": "b.exe", "content_type": "x/y"}]})
    data = reply.json()["data"]
    assert reply.json()["code"] == 0 and (data["total"], data["success"], data["failed"]) == (2, 1, 1)
    assert "upload_url" in data["items"][0] and "upload_url" not in data["items"][1]


# -- the hook -----------------------------------------------------------------------------------------


def test_upload_then_enhance_the_access_url(hook, sandbox, tmp_path):
    uploaded = hook.upload_file(PORTRAIT)
    assert uploaded.content_type == "image/jpeg" and uploaded.object_key.endswith(".jpg")
    job = hook.enhance_photo(uploaded.access_url, "face_2x", ".jpg")  # the sandbox fetches its own access_url
    status = hook.wait_for_completion(job.job_id, poll_interval=1, timeout=60)
    path = hook.download_result(status.res_url, tmp_path, job_id=job.job_id, source_url=uploaded.access_url)
    with Image.open(path) as image:
        assert image.size == (1024, 1200)
    assert (requests_to(sandbox, PRESIGN), requests_to(sandbox, PUT)) == (1, 1)


@pytest.mark.parametrize("name", ["notes.txt", "photo.tiff", "photo.heic", "song.mp3", "no_extension"])
def test_a_type_outside_the_whitelist_sends_no_request(hook, sandbox, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"data")
    with pytest.raises(HitPawValidationError, match=r"\.jpg \(image/jpeg\).*\.webm \(video/webm\)"):
        hook.upload_file(path)
    good = tmp_path / "good.png"
    good.write_bytes(b"data")
    with pytest.raises(HitPawValidationError):
        hook.upload_files([good, path])  # one bad file: none is sent
    with pytest.raises(HitPawValidationError, match="image/png"):
        hook.upload_file(good, content_type="image/jpeg")  # a stated type that is not the file's
    assert sum(sandbox.stats()["requests_by_endpoint"].values()) == 0


def test_an_expired_url_gets_a_fresh_presign(hook, sandbox):
    set_upload_knob(sandbox, expire_next=1)  # the first URL is already expired at the storage host
    uploaded = hook.upload_file(str(PORTRAIT))
    assert requests_to(sandbox, PRESIGN) == 2 and requests_to(sandbox, PUT) == 2
    assert sandbox.stats()["requests_by_status"]["403"] == 1
    assert requests.get(uploaded.access_url, timeout=10).content == PORTRAIT.read_bytes()


def _seed_dropping_only_the_first(probability: float = 0.5) -> int:
    """A seed whose first roll drops the PUT and whose second lets it through."""
    for seed in range(1000):
        rng = random.Random(seed)
        if rng.random() < probability <= rng.random():
            return seed
    raise AssertionError("no seed found")


def test_a_dropped_put_is_retried(hook, sandbox):
    sandbox.set_faults(drop=0.5, seed=_seed_dropping_only_the_first(), fault_endpoints=["upload"])
    uploaded = hook.upload_file(PORTRAIT)
    stats = sandbox.stats()
    assert stats["faults_injected"] == {"drop": 1}
    assert requests_to(sandbox, PUT) == 2
    assert requests_to(sandbox, PRESIGN) == 1  # the URL was still good: reused
    assert requests.get(uploaded.access_url, timeout=10).content == PORTRAIT.read_bytes()


def test_the_storage_host_never_receives_the_api_key(hook, sandbox, tmp_path):
    hook.session.headers["Apikey"] = SANDBOX_API_KEY  # even a session that carried it by default
    hook.upload_file(PORTRAIT)
    hook.upload_files([PORTRAIT, PORTRAIT])
    headers = uploads(sandbox)["put_headers"]
    assert len(headers) == 3
    assert all("apikey" not in names and "content-length" in names for names in headers), headers
    assert all("transfer-encoding" not in names for names in headers)  # a Content-Length, not chunked


def test_upload_files_presigns_twenty_at_a_time(hook, sandbox, tmp_path):
    paths = []
    for i in range(23):
        path = tmp_path / f"p{i}.{'png' if i % 2 else 'jpg'}"
        path.write_bytes(PORTRAIT.read_bytes())
        paths.append(path)
    uploaded = hook.upload_files(paths)
    assert len(uploaded) == 23 and len({u.access_url for u in uploaded}) == 23
    assert [u.content_type for u in uploaded[:2]] == ["image/jpeg", "image/png"]
    assert requests_to(sandbox, PRESIGN_BATCH) == 2 and requests_to(sandbox, PRESIGN) == 0
    assert uploads(sandbox)["stored"] == 23


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    hook = HitPawHook("hitpaw_upload_child")
    hook.settings  # the connection is read before measuring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    uploaded = hook.upload_file(sys.argv[1])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "access_url": uploaded.access_url}))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_a_1_gib_file_is_uploaded_in_constant_memory(sandbox, tmp_path):
    size = 1 << 30
    path = tmp_path / "big.mp4"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: no disk used on this side
    conn = {"conn_type": "hitpaw", "host": sandbox.base_url, "password": SANDBOX_API_KEY}
    env = dict(os.environ, AIRFLOW_CONN_HITPAW_UPLOAD_CHILD=json.dumps(conn))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    growth_mib = (measured["after_kib"] - measured["before_kib"]) / 1024
    assert growth_mib < 32, f"peak RSS grew by {growth_mib:.1f} MiB uploading 1 GiB"
    assert uploads(sandbox)["bytes_stored"] == size


# -- the operator -------------------------------------------------------------------------------------


def test_img_url_and_img_path_are_exclusive_at_parse_time():
    with pytest.raises(HitPawValidationError, match="exactly one"):
        EnhancePhotoOperator(task_id="both", img_url="https://example.com/a.jpg", img_path="/data/a.jpg",
                             model_name="face_2x")
    with pytest.raises(HitPawValidationError, match="exactly one"):
        EnhancePhotoOperator(task_id="neither", model_name="face_2x")
    with pytest.raises(HitPawValidationError, match="does not accept uploads"):
        EnhancePhotoOperator(task_id="tiff", img_path="/data/a.tiff", model_name="face_2x")
    with pytest.raises(HitPawValidationError, match="does not accept uploads"):
        EnhancePhotoOperator(task_id="video", img_path="/data/a.mp4", model_name="face_2x")
    op = EnhancePhotoOperator(task_id="ok", img_path="s3://bucket/shoot/Ann.png", model_name="face_2x")
    assert op.photo_label == "Ann.png" and "img_path" in op.template_fields
    EnhancePhotoOperator(task_id="templated", img_path="{{ params.photo }}", model_name="face_2x")


def test_a_second_try_reuses_the_upload_and_the_job_and_an_old_upload_is_made_again(hook, sandbox, sandbox_conn):
    from tests.support.operator_support import FakeTaskInstance, FakeTaskStateStore, make_context

    store = FakeTaskStateStore()

    def one_try(try_number):  # type: ignore[no-untyped-def]
        op = EnhancePhotoOperator(task_id="enhance", img_path=str(PORTRAIT), model_name="face_2x",
                                  hitpaw_conn_id=sandbox_conn, wait_for_completion=False, retries=3)
        return op.execute(make_context(store=store, ti=FakeTaskInstance(try_number, 3)))

    first = one_try(1)
    assert store.values["hitpaw_upload"]["img_path"] == str(PORTRAIT)
    assert "img_path" not in store.values["hitpaw_job"]  # the job's record is its own
    second = one_try(2)
    assert second["job_id"] == first["job_id"]
    assert uploads(sandbox)["presigned"] == 1 and len(sandbox.stats()["submissions"]) == 1

    store.values["hitpaw_upload"]["uploaded_at"] -= 6.5 * 86400  # HitPaw deletes it within the day
    third = one_try(3)
    assert uploads(sandbox)["presigned"] == 2  # uploaded again...
    assert third["job_id"] == first["job_id"]  # ...and still the same submission: no second charge
    op = EnhancePhotoOperator(task_id="enhance", img_path=str(PORTRAIT), model_name="face_2x",
                              hitpaw_conn_id=sandbox_conn, wait_for_completion=False, retries=3)
    context = make_context(store=store, ti=FakeTaskInstance(4, 3))
    assert op.execute(context)["job_id"] == op.execute(context)["job_id"] == first["job_id"]  # its own upload
    assert len(sandbox.stats()["submissions"]) == 1


_DAG_FILE = '''
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, ObjectStoragePath

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

with DAG(dag_id="hitpaw_upload_local_photos", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
         catchup=False) as dag:
    EnhancePhotoOperator(task_id="local_file", img_path={local!r}, model_name="face_2x",
                         output_path={out!r} + "/", poll_interval=1, deferrable={deferrable!r})
    EnhancePhotoOperator(task_id="object_storage_path", img_path=ObjectStoragePath({uri!r}),
                         model_name="face_2x", output_path={out!r} + "/", poll_interval=1,
                         deferrable={deferrable!r})
'''


@pytest.mark.dagtest
@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_a_dag_enhances_a_local_file_and_an_object_storage_path(airflow_db, monkeypatch, sandbox, tmp_path,
                                                                deferrable):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HITPAW_DEFAULT",
        json.dumps({"conn_type": "hitpaw", "host": sandbox.base_url, "password": SANDBOX_API_KEY}),
    )
    photos = tmp_path / "private"
    photos.mkdir()
    (photos / "portrait.jpg").write_bytes(PORTRAIT.read_bytes())
    (photos / "Ann B.png").write_bytes(PORTRAIT.read_bytes())  # a JPEG named .png: HitPaw reads the bytes
    out = tmp_path / "results"
    dag_file = Path(airflow_db) / "hitpaw_upload_local_photos.py"
    dag_file.write_text(_DAG_FILE.format(local=str(photos / "portrait.jpg"), uri=f"file://{photos / 'Ann B.png'}",
                                         out=str(out), deferrable=deferrable))
    dag = load_dag(airflow_db, dag_file.name, "hitpaw_upload_local_photos")
    run = dag.test()
    assert str(run.state) == "success"
    results = sorted(out.iterdir())
    assert [p.name.split("-", 1)[0] for p in results] == ["Ann B", "portrait"]  # stems from img_path
    for result in results:
        with Image.open(result) as image:
            assert image.size == (1024, 1200)  # face_2x doubles 512 x 600
    stats = sandbox.stats()
    assert stats["uploads"]["stored"] == 2 and all("apikey" not in h for h in stats["uploads"]["put_headers"])
    assert all("/files/uploads/" in url for url in stats["submissions_by_img_url"])


@pytest.mark.dagtest
def test_the_example_dag_enhances_a_local_copy_of_the_sample(airflow_db, monkeypatch, sandbox, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HITPAW_DEFAULT",
        json.dumps({"conn_type": "hitpaw", "host": sandbox.base_url, "password": SANDBOX_API_KEY}),
    )
    dag = load_dag(airflow_db, "example_hitpaw_enhance_local_photo.py", "example_hitpaw_enhance_local_photo")
    dag.get_task("enhance_local_photo").poll_interval = 1
    run = dag.test(run_conf={"output_dir": str(tmp_path / "results")})
    assert str(run.state) == "success"
    (result,) = list((tmp_path / "results").iterdir())
    assert result.name.startswith("portrait-")
    with Image.open(result) as image:
        assert image.size == (1024, 1200)
    stats = sandbox.stats()
    assert stats["uploads"]["stored"] == 1 and len(stats["submissions"]) == 1


_RETRY_DAG_FILE = '''
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator


class _Crash(HitPawHook):
    def wait_for_completion(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker lost right after the submission (test)")


class CrashOnFirstTry(EnhancePhotoOperator):
    def execute(self, context: Any) -> Any:
        self.__dict__.pop("hook", None)
        if context["ti"].try_number == 1:
            self.__dict__["hook"] = _Crash(self.hitpaw_conn_id)
        return super().execute(context)


with DAG(dag_id="hitpaw_upload_retry", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
         catchup=False) as dag:
    CrashOnFirstTry(task_id="enhance", img_path={local!r}, model_name="face_2x", poll_interval=1,
                    retries=1, retry_delay=timedelta(0))
'''


@pytest.mark.dagtest
@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store (reconnecting on retry) needs Airflow 3.3+")
def test_a_retry_reuses_the_upload_and_reconnects_to_the_job(airflow_db, monkeypatch, sandbox, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HITPAW_DEFAULT",
        json.dumps({"conn_type": "hitpaw", "host": sandbox.base_url, "password": SANDBOX_API_KEY}),
    )
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    dag_file = Path(airflow_db) / "hitpaw_upload_retry.py"
    dag_file.write_text(_RETRY_DAG_FILE.format(local=str(photo)))
    run = load_dag(airflow_db, dag_file.name, "hitpaw_upload_retry").test()
    assert str(run.state) == "success"
    stats = sandbox.stats()
    assert len(stats["submissions"]) == 1  # the retry reconnected instead of paying again
    assert stats["uploads"]["presigned"] == 1  # and reused the first try's upload


def test_the_whitelist_is_hitpaws():
    assert UPLOAD_CONTENT_TYPES == {
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
        "bmp": "image/bmp", "mp4": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo",
        "mkv": "video/x-matroska", "webm": "video/webm",
    }
