"""Run the benchmarks: ``python -m bench.run [--quick | --smoke] [--only NAME ...] [--write FILE]``.

Every benchmark measures its own baseline in the same run and prints the ratio. A missed target is
reported, never an error: the exit code is 1 only when a benchmark itself broke.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import (
    bench_batch,
    bench_download,
    bench_hook,
    bench_parse,
    bench_ratelimit,
    bench_triggers,
    bench_upload,
    worker_slots,
)
from bench.common import BenchResult, machine_info, start_sandbox, table_lines

NAMES = ("triggers", "hook", "download", "upload", "ratelimit", "parse", "worker_slots", "batch")
ANALYSIS_START = "<!-- analysis: kept by bench/run.py when it rewrites this file -->"
ANALYSIS_END = "<!-- end analysis -->"


def run_one(name: str, size: str, sandbox: Any) -> BenchResult:
    def pick(module: Any) -> Any:
        return getattr(module, size.upper())

    if name == "triggers":
        return bench_triggers.run(sandbox, pick(bench_triggers))
    if name == "hook":
        return bench_hook.run(sandbox, **pick(bench_hook))
    if name == "download":
        return bench_download.run(sandbox, **pick(bench_download))
    if name == "upload":
        return bench_upload.run(sandbox, **pick(bench_upload))
    if name == "ratelimit":
        return bench_ratelimit.run(sandbox, pick(bench_ratelimit))
    if name == "parse":
        return bench_parse.run(**pick(bench_parse))
    if name == "worker_slots":
        return worker_slots.run(**pick(worker_slots))
    if name == "batch":
        return bench_batch.run(**pick(bench_batch))
    raise ValueError(name)


def run_all(names: list[str], size: str) -> tuple[list[BenchResult], list[str]]:
    results: list[BenchResult] = []
    broken: list[str] = []
    sandbox = start_sandbox() if set(names) - {"parse", "worker_slots", "batch"} else None
    try:
        for name in names:
            print(f"== {name} ({size})", flush=True)
            started = time.perf_counter()
            try:
                result = run_one(name, size, sandbox)
            except Exception:
                traceback.print_exc()
                broken.append(name)
                continue
            result.seconds = time.perf_counter() - started
            results.append(result)
    finally:
        if sandbox is not None:
            sandbox.stop()
    return results, broken


def write_markdown(path: Path, results: list[BenchResult], command: str, seconds: float) -> None:
    info = machine_info()
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    analysis = ""
    if ANALYSIS_START in old and ANALYSIS_END in old:
        analysis = old[old.index(ANALYSIS_START): old.index(ANALYSIS_END) + len(ANALYSIS_END)]
    lines = [
        "# Benchmarks",
        "",
        f"Run on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} minutes. "
        f"Rerun with `{command}` (full run; `make bench-quick` is the short CI variant, which does "
        "not write this file).",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "Each benchmark measures its baseline in the same run; ratios are ours / baseline. The sandbox "
        "(`airflow_provider_hitpaw.sandbox`) runs in a process of its own.",
        "",
        *table_lines(results, markdown=True),
        "",
        "## Notes",
        "",
        *[f"- **{r.name}** ({r.seconds:.0f} s): {note}" for r in results for note in r.notes],
        "",
    ]
    if analysis:
        lines += [analysis, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the short CI variant (under three minutes)")
    size.add_argument("--smoke", action="store_true", help="the tiniest configuration (tests)")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only this benchmark (repeatable)")
    parser.add_argument("--write", type=Path, help="write the results to this Markdown file")
    args = parser.parse_args(argv)
    size_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    names = [n for n in NAMES if not args.only or n in args.only]

    started = time.perf_counter()
    results, broken = run_all(names, size_name)
    seconds = time.perf_counter() - started
    print()
    print("\n".join(table_lines(results)))
    for result in results:
        for note in result.notes:
            print(f"* {result.name}: {note}")
    print(f"\n{size_name} run took {seconds:.0f} s")
    if args.write:
        command = "make bench" if size_name == "full" and not args.only else shlex.join(
            ["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])])
        write_markdown(args.write, results, command, seconds)
        print(f"wrote {args.write}")
    if broken:
        print(f"BROKEN benchmarks: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
