"""Every example DAG, in the worker and deferred, through ``dag.test()`` against the sandbox."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_hitpaw.events import MIN_POLL_INTERVAL_SECONDS
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.connections import SANDBOX_API_KEY
from tests.support.dag_files import load_dag

pytestmark = pytest.mark.dagtest

#: As fast as the operator and sensor allow (HitPaw's advice bounds them).
FAST_POLL = MIN_POLL_INTERVAL_SECONDS
EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"


def test_example_dags_never_name_a_local_address():
    for path in EXAMPLES.glob("*.py"):
        text = path.read_text()
        assert "localhost" not in text and "127.0.0.1" not in text, path.name


def configure(dag: Any, *, deferrable: bool) -> None:
    """Switch every HitPaw task of a loaded DAG between waiting in the worker and deferring."""
    for task in dag.tasks:
        partial = getattr(task, "partial_kwargs", None)
        if partial is not None:  # a mapped operator
            if "poll_interval" in partial:
                partial["poll_interval"] = FAST_POLL
            partial["deferrable"] = deferrable
            continue
        if hasattr(task, "poll_interval"):
            task.poll_interval = FAST_POLL
        if hasattr(task, "poke_interval") and task.task_type == "TaskStatusSensor":
            task.poke_interval = FAST_POLL
        if hasattr(task, "deferrable") and task.task_type in (
            "EnhancePhotoOperator", "TaskStatusSensor", "EnhancePhotoBatchOperator"
        ):
            task.deferrable = deferrable


def states(dag_run: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = session.merge(dag_run)
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }


@pytest.fixture
def hitpaw_default(monkeypatch, sandbox) -> Any:
    monkeypatch.setenv(
        "AIRFLOW_CONN_HITPAW_DEFAULT",
        json.dumps({"conn_type": "hitpaw", "host": sandbox.base_url, "password": SANDBOX_API_KEY}),
    )
    return sandbox


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id, XComModel.key == key, XComModel.map_index == map_index,
            )
        ).first()
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def submissions(sandbox: Any) -> int:
    return len(sandbox.stats()["submissions"])


def coins_charged(sandbox: Any) -> int:
    return sum(sandbox.stats()["coins_charged_by_key"].values())


MODES = [pytest.param(False, id="worker"), pytest.param(True, id="deferred")]


@pytest.mark.parametrize("deferrable", MODES)
def test_enhance_photo(airflow_db, hitpaw_default, tmp_path, deferrable):
    dag = load_dag(airflow_db, "example_hitpaw_enhance_photo.py", "example_hitpaw_enhance_photo")
    configure(dag, deferrable=deferrable)
    run = dag.test(run_conf={"output_dir": str(tmp_path / "results")})
    assert str(run.state) == "success", states(run)
    (copied,) = list((tmp_path / "results").iterdir())
    assert copied.stat().st_size > 0
    assert submissions(hitpaw_default) == 1


@pytest.mark.parametrize("deferrable", MODES)
def test_batch(airflow_db, hitpaw_default, deferrable):
    dag = load_dag(airflow_db, "example_hitpaw_batch.py", "example_hitpaw_batch")
    configure(dag, deferrable=deferrable)
    run = dag.test()
    assert str(run.state) == "success", states(run)
    result = states(run)
    assert [k for k in result if k.startswith("enhance_photo[")] == [
        "enhance_photo[0]", "enhance_photo[1]", "enhance_photo[2]"
    ] or len([k for k in result if k.startswith("enhance_photo[")]) == 3
    assert result["report"] == "success"
    assert submissions(hitpaw_default) == 3
    assert coins_charged(hitpaw_default) > 0
    # The coins the DAG reports are the coins the sandbox charged, in both modes (the deferred
    # resume must not lose them, even where dag.test() drops defer()'s kwargs).
    assert xcom_value(run, "report")["coins"] == coins_charged(hitpaw_default)


@pytest.mark.parametrize("deferrable", MODES)
def test_batch_folder_enhances_the_folder_once_and_announces_the_asset(airflow_db, hitpaw_default, deferrable):
    import shutil

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.support.airflow_home import BATCH_FOLDER_OUTPUT

    output = BATCH_FOLDER_OUTPUT  # the session's (see airflow_home): emptied, so the first run pays
    shutil.rmtree(output, ignore_errors=True)
    dag = load_dag(airflow_db, "example_hitpaw_batch_folder.py", "example_hitpaw_batch_folder")
    configure(dag, deferrable=deferrable)
    run = dag.test()
    assert str(run.state) == "success", states(run)
    summary = xcom_value(run, "enhance_new_photos")
    assert summary["counts"] == {"enhanced": 1}
    assert summary["coins"] == coins_charged(hitpaw_default) > 0
    (result,) = output.glob("portrait-*.jpg")
    assert result.stat().st_size > 0
    with create_session() as session:
        extras = [e.extra for e in session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run.run_id))]
    assert extras and extras[-1]["counts"] == {"enhanced": 1}

    again = dag.test(logical_date=run.logical_date + timedelta(days=1))
    assert str(again.state) == "success", states(again)
    assert xcom_value(again, "enhance_new_photos")["counts"] == {"existing": 1}
    assert submissions(hitpaw_default) == 1


@pytest.mark.parametrize("deferrable", MODES)
def test_submit_then_sense(airflow_db, hitpaw_default, tmp_path, deferrable):
    dag = load_dag(airflow_db, "example_hitpaw_submit_then_sense.py", "example_hitpaw_submit_then_sense")
    configure(dag, deferrable=deferrable)
    run = dag.test(run_conf={"output_dir": str(tmp_path / "kept")})
    assert str(run.state) == "success", states(run)
    assert states(run) == {
        "photo_url": "success", "submit": "success", "wait_for_result": "success", "keep_result": "success"
    }
    assert len(list((tmp_path / "kept").iterdir())) == 1
    assert submissions(hitpaw_default) == 1


@pytest.mark.parametrize("deferrable", MODES)
def test_a_failed_job_fails_the_task_with_the_typed_error(airflow_db, hitpaw_default, tmp_path, deferrable,
                                                           caplog, capfd):
    hitpaw_default.set_faults(fail_job=1.0)
    dag = load_dag(airflow_db, "example_hitpaw_enhance_photo.py", "example_hitpaw_enhance_photo")
    configure(dag, deferrable=deferrable)
    run = dag.test(run_conf={"output_dir": str(tmp_path)})
    assert str(run.state) == "failed"
    assert states(run) == {"photo_url": "success", "enhance_photo": "failed"}
    out, err = capfd.readouterr()
    assert "HitPawJobFailedError" in caplog.text + out + err
    assert SANDBOX_API_KEY not in caplog.text + out + err
    assert submissions(hitpaw_default) == 1


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store (reconnecting on retry) needs Airflow 3.3+")
@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_retry_after_the_submission_reconnects_instead_of_paying_again(airflow_db, hitpaw_default, mode):
    dag_id = f"hitpaw_retry_after_submit_{mode}"
    dag = load_dag(airflow_db, "hitpaw_retry_after_submit.py", dag_id)
    run = dag.test()
    assert str(run.state) == "success", states(run)
    from airflow.utils.session import create_session

    with create_session() as session:
        (ti,) = session.merge(run).get_task_instances(session=session)
        assert ti.try_number == 2  # the first try did die
    stats = hitpaw_default.stats()
    assert len(stats["submissions"]) == 1
    charged = list(stats["coins_charged_by_key"].values())
    assert len(charged) == 1 and charged[0] == stats["submissions"][0].get("coins", charged[0])


# -- the sample photo's URL, from every form of the connection --------------------------------------

EXAMPLE_FILES = {
    "example_hitpaw_enhance_photo": ("example_hitpaw_enhance_photo.py", "enhance_photo"),
    "example_hitpaw_batch": ("example_hitpaw_batch.py", "enhance_photo"),
    "example_hitpaw_submit_then_sense": ("example_hitpaw_submit_then_sense.py", "submit"),
}


def connection_forms(sandbox: Any) -> dict[str, str]:
    """``AIRFLOW_CONN_HITPAW_DEFAULT`` values that all name the sandbox, in the ways users write them."""
    host, _, port = sandbox.base_url.rpartition(":")  # http://127.0.0.1, 41234
    return {
        "trailing_slash": json.dumps(
            {"conn_type": "hitpaw", "host": f"{sandbox.base_url}/", "password": SANDBOX_API_KEY}
        ),
        "port_field": json.dumps(
            {"conn_type": "hitpaw", "host": host, "port": int(port), "password": SANDBOX_API_KEY}
        ),
        # The URI form: the scheme goes percent-encoded into the host, the port into the port field.
        "uri": f"hitpaw://:{SANDBOX_API_KEY}@{quote(host, safe='')}:{port}",
    }


#: Every form on one example; each other example (its own copy of ``sample_photo_url``) with one form.
SAMPLE_URL_CASES = [
    ("example_hitpaw_enhance_photo", "trailing_slash"),
    ("example_hitpaw_enhance_photo", "port_field"),
    ("example_hitpaw_enhance_photo", "uri"),
    ("example_hitpaw_batch", "port_field"),
    ("example_hitpaw_submit_then_sense", "uri"),
]


@pytest.mark.parametrize(("dag_id", "form"), SAMPLE_URL_CASES)
def test_the_sample_photo_url_comes_from_the_hooks_base_url_whatever_the_connection_form(
    airflow_db, sandbox, monkeypatch, tmp_path, dag_id, form
):
    monkeypatch.setenv("AIRFLOW_CONN_HITPAW_DEFAULT", connection_forms(sandbox)[form])
    file_name, _ = EXAMPLE_FILES[dag_id]
    dag = load_dag(airflow_db, file_name, dag_id)
    configure(dag, deferrable=False)
    run = dag.test(run_conf={} if dag_id == "example_hitpaw_batch" else {"output_dir": str(tmp_path)})
    assert str(run.state) == "success", states(run)
    sample = sandbox.url("/samples/portrait.jpg")
    expected = [f"{sample}?copy={n}" for n in (1, 2, 3)] if dag_id == "example_hitpaw_batch" else [sample]
    assert sorted(s["img_url"] for s in sandbox.stats()["submissions"]) == expected


@pytest.mark.parametrize("dag_id", list(EXAMPLE_FILES))
def test_without_a_photo_against_the_real_hitpaw_the_example_fails_before_any_request(
    airflow_db, monkeypatch, tmp_path, caplog, capfd, dag_id
):
    # The documented connection for the real HitPaw: an API key, no host.
    monkeypatch.setenv("AIRFLOW_CONN_HITPAW_DEFAULT", json.dumps({"conn_type": "hitpaw", "password": "k"}))
    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

    def no_request(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a request to HitPaw was made")

    monkeypatch.setattr(HitPawHook, "enhance_photo", no_request)
    file_name, hitpaw_task = EXAMPLE_FILES[dag_id]
    dag = load_dag(airflow_db, file_name, dag_id)
    configure(dag, deferrable=False)
    run = dag.test(run_conf={} if dag_id == "example_hitpaw_batch" else {"output_dir": str(tmp_path)})
    assert str(run.state) == "failed"
    result = states(run)
    url_task = "photo_urls" if dag_id == "example_hitpaw_batch" else "photo_url"
    assert result[url_task] == "failed" and result[hitpaw_task] == "upstream_failed", result
    out, err = capfd.readouterr()
    param = "'img_urls' param" if dag_id == "example_hitpaw_batch" else "'img_url' param"
    assert "which serves no sample photo: pass your own public photo URL" in caplog.text + out + err
    assert param in caplog.text + out + err


# -- labels of mapped tasks --------------------------------------------------------------------------

#: A presigned-looking URL of the sandbox's sample, 700 characters long (the sandbox serves any query).
def long_sample_url(sandbox: Any, n: int = 1) -> str:
    url = sandbox.url(f"/samples/portrait.jpg?copy={n}&X-Amz-Signature=")
    return url + "a" * (700 - len(url))


def rendered_map_indexes(dag_run: Any, task_id: str) -> dict[int, str | None]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows: Any = session.execute(
            select(TaskInstance.map_index, TaskInstance.rendered_map_index).where(  # type: ignore[call-overload]
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id,  # type: ignore[arg-type]
                TaskInstance.task_id == task_id, TaskInstance.map_index >= 0,  # type: ignore[arg-type]
            )
        ).all()
    return dict(rows)  # type: ignore[arg-type]


@pytest.mark.parametrize("deferrable", MODES)
def test_batch_labels_its_tasks_with_the_file_name_not_the_long_signed_url(airflow_db, hitpaw_default, deferrable):
    urls = [long_sample_url(hitpaw_default, n) for n in (1, 2)]
    dag = load_dag(airflow_db, "example_hitpaw_batch.py", "example_hitpaw_batch")
    configure(dag, deferrable=deferrable)
    run = dag.test(run_conf={"img_urls": urls})
    assert str(run.state) == "success", states(run)
    assert rendered_map_indexes(run, "enhance_photo") == {0: "portrait.jpg", 1: "portrait.jpg"}
    assert sorted(s["img_url"] for s in hitpaw_default.stats()["submissions"]) == sorted(urls)


LONG_LABEL_DAG = """
import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

