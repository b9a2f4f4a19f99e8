"""``--http-port``: the HTTP edge (handlers/http_edge.py) served by aiohttp on the node's
own event loop, so it answers from the same read model as the NATS endpoints.

aiohttp: asyncio-native and well kept, with a client the tests use too; a server on the
running loop is three calls, and its limits on bodies, lines and headers are settings."""

from __future__ import annotations

import logging

from aiohttp import web

from authbus.handlers.backend import Backend
from authbus.handlers.http_edge import problems, routes

log = logging.getLogger("authbus.http")
MAX_BODY = 16 * 1024  # an introspection form holds one token
LIMITS = {"max_line_size": 8190, "max_field_size": 16 * 1024, "max_headers": 64}  # a bearer is ≤ 8 KiB


class HttpEdge:
    def __init__(self, backend: Backend, host: str, port: int) -> None:
        self.backend, self.host, self.port = backend, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> HttpEdge:
        app = web.Application(middlewares=[problems], client_max_size=MAX_BODY)
        app.add_routes(routes(self.backend))
        self._runner = web.AppRunner(app, access_log=None, handler_args=LIMITS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port taken, when 0 asked for any
        log.info("HTTP edge at http://%s:%d", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
