"""The benchmark code must not rot: import every bench module and run the tiniest configurations.

No timing is asserted; only that the benchmarks run and produce their rows.
"""

from __future__ import annotations

import importlib

import pytest

MODULES = ["common", "http_pattern", "trigger_client", "download_client", "parse_client", "bench_triggers",
           "bench_hook", "bench_download", "bench_upload", "upload_client", "bench_ratelimit", "bench_parse",
           "worker_slots", "celery_worker_slots", "bench_batch", "celery_batch", "batch_memory_client", "jobs_trigger_client", "run"]


@pytest.mark.parametrize("name", MODULES)
def test_bench_module_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")


@pytest.fixture(scope="module")
def bench_sandbox():  # type: ignore[no-untyped-def]
    from bench.common import start_sandbox

    handle = start_sandbox()
    try:
        yield handle
    finally:
        handle.stop()


def test_hook_benchmark_smoke(bench_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import bench_hook

    result = bench_hook.run(bench_sandbox, **bench_hook.SMOKE, log=lambda *_: None)
    assert result.rows and all(row.value for row in result.rows)


def test_trigger_benchmark_smoke(bench_sandbox) -> None:
    from bench import bench_triggers

    result = bench_triggers.run(bench_sandbox, [(5, 0.2, 1)], log=lambda *_: None)
    metrics = " ".join(row.metric for row in result.rows)
    assert "CPU/poll" in metrics and "event delay p99" in metrics


def test_table_renders() -> None:
    from bench.common import BenchResult, Row, table_lines

    result = BenchResult("x", rows=[Row("x", "m", "1", "2", 0.5, "t", True)])
    assert "met" in "\n".join(table_lines([result]))
    assert table_lines([result], markdown=True)[0].startswith("| benchmark")


def test_upload_benchmark_smoke(bench_sandbox) -> None:
    from bench import bench_upload

    result = bench_upload.run(bench_sandbox, **bench_upload.SMOKE, log=lambda *_: None)
    assert any("peak RSS growth" in row.metric for row in result.rows)


def test_worker_slot_benchmark_finds_the_deployment_harness() -> None:
    from bench import worker_slots

    assert hasattr(worker_slots.deployment_module(), "Deployment")


def test_batch_benchmark_memory_smoke() -> None:
    from bench import bench_batch
    from bench.common import BenchResult

    result = BenchResult("batch")
    memory = bench_batch.measure_memory([5, 10], 4, log=lambda *_: None)
    bench_batch.memory_rows(result, memory)
    assert memory[10]["counts"] == {"failed": 10} and memory[10]["triggerer_waits"] >= 2, memory
    assert any("worker peak RSS growth" in row.metric for row in result.rows)
