"""The first hour in Airflow's UI, in a real browser: a HitPaw connection added through the form, its
Test button (the right key and a wrong one), the example DAG triggered from its params form, the task
DEFERRED then successful, and the "HitPaw result" link serving the enhanced photo at twice the size.

A real Airflow (scheduler, triggerer, DAG processor, API server as separate processes; see
``tests/support/deployment.py``) against the HitPaw sandbox, driven by headless Chromium. Screenshots of
every step go to ``test-artifacts/ui/`` (``HITPAW_UI_ARTIFACTS`` moves it). Runs on Airflow 3.3+ only:
it follows that UI (the Test button on the connection list, the extras as form fields).
"""

from __future__ import annotations

import json
import time
import urllib.request
from io import BytesIO

import pytest

from airflow_provider_hitpaw.connection_fields import TEST_BUTTON_PORT, port_needed_by_test_button
from airflow_provider_hitpaw.version_compat import AIRFLOW_V_3_3_PLUS
from tests.support.deployment import EXAMPLE_DAGS, Deployment, RunWatch
from tests.support.ui_browser import AirflowUi, artifacts_dir, chromium_path, launch

# About 2.5 minutes; the bounds leave room for a loaded machine.
pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

DAG_ID = "example_hitpaw_enhance_photo"
TASK_ID = "enhance_photo"
RIGHT_KEY = "ui-test-key-0123"
#: Long enough for the UI to show DEFERRED, short enough for the test's four minutes.
JOB_SECONDS = 6


@pytest.fixture(scope="module")
def browser_available() -> None:
    if not AIRFLOW_V_3_3_PLUS:
        pytest.skip("the browser test follows Airflow 3.3's UI (Test button on the connection list, "
                    "extras as form fields); CI runs it on the newest Airflow")
    if chromium_path() is None:
        pytest.skip("no chromium on PATH: install Debian's chromium package (.ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the 'system' extra)")


