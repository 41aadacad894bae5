"""``make demo``: enhance a photo through Airflow against a local HitPaw sandbox, end to end.

1. starts the HitPaw sandbox in a process of its own (free port, random API key);
2. prepares an Airflow home in ``.airflow-demo/`` (SQLite, the example DAGs, no Airflow examples);
3. points the ``hitpaw_default`` connection at the sandbox (``AIRFLOW_CONN_HITPAW_DEFAULT``);
4. runs ``example_hitpaw_enhance_photo`` with ``airflow dags test`` (it defers: the trigger polls);
5. writes the enhanced photo and a before/after PNG to ``demo-output/`` (and a half-size copy of the
   PNG to ``docs/demo-before-after.png`` for the README);
6. prints the coins the sandbox charged, and stops the sandbox, also when something failed.

It exits non-zero when anything failed; Airflow's own output is shown only then (its last lines).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = PROJECT / ".airflow-demo"
OUTPUT_DIR = PROJECT / "demo-output"
DOCS_IMAGE = PROJECT / "docs" / "demo-before-after.png"
DAG_ID = "example_hitpaw_enhance_photo"
SAMPLE_PATH = "/samples/portrait.jpg"
MODEL = "face_2x"
STARTING_COINS = 100
TAIL_LINES = 60
AIRFLOW_TIMEOUT_SECONDS = 600

RUN_FINISHED = re.compile(r"DagRun Finished: dag_id=(?P<dag_id>[^,]+),.*?state=(?P<state>\w+)")


class DemoFailed(Exception):
    """A step failed; the message says which, the details were printed already."""


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def airflow_env(sandbox_url: str, api_key: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT / "example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
        AIRFLOW_CONN_HITPAW_DEFAULT=json.dumps(
            {"conn_type": "hitpaw", "host": sandbox_url, "password": api_key}
        ),
        PYTHONWARNINGS="ignore",
    )
    return env


def run_airflow(args: list[str], env: dict[str, str], log_name: str, secret: str) -> str:
    """Run an ``airflow`` command quietly; on failure print the tail of its output and raise."""
    airflow = Path(sys.executable).parent / "airflow"
    log_path = AIRFLOW_HOME / log_name
    try:
        done = subprocess.run(  # noqa: S603 - our own venv's airflow with fixed arguments
            [str(airflow), *args], env=env, capture_output=True, text=True, timeout=AIRFLOW_TIMEOUT_SECONDS,
            cwd=PROJECT,
        )
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        output = f"{err.stdout or ''}{err.stderr or ''}\n(timed out after {AIRFLOW_TIMEOUT_SECONDS} s)"
        output, code = output if isinstance(output, str) else str(output), -1
    output = output.replace(secret, "***")
    log_path.write_text(output, encoding="utf-8")
    if code != 0:
        print_tail(output, f"airflow {' '.join(args[:2])} exited with {code}", log_path)
        raise DemoFailed(f"airflow {' '.join(args[:2])} failed")
    return output


def print_tail(output: str, headline: str, log_path: Path) -> None:
    lines = output.splitlines()[-TAIL_LINES:]
    print(f"!!! {headline}; the last {len(lines)} lines (all of it in {log_path}):", file=sys.stderr)
    for line in lines:
        print(f"    {line}", file=sys.stderr)


def check_run(output: str, log_path: Path) -> None:
    finished = [m for m in RUN_FINISHED.finditer(output) if m["dag_id"] == DAG_ID]
    if not finished or finished[-1]["state"] != "success":
        state = finished[-1]["state"] if finished else "unknown (no 'DagRun Finished' line)"
        print_tail(output, f"the DAG run ended in state {state}", log_path)
        raise DemoFailed(f"{DAG_ID} did not succeed")
    if "Pausing task as DEFERRED" not in output:
        print_tail(output, "the task never deferred", log_path)
        raise DemoFailed("the operator did not defer")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the sandbox's http:// URL
        return response.read()


def side_by_side(before_path: Path, after_path: Path, target: Path) -> tuple[str, str]:
    """A PNG with the photo before (scaled to the result's size) and after, each labelled with its size."""
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(before_path) as before_file, Image.open(after_path) as after_file:
        before, after = before_file.convert("RGB"), after_file.convert("RGB")
    labels = (f"before {before.width}x{before.height}", f"after {after.width}x{after.height}")
    shown_before = before.resize(after.size, Image.Resampling.BICUBIC)
    band, gap = 72, 16
    canvas = Image.new("RGB", (after.width * 2 + gap, after.height + band), "white")
    canvas.paste(shown_before, (0, band))
    canvas.paste(after, (after.width + gap, band))
    draw = ImageDraw.Draw(canvas)
    try:
        font: Any = ImageFont.load_default(size=40)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for index, label in enumerate(labels):
        draw.text((index * (after.width + gap) + 20, 14), label, fill="black", font=font)
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, optimize=True)
    return labels


