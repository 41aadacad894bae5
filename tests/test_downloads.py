"""Where results land: destination forms, file names that stay inside their folder and never collide.

Unit tests of ``downloads.resolve_destination`` for every destination form, property-based tests of
the names it makes, and downloads over real HTTP (scripted server and sandbox) through the hook and
the operator.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from airflow.sdk import ObjectStoragePath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_hitpaw import events
from airflow_provider_hitpaw.downloads import (
    MAX_NAME_BYTES,
    check_destination,
    resolve_destination,
    result_file_name,
    safe_file_name,
    write_stream,
)
from airflow_provider_hitpaw.errors import HitPawValidationError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.lineage import dataset_identity
from airflow_provider_hitpaw.retries import RetryPolicy
from airflow_provider_hitpaw.validation import JOB_ID_PATTERN
from tests.support.connections import set_hitpaw_connection
from tests.support.operator_support import FakeTaskStateStore, make_context
from tests.support.scripted_server import Step

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05, jitter=0)
RES = "https://cdn.example/results/job-1/result.png"
PHOTO = "https://photos.example/albums/portrait.jpg"


def file_uri(path: Path, *, form: str = "///", folder: bool = True) -> str:
    """A ``file:`` URI of ``path``, percent-encoded as a URI is, in one of the RFC 8089 forms."""
    encoded = quote(str(path)) + ("/" if folder else "")
    return {"///": f"file://{encoded}", "localhost": f"file://localhost{encoded}", "/": f"file:{encoded}",
            "LOCALHOST": f"FILE://LOCALHOST{encoded}"}[form]


def everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- destination forms ----------------------------------------------------------------------------

FOLDER_FORMS = {
    "str ending with /": lambda d: f"{d}/",
    "existing folder as str": lambda d: str(d),
    "existing folder as Path": lambda d: d,
    "file:///": lambda d: file_uri(d),
    "file://localhost/": lambda d: file_uri(d, form="localhost"),
    "file:/": lambda d: file_uri(d, form="/"),
    "FILE://LOCALHOST/": lambda d: file_uri(d, form="LOCALHOST"),
    "local ObjectStoragePath": lambda d: ObjectStoragePath(f"file://{d}/"),
}


@pytest.mark.parametrize("form", FOLDER_FORMS)
def test_every_folder_form_resolves_inside_that_folder(tmp_path, form):
    folder = tmp_path / "my out #1 %20"  # a space, a '#' and a literal '%20' that must stay literal
    folder.mkdir()
    destination = FOLDER_FORMS[form](folder)
    target = resolve_destination(RES, destination, job_id="job-1", source_url=PHOTO)
    assert target == folder / "portrait-job-1.png"
    assert dataset_identity(str(target)) == ("file", str(folder / "portrait-job-1.png"))
    if isinstance(destination, str) and destination.lower().startswith("file:"):
        assert dataset_identity(destination) == ("file", str(folder))


def test_a_remote_object_storage_path_is_never_taken_for_a_local_one(monkeypatch):
    """On Airflow 3.1 an ObjectStoragePath is an os.PathLike whose fspath is its URL ("s3://...")."""
    monkeypatch.setattr(ObjectStoragePath, "is_dir", lambda self: True)  # no S3 here
    target = resolve_destination(RES, ObjectStoragePath("s3://bucket/photos/"), job_id="j", source_url=PHOTO)
    assert isinstance(target, ObjectStoragePath) and not isinstance(target, type(Path()))
    assert str(target) == "s3://bucket/photos/portrait-j.png"
    target = resolve_destination(RES, "s3://bucket/photos/", job_id="j", source_url=PHOTO)
    assert str(target) == "s3://bucket/photos/portrait-j.png"


def test_a_missing_folder_ending_with_a_slash_is_a_folder_in_every_form(tmp_path):
    folder = tmp_path / "not yet" / "made"
    for destination in (f"{folder}/", file_uri(folder), file_uri(folder, form="localhost"),
                        file_uri(folder, form="/")):
        assert resolve_destination(RES, destination, job_id="j", source_url=PHOTO) == folder / "portrait-j.png"


@pytest.mark.parametrize("form", ["str", "Path", "file:///", "file://localhost/", "file:/"])
def test_an_explicit_file_is_used_as_given(tmp_path, form):
    target = tmp_path / "my photos" / "mine.jpeg"
    destination = {
        "str": str(target),
        "Path": target,
        "file:///": file_uri(target, folder=False),
        "file://localhost/": file_uri(target, form="localhost", folder=False),
        "file:/": file_uri(target, form="/", folder=False),
    }[form]
    assert resolve_destination(RES, destination, job_id="job-1", source_url=PHOTO) == target
    assert resolve_destination(RES, destination) == target


def test_percent_encoding_in_a_file_uri_is_decoded_once(tmp_path):
    assert resolve_destination(RES, "file:///data/my%20out/") == Path("/data/my out/result.png")
    assert resolve_destination(RES, "file:///data/100%2525/") == Path("/data/100%25/result.png")
    assert resolve_destination(RES, "file:///data/caf%C3%A9/") == Path("/data/café/result.png")


@pytest.mark.parametrize(
    "destination",
    [
        "file://otherhost/share/out/",
        "file://nas.example:445/out/",
        "file://user@localhost/out/",
        "file:////server/share/out/",
        "file:relative/out/",
        "file:",
        "file:///tmp/out?x=1",
        "file:///tmp/out#frag",
        "file:///tmp/a%00b/",
        "",
        "   ",
        "/tmp/a\x00b/",
        "https://cdn.example/out/",
        "http://cdn.example/out/",
        42,
        b"/tmp/out/",
        None,
    ],
)
def test_check_destination_refuses_what_cannot_be_written(destination):
    with pytest.raises(HitPawValidationError):
        check_destination(destination)
    with pytest.raises(HitPawValidationError):
        resolve_destination(RES, destination, job_id="job-1", source_url=PHOTO)


@pytest.mark.parametrize(
    "destination",
    ["/tmp/out/", "out/r.png", "file:///tmp/out/", "file://localhost/tmp/out/", "file:/tmp/out/",
     "file:///tmp/my%20out/", "s3://bucket/photos/", "gs://bucket/r.png", Path("/tmp/out")],
)
def test_check_destination_accepts_every_writable_form_without_io(destination, monkeypatch):
    def no_io(*args, **kwargs):
        raise AssertionError("check_destination touched the file system or the network")

    with monkeypatch.context() as patched:  # undone before pytest reports a failure
        patched.setattr(Path, "is_dir", no_io)
        patched.setattr(Path, "exists", no_io)
        patched.setattr("socket.socket.connect", no_io)
        check_destination(destination)


def test_file_uri_of_another_host_names_the_host(tmp_path):
    with pytest.raises(HitPawValidationError, match="otherhost"):
        check_destination("file://otherhost/share/out/")


@pytest.mark.parametrize(
    ("location", "identity"),
    [
        ("file:///data/my%20out/r.png", ("file", "/data/my out/r.png")),
        ("file://localhost/data/out/r.png", ("file", "/data/out/r.png")),
        ("FILE://LOCALHOST/data/out/r.png", ("file", "/data/out/r.png")),
        ("file:/data/out/r.png", ("file", "/data/out/r.png")),
        ("file:///data/caf%C3%A9/100%2525.png", ("file", "/data/café/100%25.png")),
        ("file://nas/share/r.png", ("file://nas", "/share/r.png")),
        ("/data/out #1/r.png", ("file", "/data/out #1/r.png")),
        ("/data/my%20out/r.png", ("file", "/data/my%20out/r.png")),  # a plain path is not decoded
        ("relative/a:b.png", ("file", os.path.abspath("relative/a:b.png"))),
        ("s3://bucket/photos/r.png", ("s3://bucket", "photos/r.png")),
    ],
)
def test_lineage_reports_the_real_path_of_every_form(location, identity):
    assert dataset_identity(location) == identity


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("res_path", "name"),
    [
        ("/r/..%2F..%2Fescaped.png", "escaped.png"),
        ("/r/%2Fabs", "abs"),
        ("/r/%2Fetc%2Fpasswd", "passwd"),
        ("/r/..%5C..%5Cwin.png", "win.png"),
        ("/r/a%5Cb.png", "b.png"),
        ("/r/%2E%2E", "result"),
        ("/r/..", "result"),
        ("/r/.", "result"),
        ("/r/", "result"),
        ("/r/%2E%2E%2F", "result"),
        ("/r/.hidden", "hidden"),
        ("/r/...png", "png"),
        ("/r/na%00me.png", "na_me.png"),
        ("/r/new%0Aline%0D.png", "new_line_.png"),
        ("/r/rtl%E2%80%AEgnp.exe", "rtl_gnp.exe"),
        ("/r/%FF%FE.png", "__.png"),
        ("/r/a%3Fb%23c%25d%3Ae.png", "a_b_c_d_e.png"),
        ("/r/-rf.png", "rf.png"),
        ("/r/result", "result"),
        ("/r/my%20photo.png", "my photo.png"),
        ("/r/caf%C3%A9.png", "café.png"),
    ],
)
def test_result_names_without_a_job_id_are_one_safe_segment(tmp_path, res_path, name):
    target = resolve_destination("https://cdn.example" + res_path, f"{tmp_path}/")
    assert target == tmp_path / name


@pytest.mark.parametrize(
    ("res_url", "source_url", "job_id", "name"),
    [
        (RES, PHOTO, "job-1", "portrait-job-1.png"),
        ("https://cdn.example/r/RESULT.PNG", PHOTO, "j1", "portrait-j1.png"),
        ("https://cdn.example/r/result.png?sig=a%2Fb", "https://p.example/a/my-photo.jpeg?x=1#y", "j1",
         "my_photo-j1.png"),
        ("https://cdn.example/r/result", "https://p.example/cat.webp", "j1", "cat-j1.webp"),
        ("https://cdn.example/r/result", "https://p.example/cat", "j1", "cat-j1.bin"),
        ("https://cdn.example/r/result.jpg", "https://p.example/..%2F..%2Fevil.jpg", "j1", "evil-j1.jpg"),
        ("https://cdn.example/r/result.jpg", "https://p.example/%2E%2E", "j1", "result-j1.jpg"),
        ("https://cdn.example/r/result.jpg", "https://p.example/.profile", "j1", "profile-j1.jpg"),
        ("https://cdn.example/r/result.jpg", "https://p.example/p%20q.jpg", "j1", "p q-j1.jpg"),
        ("https://cdn.example/r/result.jpg", None, "j1", "result-j1.jpg"),
        ("https://cdn.example/r/result.jpg", PHOTO, "ns:1.2", "portrait-ns~1.2.jpg"),
    ],
)
def test_result_names_with_a_job_id(tmp_path, res_url, source_url, job_id, name):
    assert result_file_name(res_url, job_id=job_id, source_url=source_url) == name
    assert resolve_destination(res_url, tmp_path, job_id=job_id, source_url=source_url) == tmp_path / name


def test_an_invalid_job_id_is_refused():
    for job_id in ("", "../x", "a/b", "x" * 129, "-lead"):
        with pytest.raises(HitPawValidationError):
            result_file_name(RES, job_id=job_id, source_url=PHOTO)


def test_long_names_fit_in_255_bytes_and_keep_their_extension(tmp_path):
    long_res = "https://cdn.example/r/" + quote("é" * 400) + ".png"
    name = resolve_destination(long_res, tmp_path).name
    assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(".png")
    long_photo = "https://p.example/" + "x" * 1000 + ".jpg"
    job_id = "J" * 128
    name = result_file_name(RES, job_id=job_id, source_url=long_photo)
    assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(f"-{job_id}.png")
    # The file and its temporary twin can both be created.
    assert write_stream([b"data"], tmp_path / name) == 4
    assert (tmp_path / name).read_bytes() == b"data"


def test_an_explicit_file_of_255_bytes_is_written(tmp_path):
    target = tmp_path / ("n" * (MAX_NAME_BYTES - 4) + ".png")
    assert write_stream([b"ab", b"cd"], target) == 4
    assert everything_under(tmp_path) == [target.name]


def test_write_stream_sends_an_object_storage_path_through_its_own_open(tmp_path, monkeypatch):
    """An ObjectStoragePath is a pathlib.Path on Airflow 3.1: it must not take the local-file route."""
    import io

    written = io.BytesIO()

    class RemotePath(type(Path())):  # what ObjectStoragePath("s3://...") looks like on Airflow 3.1
        protocol = "s3"

        def open(self, mode="r", *args, **kwargs):
            assert mode == "wb"
            written.close = lambda: None  # keep it readable after the with block
            return written

    monkeypatch.chdir(tmp_path)
    assert write_stream([b"ab", b"c"], RemotePath("s3:/bucket/r.png")) == 3
    assert written.getvalue() == b"abc"
    assert everything_under(tmp_path) == []


# --- properties -------------------------------------------------------------------------------------

url_texts = st.text(st.characters(codec="utf-8"), max_size=300)
job_ids = st.from_regex(JOB_ID_PATTERN, fullmatch=True)


def as_url(text: str, mode: str) -> str:
    if mode == "raw":  # what a careless server might send: slashes, dots and '%' as they are
        return "https://cdn.example/r/" + quote(text, safe="/%.\\")
    if mode == "encoded":  # every character percent-encoded, '/' included
        return "https://cdn.example/r/" + quote(text, safe="")
    return "https://cdn.example/r/" + quote(text.encode("utf-8", "surrogatepass"), safe="/")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(res=url_texts, res_mode=st.sampled_from(["raw", "encoded", "bytes"]),
       source=st.none() | url_texts, job_id=st.none() | job_ids)
def test_any_res_url_resolves_inside_the_folder_and_can_be_written(res, res_mode, source, job_id):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "out"
        source_url = None if source is None else as_url(source, "raw")
        target = resolve_destination(as_url(res, res_mode), f"{folder}/", job_id=job_id, source_url=source_url)
        assert target.parent == folder
        assert os.path.realpath(target).startswith(os.path.realpath(folder) + os.sep)
        name = target.name
        assert name not in ("", ".", "..") and not name.startswith((".", "-"))
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
        assert len(name.encode()) <= MAX_NAME_BYTES
        write_stream([b"x"], target)
        assert everything_under(Path(root)) == ["out", f"out/{name}"]


@settings(max_examples=400, deadline=None)
@given(a=job_ids, b=job_ids, res_a=url_texts, res_b=url_texts, src_a=url_texts, src_b=url_texts)
def test_two_jobs_never_get_one_name(a, b, res_a, res_b, src_a, src_b):
    name_a = result_file_name(as_url(res_a, "raw"), job_id=a, source_url=as_url(src_a, "raw"))
    name_b = result_file_name(as_url(res_b, "raw"), job_id=b, source_url=as_url(src_b, "raw"))
    if a != b:
        assert name_a != name_b


@settings(max_examples=100, deadline=None)
@given(job_id=job_ids, res=url_texts, src=url_texts)
def test_a_retry_of_the_same_job_gets_the_same_name(job_id, res, src):
    args = (as_url(res, "raw"),)
    kwargs = {"job_id": job_id, "source_url": as_url(src, "raw")}
    assert result_file_name(*args, **kwargs) == result_file_name(*args, **kwargs)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=400))
def test_safe_file_name_is_always_one_short_visible_segment(name):
    safe = safe_file_name(name)
    assert safe and safe not in (".", "..") and not safe.startswith(".")
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert len(safe.encode()) <= MAX_NAME_BYTES


def test_two_job_ids_one_a_suffix_of_the_other_still_differ():
    # "p-x" + "-" + "abc" would equal "p" + "-" + "x-abc" if the stem kept its '-'.
    one = result_file_name(RES, job_id="abc", source_url="https://p.example/p-x.jpg")
    two = result_file_name(RES, job_id="x-abc", source_url="https://p.example/p.jpg")
    assert one != two
    assert result_file_name("https://c/r/result", job_id="a.png", source_url="https://p/p") != \
        result_file_name("https://c/r/result.png", job_id="a", source_url="https://p/p")


# --- over HTTP: the hook against the scripted server ----------------------------------------------


@pytest.fixture
def hook(monkeypatch, scripted):
    set_hitpaw_connection(monkeypatch, "hitpaw_dl", scripted.base_url, "scripted-key",
                          read_timeout=2, connect_timeout=2)
    h = HitPawHook("hitpaw_dl", retry_policy=FAST)
    yield h
    h.close()


@pytest.mark.parametrize(
    ("res_path", "name"),
    [("/r/..%2F..%2Fescaped.png", "escaped.png"), ("/r/%2Fabs", "abs"), ("/r/..%5C..%5Cwin.png", "win.png"),
     ("/r/%2E%2E", "result"), ("/r/.bashrc", "bashrc")],
)
def test_download_with_a_hostile_res_url_stays_in_the_folder(hook, scripted, tmp_path, res_path, name):
    folder = tmp_path / "a" / "b" / "out"
    scripted.script(unquote(res_path), Step(200, b"payload"))  # the server routes on the decoded path
    path = hook.download_result(scripted.base_url + res_path, f"{folder}/")
    assert path == str(folder / name)
    assert everything_under(tmp_path) == ["a", "a/b", "a/b/out", f"a/b/out/{name}"]
    assert (folder / name).read_bytes() == b"payload"
    assert scripted.count(unquote(res_path)) == 1


def test_download_with_a_hostile_res_url_and_a_job_id(hook, scripted, tmp_path):
    scripted.script("/r/../../escaped.png", Step(200, b"payload"))
    path = hook.download_result(scripted.base_url + "/r/..%2F..%2Fescaped.png", tmp_path,
                                job_id="job-7", source_url="https://p.example/..%2Fup%2Fportrait.jpg")
    assert path == str(tmp_path / "portrait-job-7.png")
    assert everything_under(tmp_path) == ["portrait-job-7.png"]


def test_three_jobs_one_folder_three_files(hook, scripted, tmp_path):
    """Every sandbox result is result.<ext>: three jobs into one folder must still give three files."""
    folder = tmp_path / "out"
    paths = []
    for job_id in ("job-a", "job-b", "job-c"):
        scripted.script(f"/results/{job_id}/result.png", Step(200, job_id.encode()))
        paths.append(hook.download_result(f"{scripted.base_url}/results/{job_id}/result.png", f"{folder}/",
                                          job_id=job_id, source_url=PHOTO))
    assert paths == [str(folder / f"portrait-{j}.png") for j in ("job-a", "job-b", "job-c")]
    assert everything_under(folder) == ["portrait-job-a.png", "portrait-job-b.png", "portrait-job-c.png"]
    assert [Path(p).read_bytes() for p in paths] == [b"job-a", b"job-b", b"job-c"]
    # A retry of job-b writes the same name again, and nothing else.
    scripted.script("/results/job-b/result.png", Step(200, b"job-b again"))
    again = hook.download_result(f"{scripted.base_url}/results/job-b/result.png", folder,
                                 job_id="job-b", source_url=PHOTO)
    assert again == paths[1] and Path(again).read_bytes() == b"job-b again"
    assert len(everything_under(folder)) == 3


@pytest.mark.parametrize("form", ["///", "localhost", "/", "LOCALHOST"])
def test_download_to_every_file_uri_form_lands_in_the_real_folder(hook, scripted, tmp_path, monkeypatch, form):
    monkeypatch.chdir(tmp_path)  # a wrong reading of the URI would land under here
    folder = tmp_path / "real" / "my out"
    scripted.script("/results/j1/result.png", Step(200, b"png"))
    destination = file_uri(folder, form=form)
    path = hook.download_result(f"{scripted.base_url}/results/j1/result.png", destination)
    assert path == str(folder / "result.png")
    assert everything_under(tmp_path) == ["real", "real/my out", "real/my out/result.png"]
    assert dataset_identity(path) == ("file", path)
    assert dataset_identity(destination) == ("file", str(folder))


def test_download_to_another_hosts_file_uri_is_refused_before_any_request(hook, scripted, tmp_path):
    scripted.script("/results/j1/result.png", Step(200, b"png"))
    with pytest.raises(HitPawValidationError, match="otherhost"):
        hook.download_result(f"{scripted.base_url}/results/j1/result.png", "file://otherhost/out/")
    assert scripted.requests == []
    assert everything_under(tmp_path) == []


# --- over HTTP: the sandbox, through the hook and the operator -------------------------------------


def test_three_sandbox_jobs_into_one_folder_through_the_hook(sandbox, sandbox_conn, tmp_path):
    hook = HitPawHook(sandbox_conn, retry_policy=FAST)
    img_url = sandbox.url("/samples/portrait.jpg")
    try:
        jobs = [hook.enhance_photo(img_url, "face_2x", ".png") for _ in range(3)]
        paths = []
        for job in jobs:
            status = hook.wait_for_completion(job.job_id, poll_interval=0.05, timeout=60)
            assert status.res_url.endswith("/result.png")
            paths.append(hook.download_result(status.res_url, f"{tmp_path}/out/",
                                              job_id=job.job_id, source_url=img_url))
    finally:
        hook.close()
    expected = sorted(f"portrait-{job.job_id}.png" for job in jobs)
    assert len(set(expected)) == 3
    assert everything_under(tmp_path / "out") == expected
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in paths)


# The operator's shortest poll interval (the sandbox's jobs take 0.3 s).
OPERATOR_POLL_SECONDS = max(1.0, getattr(events, "MIN_POLL_INTERVAL_SECONDS", 0.0))


def test_three_operators_sharing_one_output_folder_keep_three_results(sandbox, sandbox_conn, tmp_path):
    """Like three mapped tasks with one output_path: each result is kept, named after its job."""
    from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

    img_url = sandbox.url("/samples/portrait.jpg")
    results = []
    for index in range(3):
        op = EnhancePhotoOperator(task_id=f"enhance_{index}", img_url=img_url, model_name="face_2x",
                                  hitpaw_conn_id=sandbox_conn, poll_interval=OPERATOR_POLL_SECONDS,
                                  output_path=file_uri(tmp_path / "shared out"))
        results.append(op.execute(make_context(store=FakeTaskStateStore())))
    names = [f"portrait-{r['job_id']}.jpg" for r in results]
    assert [r["output_path"] for r in results] == [str(tmp_path / "shared out" / n) for n in names]
    assert everything_under(tmp_path / "shared out") == sorted(names)
    assert sandbox.stats()["jobs_total"] == 3
