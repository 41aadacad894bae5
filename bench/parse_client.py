"""``python -m bench.parse_client DAG_FILE``: import one DAG file in this fresh interpreter and report
how long the import took, how many DAGs and tasks it defined, and which heavy modules it loaded.

What every DAG file needs and a DAG processor has already loaded (``airflow.sdk``, ``pendulum``,
``EmptyOperator``) is imported before the clock starts, so that the figure is the DAG file's own cost
rather than a second of Airflow start-up noise around it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

HEAVY = ("aiohttp", "requests", "urllib3", "tenacity", "PIL", "httpx", "yarl", "multidict")


def main() -> None:
    path = sys.argv[1]
    import airflow.sdk  # noqa: F401
    import pendulum  # noqa: F401
    from airflow.providers.standard.operators.empty import EmptyOperator  # noqa: F401

    before = set(sys.modules)
    started = time.perf_counter()
    spec = importlib.util.spec_from_file_location("bench_parsed_dag", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seconds = time.perf_counter() - started
    from airflow.sdk import DAG

    dags = [v for v in vars(module).values() if isinstance(v, DAG)]
    loaded = set(sys.modules) - before
    result = {
        "seconds": seconds,
        "dags": len(dags),
        "tasks": sum(len(d.tasks) for d in dags),
        "heavy": sorted({m.split(".")[0] for m in loaded if m.split(".")[0] in HEAVY}),
        "provider_modules": sorted(m for m in loaded if m.startswith("airflow_provider_hitpaw")),
    }
    with open(os.environ["HITPAW_BENCH_RESULT"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
