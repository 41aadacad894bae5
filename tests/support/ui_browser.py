"""Driving Airflow 3.3's UI in headless Chromium (Debian's ``chromium`` with the ``playwright`` package),
for ``tests/system/test_ui_browser.py``: what a user clicks, found the way a user finds it (roles,
labels, field names), and a screenshot of every step in :func:`artifacts_dir`.

The browser is the system's Chromium (``executable_path``), never one Playwright downloads; it runs with
``--no-sandbox`` (CI runs as root) and without background networking, updates or sync.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

PROJECT = Path(__file__).resolve().parents[2]
#: Where the screenshots go (``make test-system`` keeps them for CI); ``HITPAW_UI_ARTIFACTS`` moves it.
DEFAULT_ARTIFACTS = PROJECT / "test-artifacts" / "ui"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 1400, "height": 1000}
#: The longest a single UI action may wait (a page, a dialog, a toast).
ACTION_TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("HITPAW_UI_ARTIFACTS") or DEFAULT_ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class AirflowUi:
    """One browser page on an Airflow 3.3 UI; ``shot(name)`` saves ``<artifacts>/<nn>-<name>.png``.

    :param page: a Playwright page.
    :param base_url: the Airflow API server, e.g. ``http://127.0.0.1:8080``.
    :param artifacts: the folder for screenshots.
    """

    def __init__(self, page: Any, base_url: str, artifacts: Path) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.artifacts = artifacts
        self.shots: list[Path] = []
        page.set_default_timeout(ACTION_TIMEOUT_MS)

    def shot(self, name: str, element: Any = None) -> Path:
        path = self.artifacts / f"{len(self.shots) + 1:02d}-{name}.png"
        (element or self.page).screenshot(path=str(path))
        self.shots.append(path)
        return path

    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path, wait_until="domcontentloaded")

    # --- connections ------------------------------------------------------------------------------

    def open_add_connection(self, conn_id: str, conn_type_label: str) -> Any:
        """The Add Connection dialog with its id and type chosen; returns the dialog."""
        self.open("/connections")
        self.page.get_by_role("button", name="Add Connection").click()
        dialog = self.page.locator("[role=dialog][data-scope=dialog][data-state=open]")
        dialog.locator("input[name=connection_id]").fill(conn_id)
        picker = dialog.locator("input[role=combobox]")
        picker.click()
        picker.fill(conn_type_label)
        self.page.get_by_role("option", name=conn_type_label, exact=True).click()
        dialog.locator("input[name=password]").wait_for()
        return dialog

    @staticmethod
    def save(dialog: Any) -> None:
        dialog.get_by_role("button", name="Save").click()
        dialog.wait_for(state="hidden")

    def edit_connection(self, conn_id: str, fields: dict[str, str]) -> None:
        """Open a connection's Edit dialog from its row, fill ``{input name: value}`` and save."""
        self.open("/connections")
        self.page.mouse.move(0, 0)
        self.page.locator("tbody tr", has_text=conn_id).get_by_role("button", name="Edit Connection").click()
        dialog = self.page.locator("[role=dialog][data-scope=dialog][data-state=open]")
        for name, value in fields.items():
            dialog.locator(f"input[name={name}]").fill(value)
        self.save(dialog)

    def test_connection(self, conn_id: str) -> tuple[str, str]:
        """Click the Test button of a connection's row; ``(title, message)`` of the toast it shows."""
        self.open("/connections")
        self.page.mouse.move(0, 0)  # no tooltip of an earlier row over this one
        row = self.page.locator("tbody tr", has_text=conn_id)
        row.get_by_role("button", name="Test Connection").click()
        toast = self.page.locator("[data-scope=toast][data-part=root]", has_text=re.compile("Test Connection"))
        toast.first.wait_for()
        title = toast.first.locator("[data-part=title]").inner_text().strip()
        message = toast.first.locator("[data-part=description]").inner_text().strip()
        return title, message

    # --- DAG runs ---------------------------------------------------------------------------------

    def open_trigger_form(self, dag_id: str) -> Any:
        self.open(f"/dags/{dag_id}")
        self.page.get_by_role("button", name="Trigger Dag").click()
        dialog = self.page.locator("[role=dialog][data-scope=dialog][data-state=open]")
        dialog.get_by_text("Run Parameters").wait_for()
        return dialog

    def submit_trigger_form(self, dialog: Any) -> str:
        """Press Trigger; the run id of the page the UI moves to."""
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        dialog.wait_for(state="hidden")
        self.page.wait_for_url(re.compile(r".*/runs/[^/]+"))
        return unquote(re.search(r"/runs/([^/?#]+)", self.page.url).group(1))  # type: ignore[union-attr]

    def task_url(self, dag_id: str, run_id: str, task_id: str) -> str:
        return f"/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"

    def wait_for_state(self, path: str, state: str, timeout: float, refresh_every: float = 10.0,
                       on_poll: Callable[[], None] | None = None) -> float:
        """Watch a task instance's page until its badge reads ``state``; seconds it took. The page
        refreshes itself while the run is active; it is reloaded every ``refresh_every`` s too."""
        started = time.monotonic()
        deadline = started + timeout
        badge = self.page.get_by_text(state, exact=True)
        while True:
            self.open(path)
            try:
                badge.first.wait_for(timeout=refresh_every * 1000)
                return time.monotonic() - started
            except Exception:  # not yet: reload and look again, until the deadline
                if on_poll is not None:
                    on_poll()
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        f"{path} did not show {state!r} within {timeout:.0f} s; it shows: "
                        f"{self.page.locator('main, body').first.inner_text()[:500]!r}"
                    ) from None

    def extra_link(self, path: str, name: str) -> str:
        """The URL of a task instance's extra link, from its Details tab."""
        self.open(path)
        self.page.get_by_text("Details", exact=True).click()
        link = self.page.get_by_role("link", name=name)
        link.wait_for()
        href = link.get_attribute("href")
        assert href, f"the {name!r} link has no address"
        return href


def launch(playwright: Any) -> Any:
    """The system Chromium, headless, with the background-networking flags off."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS), headless=True)
