"""What the benchmarks share: the sandbox process, CPU and memory readings, subprocesses, the table.

Every benchmark measures its baseline in the same run and reports a ratio, since these machines are
noisy. The sandbox always runs in a process of its own (``start_sandbox_process``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_KEY = "bench-key"
BENCH_COINS = 1_000_000_000
CONN_ID = "hitpaw_bench"
HTTP_CONN_ID = "hitpaw_bench_http"
RESULT_ENV = "HITPAW_BENCH_RESULT"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- sandbox -------------------------------------------------------------------------------------


def start_sandbox(**config: Any) -> Any:
    """A sandbox in its own process with the bench key and plenty of coins.

    ``max_work_megapixels`` is tiny, so that a submission is fetched, probed, charged and recorded
    but runs no Pillow work (the job ends in ERROR): that work, on threads of the sandbox, would
    otherwise slow every reply at random and drown the client-side differences being measured.
    """
    from airflow_provider_hitpaw.sandbox import start_sandbox_process

    config.setdefault("max_work_megapixels", 1e-6)
    return start_sandbox_process(api_keys={BENCH_KEY: BENCH_COINS}, **config)


def conn_env(base_url: str, conn_id: str = CONN_ID, **extra: Any) -> dict[str, str]:
    """``AIRFLOW_CONN_...`` variables for a hitpaw connection and a plain http one to the sandbox."""
    hitpaw: dict[str, Any] = {"conn_type": "hitpaw", "host": base_url, "password": BENCH_KEY}
    if extra:
        hitpaw["extra"] = extra
    scheme, _, hostport = base_url.partition("://")
    host, _, port = hostport.partition(":")
    http = {"conn_type": "http", "host": host, "port": int(port), "schema": scheme}
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(hitpaw),
        f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}": json.dumps(http),
    }


def set_conn_env(base_url: str, **extra: Any) -> None:
    os.environ.update(conn_env(base_url, **extra))


def status_requests(sandbox_stats: dict[str, Any]) -> int:
    return int(sandbox_stats["requests_by_endpoint"].get("POST /api/task-status", 0))


# -- CPU and memory ------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (from /proc), its threads included."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields_ = handle.read().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / _CLK_TCK


def rss_bytes(pid: int | str = "self") -> int:
    """Current resident set size (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def hwm_bytes() -> int:
    """The kernel's high-water mark of this process's resident memory (VmHWM); writing 5 to
    /proc/self/clear_refs resets it to the current RSS."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- subprocesses --------------------------------------------------------------------------------


def run_json(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> Any:
    """Run ``python -m bench.<module> args...`` and return the JSON its last stdout line holds."""
    with tempfile.TemporaryDirectory(prefix="hitpaw-bench-") as tmp:
        out_path = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", f"bench.{module}", *args],
            cwd=REPO,
            env={**os.environ, **(env or {}), RESULT_ENV: str(out_path)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(
                f"bench.{module} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
            )
        return json.loads(out_path.read_text(encoding="utf-8"))


def emit(result: Any) -> None:
    """Hand a benchmark subprocess's result to :func:`run_json` (a file: logs may go to stdout)."""
    Path(os.environ[RESULT_ENV]).write_text(json.dumps(result), encoding="utf-8")


# -- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the final table.

    :param bench: the benchmark.
    :param metric: what is measured.
    :param value: our figure, formatted.
    :param baseline: the baseline's figure, formatted (or "").
    :param ratio: ours / baseline, or None.
    :param target: the target as text (or "").
    :param met: whether the target is met; None when the row has no target.
    """

    bench: str
    metric: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")


@dataclass
class BenchResult:
    """What one benchmark returns: table rows and free-text notes."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def table_lines(results: list[BenchResult], markdown: bool = False) -> list[str]:
    header = ["benchmark", "metric", "ours", "baseline", "ratio", "target", "verdict"]
    rows = [
        [r.bench, r.metric, r.value, r.baseline, fmt_ratio(r.ratio), r.target, r.verdict]
        for res in results
        for r in res.rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        return lines
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return out


def machine_info() -> dict[str, str]:
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "aiohttp": version("aiohttp"),
        "requests": version("requests"),
        "apache-airflow-providers-http": version("apache-airflow-providers-http"),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
