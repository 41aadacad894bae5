"""The alternative a user would otherwise reach for: the HTTP provider's ``HttpSensorTrigger`` pattern.

The real ``HttpSensorTrigger`` (apache-airflow-providers-http 6.3.0) cannot wait on HitPaw: it fires
on the first reply that is not a 404, and ``/api/task-status`` answers 200 with ``WAITING`` as well as
with ``COMPLETED``. So this is its ``run()`` loop kept line for line -- a new ``aiohttp.ClientSession``
per poll, the request made by the provider's real ``HttpAsyncHook.run(session=...)`` -- with the one
change a user must make: read the JSON status and fire only on a final state.

Without the HTTP provider installed (it is only in the ``bench`` extra) the same loop is run on a
plain ``aiohttp`` session per poll, and the results say so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

FINAL = ("COMPLETED", "ERROR")

try:  # pragma: no cover - depends on the bench extra
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    HAVE_HTTP_PROVIDER = True
except ImportError:  # pragma: no cover
    HAVE_HTTP_PROVIDER = False


def pattern_name() -> str:
    if HAVE_HTTP_PROVIDER:
        return "HttpSensorTrigger pattern (real HttpAsyncHook, new session per poll)"
    return "HttpSensorTrigger pattern (re-implemented: aiohttp, new session per poll)"


if HAVE_HTTP_PROVIDER:

    class StatusHttpSensorTrigger(HttpSensorTrigger):
        """``HttpSensorTrigger.run`` with a JSON status check instead of "anything but 404"."""

        async def run(self) -> AsyncIterator[Any]:
            import aiohttp
            from airflow.exceptions import AirflowException
            from airflow.triggers.base import TriggerEvent

            hook = self._get_async_hook()
            while True:
                try:
                    async with aiohttp.ClientSession() as session:
                        response = await hook.run(
                            session=session,
                            endpoint=self.endpoint,
                            data=self.data,
                            headers=self.headers,
                            extra_options=self.extra_options,
                        )
                        body = json.loads(await response.read())
                    status = body["data"]["status"]
                    if status in FINAL:
                        yield TriggerEvent({"status": "success" if status == "COMPLETED" else "error"})
                        return
                except AirflowException as exc:
                    if not str(exc).startswith("404"):
                        raise
                await asyncio.sleep(self.poke_interval)


class PlainSessionPerPollTrigger:
    """The same loop without the HTTP provider: a new plain ``aiohttp.ClientSession`` per poll."""

    def __init__(self, url: str, api_key: str, job_id: str, poke_interval: float) -> None:
        self.url, self.api_key, self.job_id, self.poke_interval = url, api_key, job_id, poke_interval

    async def run(self) -> AsyncIterator[Any]:
        import aiohttp

        while True:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    self.url, data=json.dumps({"job_id": self.job_id}),
                    headers={"Apikey": self.api_key, "Content-Type": "application/json"},
                ) as response,
            ):
                body = json.loads(await response.read())
            status = body["data"]["status"]
            if status in FINAL:
                yield {"status": "success" if status == "COMPLETED" else "error"}
                return
            await asyncio.sleep(self.poke_interval)


def make_session_per_poll_trigger(http_conn_id: str, api_key: str, job_id: str, interval: float) -> Any:
    if HAVE_HTTP_PROVIDER:
        return StatusHttpSensorTrigger(
            endpoint="/api/task-status",
            http_conn_id=http_conn_id,
            method="POST",
            data=json.dumps({"job_id": job_id}),
            headers={"Apikey": api_key, "Content-Type": "application/json"},
            poke_interval=interval,
        )
    import os

    conn = json.loads(os.environ[f"AIRFLOW_CONN_{http_conn_id.upper()}"])
    url = f"{conn['schema']}://{conn['host']}:{conn['port']}/api/task-status"
    return PlainSessionPerPollTrigger(url, api_key, job_id, interval)
