"""``output_path`` on the worker: checked before paying (the folder exists or can be created and takes
a file; object storage is configured), and a copy that still fails after paying says which job, where
its result is, until when, and what a clear does. Real HTTP against the sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_hitpaw.downloads import check_writable_destination
from airflow_provider_hitpaw.errors import (
    HitPawResultNotSavedError,
    HitPawResultNotSavedFailure,
    HitPawValidationError,
)
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.resume import STATE_KEY
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.operator_support import FakeTaskStateStore, make_context


def enhance(sandbox, conn_id: str, output_path: str) -> EnhancePhotoOperator:
    return EnhancePhotoOperator(
        task_id="enhance", img_url=sandbox.url("/samples/portrait.jpg"), model_name="face_2x",
        hitpaw_conn_id=conn_id, output_path=output_path, poll_interval=1,
    )


@pytest.fixture
def unwritable_folder(tmp_path) -> Iterator[Path]:
    """A folder no file can be created in, also for root (who ignores permission bits)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    for candidate in (Path("/sys"), Path("/proc/self")):
        try:
            os.close(os.open(candidate / ".hitpaw-probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            yield candidate
            return
        os.unlink(candidate / ".hitpaw-probe")
    pytest.skip("no folder here refuses root's writes")


def test_a_folder_that_can_be_created_passes_and_is_not_created(tmp_path):
    check_writable_destination(str(tmp_path / "new" / "deeper") + "/")
    check_writable_destination(f"file://{tmp_path}/new/photo.jpg")
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []  # the probe file is gone too


def test_a_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(HitPawValidationError, match=r"is a file, not a folder.*nothing was submitted"):
        check_writable_destination(str(tmp_path / "a-file" / "out") + "/")


def test_an_unwritable_folder_is_refused(unwritable_folder):
    with pytest.raises(HitPawValidationError, match=r"cannot be written on this worker.*Nothing was submitted"):
        check_writable_destination(str(unwritable_folder / "results") + "/")


def test_object_storage_without_its_filesystem_is_refused():
    from airflow.sdk import ObjectStoragePath

    try:
        ObjectStoragePath("s3://bucket/out/").fs
    except ValueError:
        pass
    else:
        pytest.skip("this Airflow has a filesystem for s3:// (the Amazon provider is installed)")
    with pytest.raises(HitPawValidationError, match=r"s3://bucket/out/.*cannot be written from this Airflow"):
        check_writable_destination("s3://bucket/out/")
    check_writable_destination(ObjectStoragePath("file:///tmp/"))  # a local one is checked like a path


@pytest.mark.parametrize("where", ["unwritable", "under-a-file"])
def test_the_operator_pays_nothing_for_a_result_it_could_not_keep(sandbox, sandbox_conn, tmp_path,
                                                                  request, where):
    if where == "unwritable":
        output_path = str(request.getfixturevalue("unwritable_folder") / "results") + "/"
    else:
        (tmp_path / "mount-point").write_text("not mounted")
        output_path = str(tmp_path / "mount-point" / "results") + "/"
    store = FakeTaskStateStore()
    with pytest.raises(HitPawValidationError, match="othing was submitted"):
        enhance(sandbox, sandbox_conn, output_path).execute(make_context(store=store))
    assert sandbox.stats()["jobs_total"] == 0
    assert STATE_KEY not in store.values


def test_a_copy_that_fails_after_paying_names_the_job_the_result_and_the_way_out(sandbox, sandbox_conn, tmp_path):
    # The folder takes files, but not this name (over 255 bytes): the copy fails only after paying.
    output_path = str(tmp_path / ("x" * 300 + ".jpg"))
    store = FakeTaskStateStore()
    context = make_context(store=store)
    expected = HitPawResultNotSavedError if AIRFLOW_V_3_3_PLUS else HitPawResultNotSavedFailure
    with pytest.raises(expected) as caught:
        enhance(sandbox, sandbox_conn, output_path).execute(context)
    err = caught.value
    job_id = context["ti"].xcoms["job_id"]
    res_url = context["ti"].xcoms["res_url"]
    message = str(err)
    assert err.job_id == job_id and err.res_url == res_url
    assert message.replace(res_url.split("?")[0], "").count(job_id) == 1  # the result's URL names it too
    assert res_url.split("?")[0] in message and "XCom 'res_url'" in message
    assert "8 days" in message and " UTC at the latest" in message
    assert "File name too long" in message
    assert sandbox.stats()["jobs_total"] == 1
    if not AIRFLOW_V_3_3_PLUS:
        assert "pays again" in message
        return
    assert "clear this task: it reconnects to the same job" in message
    # The clear the message promises: same store, a usable output_path, no second job.
    assert STATE_KEY in store.values
    result = enhance(sandbox, sandbox_conn, str(tmp_path) + "/").execute(make_context(store=store))
    assert result["job_id"] == job_id and Path(result["output_path"]).stat().st_size > 0
    assert sandbox.stats()["jobs_total"] == 1
