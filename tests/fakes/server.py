"""What every fake provider shares: an aiohttp server on loopback and a client to call us."""

from __future__ import annotations

from abc import ABC, abstractmethod

import aiohttp
from aiohttp import web


class FakeServer(ABC):
    base_url = ""
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    client_headers: dict[str, str] = {}  # noqa: RUF012 (read-only default)

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the provider's API routes."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (by default on a free loopback port) and set `base_url`."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self._http = aiohttp.ClientSession(headers=self.client_headers)

    async def close(self) -> None:
        """Stop listening and close the callback sender."""
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()
