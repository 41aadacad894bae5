"""Loading a DAG file as Airflow does: by its path, since a DAG file is not a module of any package.

``dag.test()`` needs the file inside the configured DAGs folder (the throw-away Airflow home of
:mod:`tests.support.airflow_home`), so tests copy it there and load it from there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any


def load_dag_file(path: Path, module_name: str | None = None) -> ModuleType:
    """Execute the DAG file at ``path`` and return it as a module."""
    spec = importlib.util.spec_from_file_location(module_name or f"hitpaw_dag_file_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_dag(dags_folder: Path | str, file_name: str, dag_id: str | None = None) -> Any:
    """The DAG ``dag_id`` (or the file's only DAG) of ``file_name`` in ``dags_folder``."""
    from airflow.sdk import DAG

    module = load_dag_file(Path(dags_folder) / file_name, f"hitpaw_dag_{dag_id or Path(file_name).stem}")
    return next(
        value for value in vars(module).values()
        if isinstance(value, DAG) and (dag_id is None or value.dag_id == dag_id)
    )
