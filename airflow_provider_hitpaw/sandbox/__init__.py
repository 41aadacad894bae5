"""A local HitPaw API server for tests, demos and benchmarks.

It speaks HitPaw's API contract (``/api/photo-enhancer``, ``/api/video-enhancer``,
``/api/task-status``), enhances images for real with Pillow, keeps a coin ledger and can inject
faults (gateway errors, 429s, dropped connections, slow replies, failed jobs, a rate limit).

Start one from Python with :func:`start_sandbox` (background thread) or
:func:`start_sandbox_process` (own process), or from a shell with
``python -m airflow_provider_hitpaw.sandbox --api-key KEY``.

Nothing is imported until used, so importing this package is cheap; the rest of the provider never
imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_hitpaw.sandbox.config import FaultConfig, SandboxConfig
    from airflow_provider_hitpaw.sandbox.runner import (
        SandboxHandle,
        SandboxProcess,
        start_sandbox,
        start_sandbox_process,
    )

__all__ = [
    "FaultConfig",
    "SandboxConfig",
    "SandboxHandle",
    "SandboxProcess",
    "start_sandbox",
    "start_sandbox_process",
]

_EXPORTS = {
    "FaultConfig": "airflow_provider_hitpaw.sandbox.config",
    "SandboxConfig": "airflow_provider_hitpaw.sandbox.config",
    "SandboxHandle": "airflow_provider_hitpaw.sandbox.runner",
    "SandboxProcess": "airflow_provider_hitpaw.sandbox.runner",
    "start_sandbox": "airflow_provider_hitpaw.sandbox.runner",
    "start_sandbox_process": "airflow_provider_hitpaw.sandbox.runner",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
