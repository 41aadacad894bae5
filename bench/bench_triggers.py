"""Benchmark 1 -- trigger cost: K HitPaw triggers waiting at once in one event loop.

Each configuration runs the three clients of :mod:`bench.trigger_client` (ours, the bare shared
session loop, the HTTP provider's session-per-poll pattern) one after the other, each in a fresh
process, against one sandbox process; with several rounds the order alternates. Figures are the
medians over rounds.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from bench.common import BenchResult, Row, conn_env, median, run_json
from bench.http_pattern import pattern_name

MODES = ("ours", "bare", "session_per_poll")
# (K, poll interval in seconds, rounds[, span]). 10,000 at 10 s is 1,000 status requests a second.
# Jobs complete 1.5 to 1.5 + span intervals after they start (span 4 by default: about 4.5 polls per
# trigger, which weighs each trigger's start and its two INFO lines heavily). The last full config,
# span 20, is nearer real HitPaw jobs (minutes at a 5 s poll) and shows the steady per-poll cost.
FULL = [(1_000, 2.0, 2), (10_000, 10.0, 1), (1_000, 1.0, 1, 20.0)]
# Intervals of at least 1 s: the provider never polls faster (events.MIN_POLL_INTERVAL_SECONDS), and a
# baseline polling faster than "ours" would compare different loads.
QUICK = [(300, 1.0, 3)]
SMOKE = [(20, 1.0, 1)]

CPU_TARGET = 1.2
RSS_TARGET = 10 * 1024
SPP_MEASURED_BEFORE = 2.8
# Diagnostic run for these K: ours again with Airflow's log level at WARNING, which shows the share
# of the trigger's INFO line on each status change.
QUIET_DIAGNOSTIC_K = {1_000}


def run_client(sandbox: Any, mode: str, k: int, interval: float, seed: int,
               env: dict[str, str] | None = None, span: float = 4.0) -> dict[str, Any]:
    spec = {
        "mode": mode, "k": k, "interval": interval, "seed": seed, "span": span,
        "base_url": sandbox.base_url, "sandbox_pid": sandbox.process.pid,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(spec, handle)
        handle.flush()
        return run_json("trigger_client", handle.name, env={**conn_env(sandbox.base_url), **(env or {})},
                        timeout=60 + (span + 11) * interval)


def run(sandbox: Any, configs: list[tuple[Any, ...]], log: Any = print) -> BenchResult:
    result = BenchResult("triggers")
    result.notes.append(f"Alternative: {pattern_name()}.")
    for config in configs:
        k, interval, rounds = config[:3]
        span = config[3] if len(config) > 3 else 4.0
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for r in range(rounds):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                out = run_client(sandbox, mode, k, interval, seed=r, span=span)
                log(f"  triggers K={k} interval={interval}s span={span:g} {mode}: "
                    f"{out['cpu_per_request_us']:.0f} us/poll, {out['rss_per_trigger']:.0f} B/trigger, "
                    f"p99 delay {out['delay_p99']:.2f} s, {out['requests']} polls, "
                    f"sandbox CPU {out['sandbox_util']:.0%}, client CPU {out['client_util']:.0%}")
                runs[mode].append(out)
        medians = {m: _medians(v) for m, v in runs.items()}
        add_rows(result, k, interval, medians, span)
        if k in QUIET_DIAGNOSTIC_K and span == 4.0:
            quiet = run_client(sandbox, "ours", k, interval, seed=0,
                               env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"})
            result.notes.append(
                f"K={k:,} @{interval:g}s diagnostic: ours with log level WARNING (no INFO line per status "
                f"change) {quiet['cpu_per_request_us']:.0f} us/poll = "
                f"{quiet['cpu_per_request_us'] / medians['bare']['cpu_per_request_us']:.2f}x the bare loop.")
    return result


def _medians(outs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [key for key, value in outs[0].items() if isinstance(value, int | float)]
    return {key: median([o[key] for o in outs]) for key in keys}


def add_rows(result: BenchResult, k: int, interval: float, m: dict[str, dict[str, float]],
             span: float = 4.0) -> None:
    ours, bare, spp = m["ours"], m["bare"], m["session_per_poll"]
    tag = f"K={k:,} @{interval:g}s" + (f", jobs of up to {span + 1.5:g} polls" if span != 4.0 else "")
    cpu_ratio = ours["cpu_per_request_us"] / bare["cpu_per_request_us"]
    spp_ratio = spp["cpu_per_request_us"] / bare["cpu_per_request_us"]
    result.rows += [
        Row("triggers", f"CPU/poll vs bare loop, {tag}", f"{ours['cpu_per_request_us']:.0f} us",
            f"{bare['cpu_per_request_us']:.0f} us", cpu_ratio, f"<= {CPU_TARGET}x", cpu_ratio <= CPU_TARGET),
        Row("triggers", f"CPU/poll vs session-per-poll, {tag}", f"{ours['cpu_per_request_us']:.0f} us",
            f"{spp['cpu_per_request_us']:.0f} us", ours["cpu_per_request_us"] / spp["cpu_per_request_us"],
            "well under: <= 0.6x", ours["cpu_per_request_us"] <= 0.6 * spp["cpu_per_request_us"]),
        Row("triggers", f"session-per-poll CPU vs bare, {tag}", f"{spp['cpu_per_request_us']:.0f} us",
            f"{bare['cpu_per_request_us']:.0f} us", spp_ratio, f"(info; ~{SPP_MEASURED_BEFORE}x seen before)"),
    ]
    rss_row = Row("triggers", f"RSS per waiting trigger, {tag}", f"{ours['rss_per_trigger'] / 1024:.1f} KB",
                  f"{bare['rss_per_trigger'] / 1024:.1f} KB (bare)", None)
    if k >= 10_000:
        rss_row.target, rss_row.met = "<= 10 KB", ours["rss_per_trigger"] <= RSS_TARGET
    result.rows.append(rss_row)
    result.rows += [
        Row("triggers", f"event delay p50, {tag}", f"{ours['delay_p50']:.2f} s",
            f"{bare['delay_p50']:.2f} s (bare)"),
        Row("triggers", f"event delay p99, {tag}", f"{ours['delay_p99']:.2f} s",
            f"{bare['delay_p99']:.2f} s (bare)", None, f"<= {interval + 1:g} s",
            ours["delay_p99"] <= interval + 1),
        Row("triggers", f"polls; sandbox / client CPU, {tag}",
            f"{ours['requests']:.0f}; {ours['sandbox_util']:.0%} / {ours['client_util']:.0%}",
            f"{bare['requests']:.0f}; {bare['sandbox_util']:.0%} / {bare['client_util']:.0%} (bare)",
            None, "sandbox < 90% of a core", max(ours["sandbox_util"], bare["sandbox_util"],
                                                  spp["sandbox_util"]) < 0.9),
    ]
    if ours["not_success"] or bare["not_success"] or spp["not_success"]:
        result.notes.append(
            f"{tag}: events that were not success: ours {ours['not_success']:.0f}, "
            f"bare {bare['not_success']:.0f}, session-per-poll {spp['not_success']:.0f}")
    result.notes.append(
        f"{tag}: session-per-poll p99 delay {spp['delay_p99']:.2f} s, "
        f"{spp['rss_per_trigger'] / 1024:.1f} KB per waiting trigger, sandbox CPU {spp['sandbox_util']:.0%}.")
