"""A link from a task to the HitPaw result it produced."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey  # type: ignore[attr-defined,unused-ignore]  # (not in 3.1)

#: The XCom key under which the operator and the sensor push the result's URL.
RES_URL_XCOM_KEY = "res_url"


class HitPawResultLink(BaseOperatorLink):
    """"HitPaw result": the enhanced file's URL, read from the task's ``res_url`` XCom.

    HitPaw's result URLs are usually signed and expire after a while; the link is the one HitPaw gave.
    """

    name = "HitPaw result"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key=RES_URL_XCOM_KEY)
        return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""
