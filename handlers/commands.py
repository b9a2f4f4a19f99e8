"""``auth.v1.cmd.<name>``: authenticate the bearer, decode the typed command, run it."""

from __future__ import annotations

from typing import Any

from nats.micro.request import Request

from authbus.domain.commands import Command
from authbus.handlers.wire import Backend, authenticate, decode


def command(backend: Backend, cls: type[Command]):
    async def handle(request: Request) -> dict[str, Any]:
        actor = authenticate(backend, request)
        cmd = decode(request.data, cls)
        result, position = await backend.execute(cmd, actor)
        return {"ok": True, "result": result, "position": position}

    return handle
