"""Chaos DAG: four photos, two waited for in the worker and two deferred, each with its own img_url.

Used by ``bench/chaos_run.py`` (``make chaos``) and ``tests/test_chaos.py`` through ``dag.test()``. Each
try of each task appends its outcome to the JSON-lines file named by ``$HITPAW_CHAOS_OUTCOMES``, so the
run can be judged against the sandbox's records. Retries are on, as a user would have them.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_hitpaw.errors import HitPawJobFailedError, HitPawSubmitOutcomeUnknownError
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.version_compat import TaskDeferred


class ChaosEnhancePhotoOperator(EnhancePhotoOperator):
    """EnhancePhotoOperator that writes down how each try ended."""

    def _write(self, context: Any, **entry: Any) -> None:
        path = os.environ.get("HITPAW_CHAOS_OUTCOMES")
        if not path:
            return
        entry.update(
            token=context["dag_run"].conf.get("token"),
            task_id=self.task_id,
            try_number=context["ti"].try_number,
            mode="deferred" if self.deferrable else "sync",
            img_url=self.img_url,
            model=self.model_name,
        )
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def _outcome(self, context: Any, call: Any) -> Any:
        try:
            result = call()
        except TaskDeferred:
            raise
        except BaseException as err:
            ti = context["ti"]
            entry: dict[str, Any] = {
                "outcome": "error", "error_class": type(err).__name__, "error": str(err)[:500],
                "job_id": ti.xcom_pull(task_ids=self.task_id, key="job_id") or getattr(err, "job_id", None),
                "coins": ti.xcom_pull(task_ids=self.task_id, key="consume_coins"),
            }
            if isinstance(err, HitPawSubmitOutcomeUnknownError):
                entry.update(outcome="outcome_unknown", error_img_url=err.img_url, error_model=err.model_name)
            elif isinstance(err, HitPawJobFailedError):
                entry["outcome"] = "job_failed"
            self._write(context, **entry)
            raise
        coins = result["consume_coins"]
        if coins is None:  # dag.test() drops defer()'s kwargs on resume: read what the task pushed
            coins = context["ti"].xcom_pull(task_ids=self.task_id, key="consume_coins")
        self._write(context, outcome="success", job_id=result["job_id"], coins=coins,
                    res_url=result["res_url"], output_path=result["output_path"])
        return result

    def execute(self, context: Any) -> Any:
        return self._outcome(context, lambda: super(ChaosEnhancePhotoOperator, self).execute(context))

    def execute_complete(self, context: Any, event: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._outcome(
            context, lambda: super(ChaosEnhancePhotoOperator, self).execute_complete(context, event, **kwargs)
        )


with DAG(
    dag_id="chaos_enhance",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test", "chaos"],
) as dag:
    for index, (model, deferrable) in enumerate(
        [("face_2x", False), ("general_2x", False), ("face_2x", True), ("sharpen_denoise", True)]
    ):
        ChaosEnhancePhotoOperator(
            task_id=f"enhance_{'deferred' if deferrable else 'sync'}_{index}",
            img_url=(
                "{{ conn.hitpaw_chaos.host }}/samples/portrait.jpg"
                "?chaos={{ dag_run.conf['token'] }}-{{ ti.task_id }}"
            ),
            model_name=model,
            extension=".jpg",
            hitpaw_conn_id="hitpaw_chaos",
            output_path="{{ dag_run.conf['output_dir'] }}/",
            deferrable=deferrable,
            poll_interval=1,
            timeout=45,
            max_consecutive_errors=8,
            retries=2,
            retry_delay=timedelta(0),
        )
