"""``auth.v1.health``: whether this instance answers from a current read model, for probes,
load balancers and people.  Any NATS client may ask; it reveals positions, not data."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.micro.request import Request

from authbus.handlers.backend import Backend
from authbus.handlers.wire import Body


class HealthRequest(msgspec.Struct, forbid_unknown_fields=True):
    """No fields: an empty body (or ``{}``) asks."""


def health(backend: Backend):
    body = Body(HealthRequest)

    async def handle(request: Request) -> dict[str, Any]:
        body.decode(request.data or b"{}")
        return await backend.health()

    return handle
