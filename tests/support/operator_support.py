"""Stand-ins for the bits of a task context the HitPaw operator and sensor use, and dag.test() helpers."""

from __future__ import annotations

from typing import Any


class FakeTaskInstance:
    """``try_number`` and ``max_tries`` as Airflow sets them: a new run has ``max_tries == retries``;
    a clear sets ``max_tries`` to the last try number plus ``retries``."""

    def __init__(self, try_number: int = 1, max_tries: int = 0) -> None:
        self.try_number = try_number
        self.max_tries = max_tries
        self.task_id = "enhance"
        self.map_index = -1
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def get_first_reschedule_date(self, context: Any) -> None:  # a sensor's first reschedule
        return None


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


class RefusingTaskStateStore(FakeTaskStateStore):
    """A store whose writes fail after ``allowed_writes`` of them succeeded (reads work)."""

    def __init__(self, allowed_writes: int = 0) -> None:
        super().__init__()
        self.allowed_writes = allowed_writes

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if self.allowed_writes <= 0:
            raise RuntimeError("the task state backend is read-only (test)")
        self.allowed_writes -= 1
        super().set(key, value, retention=retention)


class RefusingStateBackend:
    """A worker-side ``[workers] state_store_backend`` (Airflow 3.3) that refuses every write."""

    def serialize_task_state_store_to_ref(self, *, value: Any, key: str, scope: Any) -> str:
        raise RuntimeError("the task state backend refuses writes (test)")

    def deserialize_task_state_store_from_ref(self, ref: str) -> Any:
        raise RuntimeError("nothing was ever written (test)")

    def delete(self, scope: Any, key: str, **kwargs: Any) -> None:
        raise RuntimeError("the task state backend refuses writes (test)")


def make_context(*, store: FakeTaskStateStore | None = None, ti: FakeTaskInstance | None = None,
                 **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": ti or FakeTaskInstance(), **extra}
    if store is not None:
        context["task_state_store"] = store
    return context


# --- dag.test() -------------------------------------------------------------------------------------




def task_instances(dag_run: Any) -> dict[str, Any]:
    """``{task_id: (state, try_number)}`` of a finished run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = session.merge(dag_run)
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances(session=session)}


def xcom_value(dag_run: Any, task_id: str, key: str) -> Any:
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id, XComModel.key == key,
            )
        ).first()
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:  # a plain string, stored as it is
            return value.decode() if isinstance(value, bytes) else value
    return value
