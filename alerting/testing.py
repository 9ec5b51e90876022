"""A real HTTP receiver on loopback that records every request: for tests, the bench and demos.

It runs an aiohttp server in a thread of its own. ``respond`` decides each answer (default
200); ``go_down`` closes the listening socket and every open connection (clients then get
"connection refused"), ``go_up`` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Received:
    at: float  # time.time() when the request arrived
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self):
        return json.loads(self.body)

    @property
    def notification_id(self) -> str:
        return self.headers.get("X-Riskcockpit-Id", "")


Answer = tuple[int, dict[str, str], str]


class RecordingReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.requests: list[Received] = []
        self.respond: Callable[[Received], Answer] = lambda request: (200, {}, '{"ok":true}')
        self.latency = 0.0  # seconds each answer takes, like a slow case-management system
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-receiver", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(time.time(), request.path, dict(request.query), dict(request.headers),
                            await request.read())
        if self.latency:
            await asyncio.sleep(self.latency)
        status, headers, text = self.respond(received)
        received.status = status
        with self._lock:
            self.requests.append(received)
        return web.Response(status=status, headers=headers, text=text, content_type="application/json")

    async def _up(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]

    async def _down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> RecordingReceiver:
        self._thread.start()
        self._run(self._up())
        return self

    def go_down(self) -> None:
        self._run(self._down())

    def go_up(self) -> None:
        self._run(self._up())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._run(self._down())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def received(self, ok_only: bool = False) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if not ok_only or 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float, ok_only: bool = True) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(ok_only)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"receiver got {len(self.received(ok_only))} request(s) within {timeout:.0f}s, "
                             f"expected {count}")

    def __enter__(self) -> RecordingReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
