"""Test-only DAG for the deployment test: a ``TaskStatusSensor`` that starts in the triggerer.

``submit`` enhances the photo given as ``img_url`` in the run's conf without waiting; ``wait`` waits for
that job with ``start_from_trigger=True`` (Airflow 3.3+): the scheduler defers it straight away, the
triggerer renders its ``job_id`` template, and a worker only runs ``execute_complete``. ``check`` makes
sure the sensor's XCom names the result. ``wait_in_worker`` is the control: the same wait, started in a
worker that defers it (its worker log shows the deferral that ``wait``'s must not show).

``wait``'s template pulls with ``map_indexes=-1``: Airflow 3.3.2's triggerer cannot answer a plain
``ti.xcom_pull(task_ids=..., key=...)`` (the Task SDK sends ``GetXComSequenceSlice`` for it, which the
triggerer's supervisor does not decode: "Unable to decode message", no reply), so rendering such a
template would hang until the trigger times out. The sensor therefore ignores ``start_from_trigger``
for such a template (with a warning): ``wait_plain_xcom_pull`` shows that it then starts in a worker,
defers from there and succeeds.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_hitpaw.links.hitpaw import RES_URL_XCOM_KEY
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.sensors.hitpaw import TaskStatusSensor

DAG_ID = "hitpaw_deployment_start_from_trigger"
#: Rendered in the worker (``wait_in_worker``, ``check``) or, with ``map_indexes``, in the triggerer.
JOB_ID = "{{ ti.xcom_pull(task_ids='submit', key='job_id') }}"
JOB_ID_FOR_TRIGGERER = "{{ ti.xcom_pull(task_ids='submit', key='job_id', map_indexes=-1) }}"
#: Seconds the witness of the triggerer's xcom_pull bug waits before it is skipped.
PLAIN_XCOM_PULL_TIMEOUT = 120

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test", "hitpaw"],
) as dag:
    submit = EnhancePhotoOperator(
        task_id="submit",
        img_url="{{ dag_run.conf['img_url'] }}",
        model_name="face_2x",
        wait_for_completion=False,
    )
    wait = TaskStatusSensor(
        task_id="wait",
        job_id=JOB_ID_FOR_TRIGGERER,
        deferrable=True,
        start_from_trigger=True,
        poke_interval=1,
        timeout=120,
    )
    wait_in_worker = TaskStatusSensor(
        task_id="wait_in_worker",
        job_id=JOB_ID,
        deferrable=True,
        poke_interval=1,
        timeout=120,
    )
    wait_plain_xcom_pull = TaskStatusSensor(
        task_id="wait_plain_xcom_pull",
        job_id=JOB_ID,
        deferrable=True,
        start_from_trigger=True,
        poke_interval=1,
        timeout=PLAIN_XCOM_PULL_TIMEOUT,
    )

    @task
    def check(status: dict[str, Any], ti: Any = None) -> str:
        """The sensor's XCom: the job submitted by ``submit``, completed, with a result URL."""
        submitted = ti.xcom_pull(task_ids="submit", key="job_id")
        assert status["job_id"] == submitted, f"sensor waited for {status['job_id']!r}, submitted {submitted!r}"
        assert status["res_url"], f"no res_url in the sensor's XCom: {status}"
        res_url = ti.xcom_pull(task_ids="wait", key=RES_URL_XCOM_KEY)
        assert res_url == status["res_url"], f"res_url XCom {res_url!r} != {status['res_url']!r}"
        return status["res_url"]

    submit >> [wait, wait_in_worker, wait_plain_xcom_pull]
    check(wait.output)  # type: ignore[arg-type]  # an XComArg resolves to the dict at run time
