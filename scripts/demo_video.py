"""``make demo-video``: enhance a video through Airflow against a local HitPaw sandbox, end to end.

Like ``make demo`` (``scripts/demo.py``, whose steps it reuses), with ``example_hitpaw_enhance_video``:
the sandbox's sample clip (160x120, 3 s at 12 fps) made 320x240 by ``general_restore_2x``, waiting in
the triggerer. It writes the result and the first frame of the video before and after, side by side,
to ``demo-output/``, and prints the coins the sandbox charged (HitPaw's price: 10 coins a second).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo  # scripts/demo.py, next to this file

DAG_ID = "example_hitpaw_enhance_video"
SAMPLE_PATH = "/samples/clip.mp4"
RESOLUTION = [320, 240]
STARTING_COINS = 100
DOCS_IMAGE = demo.PROJECT / "docs" / "demo-video-before-after.png"


def first_frame(video: Path, target: Path) -> Path:
    """The first frame of ``video`` as a PNG."""
    import av

    with av.open(str(video)) as container:
        frame = next(container.decode(container.streams.video[0]))
        frame.to_image().save(target)
    return target


def check_run(output: str, log_path: Path) -> None:
    finished = [m for m in demo.RUN_FINISHED.finditer(output) if m["dag_id"] == DAG_ID]
    if not finished or finished[-1]["state"] != "success" or "Pausing task as DEFERRED" not in output:
        demo.print_tail(output, "the DAG run did not succeed through a deferral", log_path)
        raise demo.DemoFailed(f"{DAG_ID} did not succeed")


def main() -> int:
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    started = time.monotonic()
    api_key = "demo-" + secrets.token_urlsafe(18)
    output_dir = demo.OUTPUT_DIR / "video"
    demo.AIRFLOW_HOME.mkdir(exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.iterdir():
        if old.is_file():
            old.unlink()

    demo.step("Starting the HitPaw sandbox (its own process, a free port, a random API key)")
    sandbox = start_sandbox_process(api_keys={api_key: STARTING_COINS}, job_seconds=2.0)
    try:
        env = demo.airflow_env(sandbox.base_url, api_key)
        demo.step(f"Preparing the Airflow home in {demo.AIRFLOW_HOME.relative_to(demo.PROJECT)}/ (airflow db migrate)")
        demo.run_airflow(["db", "migrate"], env, "db-migrate.log", api_key)

        demo.step(f"Running {DAG_ID} with 'airflow dags test' (deferrable: the trigger waits)")
        conf = json.dumps({"output_dir": str(output_dir), "resolution": RESOLUTION})
        log_name = "dags-test-video.log"
        output = demo.run_airflow(["dags", "test", DAG_ID, "-c", conf], env, log_name, api_key)
        check_run(output, demo.AIRFLOW_HOME / log_name)

        enhanced = demo.the_one_result(output_dir)

        demo.step("Drawing the first frame before and after")
        before = output_dir / "before.mp4"
        before.write_bytes(demo.fetch(sandbox.url(SAMPLE_PATH)))
        comparison = output_dir / "before-after.png"
        labels = demo.side_by_side(
            first_frame(before, output_dir / "before-frame.png"),
            first_frame(enhanced, output_dir / "after-frame.png"),
            comparison,
        )
        DOCS_IMAGE.write_bytes(comparison.read_bytes())

        jobs, coins = demo.spent(sandbox)
    except demo.DemoFailed as err:
        print(f"!!! demo failed: {err}", file=sys.stderr)
        return 1
    finally:
        sandbox.stop()

    demo.print_done(started, jobs, coins, {
        "enhanced video": enhanced,
        "first frames": f"{comparison.relative_to(demo.PROJECT)}  ({labels[0]} / {labels[1]})",
        "README image": DOCS_IMAGE,
        "Airflow logs": demo.AIRFLOW_HOME / log_name,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
