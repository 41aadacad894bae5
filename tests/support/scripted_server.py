"""A local HTTP server that answers from a script, for tests that need replies the sandbox won't give.

Each path has a queue of steps; when a queue runs dry its last step repeats. Every request is
recorded (path, headers, JSON body, time) so tests can count exactly what reached the server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Step:
    """One scripted answer.

    :param status: HTTP status.
    :param body: raw body; a dict or list is sent as JSON.
    :param headers: extra headers.
    :param delay: seconds to wait before answering.
    :param drop: close the connection without an answer.
    :param trickle: send the body one byte per ``trickle`` seconds.
    """

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    trickle: float = 0.0


def ok(data: dict[str, Any]) -> Step:
    return Step(200, {"code": 200, "message": "OK", "data": data})


def status_step(status: str, job_id: str = "job-1", res_url: str | None = None) -> Step:
    return ok({"job_id": job_id, "status": status, "res_url": res_url or "", "original_url": "http://x/in.jpg"})


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    peer: Any = None


class ScriptedServer:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Step]] = defaultdict(list)
        self.requests: list[Recorded] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script(self, path: str, *steps: Step) -> None:
        self.scripts[path] = list(steps)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded(request.path, dict(request.headers), body, time.time(), peer))
        queue = self.scripts.get(request.path) or [Step(404, b"not scripted")]
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.drop:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("scripted drop")
        payload = step.body
        headers = dict(step.headers)
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(payload, str):
            payload = payload.encode()
        if step.trickle:
            response = web.StreamResponse(status=step.status, headers=headers)
            response.content_length = len(payload)
            await response.prepare(request)
            try:
                for i in range(len(payload)):
                    await response.write(payload[i : i + 1])
                    await asyncio.sleep(step.trickle)
                await response.write_eof()
            except ConnectionResetError:  # the client gave up, as the test wants
                pass
            return response
        return web.Response(status=step.status, body=payload, headers=headers)

    def start(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.base_url = f"http://127.0.0.1:{port}"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("scripted server did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