def save_for_docs(comparison: Path, target: Path) -> None:
    """The comparison at half size for the README (the full one weighs about 3 MB)."""
    from PIL import Image

    target.parent.mkdir(exist_ok=True)
    with Image.open(comparison) as image:
        image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(target, optimize=True)


def the_one_result(output_dir: Path) -> Path:
    """The one file the DAG wrote to ``output_dir``, renamed ``enhanced<suffix>``."""
    results = [p for p in output_dir.iterdir() if p.is_file()]
    if len(results) != 1:
        raise DemoFailed(f"expected one result in {output_dir}, found {[p.name for p in results]}")
    enhanced = output_dir / f"enhanced{results[0].suffix}"
    results[0].rename(enhanced)
    return enhanced


def spent(sandbox: Any) -> tuple[int, int]:
    """The jobs the sandbox was sent and the coins it charged."""
    stats = sandbox.stats()
    return len(stats["submissions"]), sum(stats["coins_charged_by_key"].values())


def print_done(started: float, jobs: int, coins: int, outputs: dict[str, Path | str]) -> None:
    """The closing lines: the time taken, what was spent, and where each output is (a path is shown
    relative to the project)."""
    print()
    print(f"Done in {time.monotonic() - started:.0f} s. {jobs} HitPaw job, {coins} coins spent (sandbox).")
    for label, where in outputs.items():
        print(f"  {label:<14} : {where.relative_to(PROJECT) if isinstance(where, Path) else where}")


def main() -> int:
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    started = time.monotonic()
    api_key = "demo-" + secrets.token_urlsafe(18)
    AIRFLOW_HOME.mkdir(exist_ok=True)
    OUTPUT_DIR.mkdir(exist_ok=True)
    for old in OUTPUT_DIR.iterdir():
        if old.is_file():
            old.unlink()

    step("Starting the HitPaw sandbox (its own process, a free port, a random API key)")
    sandbox = start_sandbox_process(api_keys={api_key: STARTING_COINS}, job_seconds=2.0)
    try:
        print(f"    sandbox at {sandbox.base_url}")
        env = airflow_env(sandbox.base_url, api_key)

        step(f"Preparing the Airflow home in {AIRFLOW_HOME.relative_to(PROJECT)}/ (airflow db migrate)")
        run_airflow(["db", "migrate"], env, "db-migrate.log", api_key)

        step(f"Running {DAG_ID} with 'airflow dags test' (deferrable: the trigger waits)")
        conf = json.dumps({"output_dir": str(OUTPUT_DIR), "model_name": MODEL})
        output = run_airflow(["dags", "test", DAG_ID, "-c", conf], env, "dags-test.log", api_key)
        check_run(output, AIRFLOW_HOME / "dags-test.log")

        enhanced = the_one_result(OUTPUT_DIR)

        step("Drawing the before/after comparison")
        before = OUTPUT_DIR / f"before{Path(SAMPLE_PATH).suffix}"
        before.write_bytes(fetch(sandbox.url(SAMPLE_PATH)))
        comparison = OUTPUT_DIR / "before-after.png"
        labels = side_by_side(before, enhanced, comparison)
        save_for_docs(comparison, DOCS_IMAGE)

        jobs, coins = spent(sandbox)
    except DemoFailed as err:
        print(f"!!! demo failed: {err}", file=sys.stderr)
        return 1
    finally:
        sandbox.stop()

    print_done(started, jobs, coins, {
        "enhanced photo": enhanced,
        "before/after": f"{comparison.relative_to(PROJECT)}  ({labels[0]} / {labels[1]})",
        "README image": DOCS_IMAGE,
        "Airflow logs": AIRFLOW_HOME / "dags-test.log",
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
