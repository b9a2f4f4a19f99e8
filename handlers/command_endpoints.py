"""``auth.v1.cmd.<name>``: authenticate the bearer, decode the typed command, run it."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.micro.request import Request

from authbus.domain.commands import Command, CommandId, Password, RedeemKey
from authbus.domain.errors import Unauthenticated
from authbus.handlers.backend import Backend
from authbus.handlers.wire import Body, Position, Token, authenticate, ensure_position
from authbus.projections.queries import redeemer_for


def command(backend: Backend, cls: type[Command]):
    body = Body(cls)

    async def handle(request: Request) -> dict[str, Any]:
        actor = authenticate(backend, request)
        cmd = body.decode(request.data)
        result, position = await backend.execute(cmd, actor)
        return {"ok": True, "result": result, "position": position}

    return handle


class RedeemRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    password: Password
    command_id: CommandId | None = None
    min_position: Position | None = None  # read your writes: a key issued a moment ago


def redeem(backend: Backend):
    """``auth.v1.redeem``: a recovery or invitation key, presented in the body, sets a password."""

    body = Body(RedeemRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        actor = redeemer_for(backend.model, req.token)
        if actor is None:
            raise Unauthenticated("the recovery or invitation key is not valid", field="token")
        cmd = RedeemKey(key_id=actor.credential_id, password=req.password, command_id=req.command_id)
        result, position = await backend.execute(cmd, actor)
        return {"ok": True, "result": result, "position": position}

    return handle
