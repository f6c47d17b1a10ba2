"""What every fake provider shares: an aiohttp server on loopback, a client to call us, the
clock its timestamps follow, and a hook that reports each request it answered.

The fakes serve the tests (a fresh one per test, any clock) and the sandbox (one of each for
the process, on the sandbox's clock, watched by its request log). Any fake can hold requests
until released: a provider that acts on a request but answers after the client gave up.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from clock import Clock, SystemClock

_LOGGER = logging.getLogger(__name__)
SUMMARY_LENGTH = 160


@dataclass(frozen=True)
class Received:
    """One request a fake answered: when, what, the answer's status and a one-line summary."""

    at: datetime
    party: str
    method: str
    path: str
    status: int
    summary: str


Watcher = Callable[[Received], None]


class FakeServer(ABC):
    party = ""  # who this fake plays: "shopify", "exotel", ...
    base_url = ""
    clock: Clock = SystemClock()
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    _watchers: tuple[Watcher, ...] = ()
    _holds = 0
    _gate: asyncio.Event | None = None
    _held: tuple[asyncio.Future[None], ...] = ()
    client_headers: dict[str, str] = {}  # noqa: RUF012 (read-only default)

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the provider's API routes."""

    async def summary(self, request: web.Request) -> str:
        """One line saying what a request asked for (its body is read already)."""
        return ""

    def shown_path(self, request: web.Request) -> str:
        """The request's path as the request log shows it (a secret in it masked)."""
        return request.path

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher` with every request this fake answers, once its answer is ready."""
        self._watchers = (*self._watchers, watcher)

    def hold_next(self, count: int = 1) -> None:
        """Hold the next `count` requests, unhandled, until `release()`."""
        self._holds += count

    async def release(self) -> None:
        """Handle the held requests as if they had just arrived; return once they are."""
        if self._gate is not None:
            self._gate.set()
            self._gate = None
        held, self._held = self._held, ()
        await asyncio.gather(*held)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (by default on a free loopback port) and set `base_url`."""
        app = web.Application(middlewares=[self._report, self._hold])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self._http = aiohttp.ClientSession(headers=self.client_headers)

    async def close(self) -> None:
        """Stop listening and close the callback sender."""
        await self.release()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _report(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._watchers:
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            await self._tell(request, exc.status)
            raise
        await self._tell(request, response.status)
        return response

    @web.middleware
    async def _hold(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._holds:
            return await handler(request)
        self._holds -= 1
        await request.read()  # the whole request arrived; only the answer is late
        if self._gate is None:
            self._gate = asyncio.Event()
        gate, handled = self._gate, asyncio.get_running_loop().create_future()
        self._held = (*self._held, handled)
        try:
            await gate.wait()
            return await handler(request)
        finally:
            handled.set_result(None)

    async def _tell(self, request: web.Request, status: int) -> None:
        try:
            summary = await self.summary(request)
        except Exception as exc:  # a summary is a courtesy: never fail the request for it
            summary = f"(unreadable request: {exc})"
        received = Received(
            at=self.clock.now(),
            party=self.party,
            method=request.method,
            path=self.shown_path(request),
            status=status,
            summary=summary[:SUMMARY_LENGTH],
        )
        for watcher in self._watchers:
            try:
                watcher(received)
            except Exception:
                _LOGGER.exception("%s fake: a request watcher failed", self.party)