def test_the_first_hour_in_airflows_ui(browser_available, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from airflow_provider_hitpaw.sandbox import start_sandbox

    started = time.monotonic()
    artifacts = artifacts_dir()
    for old in artifacts.glob("*.png"):
        old.unlink()
    output_dir = tmp_path / "results"
    timings: dict[str, float] = {}
    with start_sandbox(api_keys={RIGHT_KEY: 100}, job_seconds=JOB_SECONDS) as sandbox, Deployment(
        dag_files=[EXAMPLE_DAGS / f"{DAG_ID}.py"],
        env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
        deadline_seconds=390,
    ) as airflow, sync_playwright() as playwright:
        airflow.wait_for_dags([DAG_ID])
        timings["airflow_up"] = time.monotonic() - started
        browser = launch(playwright)
        ui = AirflowUi(browser.new_page(viewport={"width": 1400, "height": 1000}), airflow.base_url, artifacts)

        # 1. The connection form: the provider's labels, hints and (where the Test button needs it) port.
        form = ui.open_add_connection("hitpaw_default", "HitPaw")
        for label in ("Base URL", "API Key"):
            assert form.get_by_text(label, exact=True).is_visible()
        assert form.locator("input[name=host]").get_attribute("placeholder") == "https://api-base.hitpaw.com"
        form.locator("input[name=password]").fill(RIGHT_KEY)
        if port_needed_by_test_button():
            assert form.get_by_text("Port (for the Test button)", exact=True).is_visible()
            form.locator("input[name=port]").fill(str(TEST_BUTTON_PORT))
        else:
            assert form.locator("input[name=port]").count() == 0
        for extra in ("connect_timeout", "read_timeout", "download_timeout", "max_attempts", "max_retry_seconds"):
            assert form.locator(f"input[name=element_{extra}]").count() == 1  # under "Extra Fields"
        ui.shot("connection-form", element=form)  # the README's picture: the Base URL left to its default
        form.locator("input[name=host]").fill(sandbox.base_url)
        ui.save(form)

        wrong = ui.open_add_connection("hitpaw_wrong_key", "HitPaw")  # saved without the port at first
        wrong.locator("input[name=host]").fill(sandbox.base_url)
        wrong.locator("input[name=password]").fill("not-the-key-42")
        ui.save(wrong)

        # 2. The Test button, with the right key and a wrong one.
        title, message = ui.test_connection("hitpaw_default")
        ui.shot("test-connection-success")
        assert (title, message) == (
            "Test Connection Successful", f"Connection to {sandbox.base_url} works: the API key was accepted",
        )
        if port_needed_by_test_button():
            # What the port works around, and the way out the docs give: Edit, Port 443, Save, Test.
            title, message = ui.test_connection("hitpaw_wrong_key")
            ui.shot("test-connection-without-port")
            assert (title, message) == ("Test Connection Failed", "Bad Request")
            ui.edit_connection("hitpaw_wrong_key", {"port": str(TEST_BUTTON_PORT)})
        title, message = ui.test_connection("hitpaw_wrong_key")
        ui.shot("test-connection-wrong-key")
        assert (title, message) == (
            "Test Connection Failed", "HitPaw refused the API key: api_key is not valid (HTTP 400, code 110400000)",
        )
        assert sandbox.stats()["jobs_total"] == 0  # testing costs nothing

        # 3. The example DAG from its params form.
        trigger_form = ui.open_trigger_form(DAG_ID)
        trigger_form.locator("[name=element_output_dir]").fill(str(output_dir))
        ui.shot("trigger-form", element=trigger_form)
        triggered = time.monotonic()
        run_id = ui.submit_trigger_form(trigger_form)
        airflow.unpause(DAG_ID)  # a new DAG is paused; the form's "unpause on trigger" box may be off

        # 4. DEFERRED (the trigger waits, no worker slot held), then successful.
        task_page = ui.task_url(DAG_ID, run_id, TASK_ID)
        timings["to_deferred"] = ui.wait_for_state(task_page, "Deferred", timeout=120)
        ui.shot("task-deferred")
        timings["deferred_to_success"] = ui.wait_for_state(task_page, "Success", timeout=120)
        timings["trigger_to_success"] = time.monotonic() - triggered
        ui.shot("task-success")

        # 5. The "HitPaw result" link opens the enhanced photo: twice the sample's size.
        result_url = ui.extra_link(task_page, "HitPaw result")
        ui.shot("extra-link")
        with urllib.request.urlopen(result_url, timeout=30) as reply:
            result = Image.open(BytesIO(reply.read()))
        with urllib.request.urlopen(sandbox.url("/samples/portrait.jpg"), timeout=30) as reply:
            sample = Image.open(BytesIO(reply.read()))
        assert result.size == (2 * sample.size[0], 2 * sample.size[1]), (result.size, sample.size)
        assert [p.suffix for p in output_dir.iterdir()] == [".jpg"]
        assert sandbox.stats()["jobs_total"] == 1
        browser.close()

        first_poll = _first_poll_lag(airflow.trigger_logs(RunWatch(dag_id=DAG_ID, run_id=run_id), TASK_ID))
        if first_poll is not None:
            timings["trigger_start_to_first_poll"] = first_poll
    timings["total"] = time.monotonic() - started
    (artifacts / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))
    assert len(list(artifacts.glob("*.png"))) == 7 + port_needed_by_test_button()


def _first_poll_lag(logs: dict[int, str]) -> float | None:
    """Seconds from "trigger ... starting" to the trigger's first "HitPaw job ... is" line."""
    from datetime import datetime

    for text in logs.values():
        start = first = None
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event = str(entry.get("event", ""))
            stamp = datetime.fromisoformat(str(entry.get("timestamp")).replace("Z", "+00:00"))
            if start is None and event.startswith("trigger ") and event.endswith("starting"):
                start = stamp
            elif start is not None and event.startswith("HitPaw job "):
                first = stamp
                break
        if start is not None and first is not None:
            return (first - start).total_seconds()
    return None
