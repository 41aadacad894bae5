"""Stand-ins for the bits of a task context the HitPaw operator and sensor use."""

from __future__ import annotations

from typing import Any


class FakeTaskInstance:
    def __init__(self, try_number: int = 1) -> None:
        self.try_number = try_number
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class FakeTaskStateStore:
    """The get/set/delete surface of Airflow 3.3's ``TaskStateStoreAccessor``."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def make_context(*, store: FakeTaskStateStore | None = None, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": FakeTaskInstance(), **extra}
    if store is not None:
        context["task_state_store"] = store
    return context
