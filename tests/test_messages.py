"""What the user reads when HitPaw refuses or a job fails: the URL refused and what was asked, a job id
and status said once. Real HTTP against the sandbox."""

from __future__ import annotations

import pytest

from airflow_provider_hitpaw.api import shown_url
from airflow_provider_hitpaw.errors import HitPawInvalidRequestError, HitPawJobFailedError
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from tests.support.operator_support import FakeTaskStateStore, make_context


def test_an_invalid_url_names_the_url_without_its_query_and_what_was_refused(sandbox, sandbox_conn):
    photo = sandbox.url("/samples/missing.jpg") + "?X-Amz-Signature=very-secret-signature&X-Amz-Expires=60"
    with pytest.raises(HitPawInvalidRequestError) as caught:
        HitPawHook(sandbox_conn).enhance_photo(photo, "face_2x", ".jpg")
    message = str(caught.value)
    assert message.startswith(
        f"HitPaw refused the submission of {sandbox.url('/samples/missing.jpg')} with model face_2x "
        "(nothing was charged): Invalid URL. HitPaw fetches the photo itself"
    )
    assert "very-secret-signature" not in message and "?" not in message.split("Invalid URL")[0]
    assert caught.value.code == 100400001 and caught.value.http_status == 400
    assert sandbox.stats()["jobs_total"] == 0


def test_a_refused_model_says_the_same_without_the_url_hint(sandbox, sandbox_conn):
    with pytest.raises(HitPawInvalidRequestError) as caught:
        HitPawHook(sandbox_conn).enhance_photo(
            sandbox.url("/samples/portrait.jpg"), "no_such_model", ".jpg", allow_unknown_model=True
        )
    message = str(caught.value)
    assert message.startswith(f"HitPaw refused the submission of {sandbox.url('/samples/portrait.jpg')} "
                              "with model no_such_model (nothing was charged): ")
    assert "fetches the photo" not in message


def test_shown_url_is_short_and_has_no_query():
    assert shown_url("https://h.example/a/b.jpg?sig=1#frag") == "https://h.example/a/b.jpg"
    long = "https://h.example/" + "d" * 300 + ".jpg"
    assert len(shown_url(long)) == 120 and shown_url(long).endswith("...")


def test_a_failed_job_says_its_id_and_status_once(sandbox, sandbox_conn):
    sandbox.set_faults(fail_job=1.0)
    operator = EnhancePhotoOperator(
        task_id="enhance", img_url=sandbox.url("/samples/portrait.jpg"), model_name="face_2x",
        hitpaw_conn_id=sandbox_conn, poll_interval=1,
    )
    context = make_context(store=FakeTaskStateStore())
    with pytest.raises(HitPawJobFailedError) as caught:
        operator.execute(context)
    job_id = context["ti"].xcoms["job_id"]
    message = str(caught.value)
    assert message.startswith(f"HitPaw job {job_id} ended in ERROR")
    assert message.count(job_id) == 1 and message.count("ERROR") == 1
    assert caught.value.job_id == job_id and caught.value.job_status == "ERROR"


@pytest.mark.parametrize(("message", "expected"), [
    ("HitPaw job j1 ended in NSFW", "HitPaw job j1 ended in NSFW"),
    ("The task failed, please try again", "The task failed, please try again (code 110400003, job j1) [status ERROR]"),
])
def test_details_the_message_lacks_are_added(message, expected):
    code = None if "j1 ended" in message else 110400003
    status = "NSFW" if "NSFW" in message else "ERROR"
    assert str(HitPawJobFailedError(message, job_id="j1", job_status=status, code=code)) == expected


def test_the_docs_name_every_key_left_none_without_waiting(sandbox, sandbox_conn):
    """docs/operators.md says which keys of the return value are None with wait_for_completion=False."""
    import re
    from pathlib import Path

    operator = EnhancePhotoOperator(
        task_id="enhance", img_url=sandbox.url("/samples/portrait.jpg"), model_name="face_2x",
        hitpaw_conn_id=sandbox_conn, wait_for_completion=False,
    )
    result = operator.execute(make_context(store=FakeTaskStateStore()))
    left_none = {key for key, value in result.items() if value is None}
    docs = " ".join((Path(__file__).parents[1] / "docs" / "operators.md").read_text().split())
    sentence = re.search(r"`wait_for_completion=False`: the same keys, (.*?) being `None`", docs)
    assert sentence, "docs/operators.md no longer says which keys are None"
    assert set(re.findall(r"`(\w+)`", sentence.group(1))) == left_none == {
        "status", "res_url", "original_url", "output_path",
    }
