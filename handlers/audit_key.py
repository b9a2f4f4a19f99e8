"""``auth.v1.audit.public_key``: the Ed25519 key that signs the log's checkpoints, so an
auditor can pin it (``authbus audit verify --public-key``) without holding the KEK."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.micro.request import Request

from authbus.handlers.backend import Backend
from authbus.handlers.wire import Body, Position, ensure_position


class PublicKeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    min_position: Position | None = None


def audit_public_key(backend: Backend):
    body = Body(PublicKeyRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data or b"{}")
        await ensure_position(backend, req.min_position)
        return {"public_key": backend.audit_public_key, "alg": "EdDSA", "position": backend.model.position}

    return handle