with DAG("hitpaw_test_long_label", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
    EnhancePhotoOperator.partial(
        task_id="enhance_photo", model_name="face_2x", poll_interval=1, retries=2,
        deferrable={deferrable!r},
        map_index_template="{{{{ task.img_url }}}}",  # a user's own label: the whole URL
    ).expand(img_url={urls!r})
"""


@pytest.mark.parametrize("deferrable", MODES)
def test_a_label_longer_than_airflow_stores_fails_the_task_before_paying(
    airflow_db, hitpaw_default, caplog, capfd, deferrable
):
    short = hitpaw_default.url("/samples/portrait.jpg?short=1")
    source = LONG_LABEL_DAG.format(deferrable=deferrable, urls=[long_sample_url(hitpaw_default), short])
    (airflow_db / "hitpaw_test_long_label.py").write_text(source)
    dag = load_dag(airflow_db, "hitpaw_test_long_label.py", "hitpaw_test_long_label")
    run = dag.test()
    result = states(run)
    assert result == {"enhance_photo[0]": "failed", "enhance_photo[1]": "success"}, result
    # Nothing paid for the photo whose label is too long, and no retry; the short one went through.
    assert [s["img_url"] for s in hitpaw_default.stats()["submissions"]] == [short]
    out, err = capfd.readouterr()
    assert "MapIndexTooLongError" in caplog.text + out + err
    assert "{{ task.photo_label }}" in caplog.text + out + err
    labels = rendered_map_indexes(run, "enhance_photo")
    assert labels[1] == short and labels[0] is not None and len(labels[0]) <= 250, labels
