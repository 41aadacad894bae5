"""System-test DAG: N photos enhanced by mapped, deferrable ``EnhancePhotoOperator`` tasks, each result
copied to the ``output_dir`` folder, with a retry as a user would set one.

Params: ``img_urls``, ``output_dir`` and ``hold_dir``. With ``hold_dir`` set, the first try of each task,
once its submission is made and remembered, writes ``held-<map index>`` there (with its process id) and
waits until a file ``release`` appears before it defers: the window in which a test kills the worker
holding a task "that has submitted and is about to defer". Later tries do not wait.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator

#: A held task gives up waiting for ``release`` after this long and defers anyway.
HOLD_SECONDS = 240


class HoldBeforeDeferOperator(EnhancePhotoOperator):
    """EnhancePhotoOperator whose first try can be held between its submission and its deferral."""

    _hold: tuple[Path, str] | None = None

    def execute(self, context: Any) -> Any:
        hold_dir = (context["params"] or {}).get("hold_dir")
        ti = context["ti"]
        self._hold = (Path(hold_dir), f"held-{ti.map_index}") if hold_dir and ti.try_number == 1 else None
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._hold is not None:
            folder, marker = self._hold
            (folder / marker).write_text(str(os.getpid()), encoding="ascii")
            end = time.monotonic() + HOLD_SECONDS
            while not (folder / "release").exists() and time.monotonic() < end:
                time.sleep(0.2)
        return super().defer(**kwargs)


with DAG(
    dag_id="system_hitpaw_fleet",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["test", "system"],
    params={
        "img_urls": Param([], type="array", items={"type": "string"}),
        "output_dir": Param("/tmp/hitpaw-system", type="string"),
        "hold_dir": Param(None, type=["null", "string"]),
    },
) as dag:

    @task
    def photo_urls(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["img_urls"])

    HoldBeforeDeferOperator.partial(
        task_id="enhance_photo",
        model_name="face_2x",
        output_path="{{ params.output_dir }}/",
        deferrable=True,
        poll_interval=1,
        timeout=20 * 60,
        retries=1,
        retry_delay=timedelta(seconds=1),
        map_index_template="{{ task.photo_label }}",
    ).expand(img_url=photo_urls())
