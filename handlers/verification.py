"""``verify`` and ``authorize``: answered from the read model alone, no store, no slow hash."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from nats.micro.request import Request

from authbus.domain.commands import RoleName
from authbus.domain.errors import InvalidRequest
from authbus.domain.scopes import Name, Operation
from authbus.handlers.backend import Backend
from authbus.handlers.wire import Body, Position, Token, ensure_position
from authbus.projections import queries


class VerifyRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    min_position: Position | None = None


class AuthorizeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A scope question (``entity_type``, ``operation``, ``entity_id``, maybe ``domain``), a
    rank question (``min_role``), or both; ``check_question`` refuses anything else."""

    token: Token
    entity_type: Name | None = None
    operation: Operation | None = None
    entity_id: Name | None = None
    domain: Name | None = None
    tenant_id: UUID | None = None
    min_position: Position | None = None
    min_role: RoleName | None = None


SCOPE_FIELDS = ("entity_type", "operation", "entity_id")


def check_question(req: AuthorizeRequest) -> None:
    """A whole scope triple, ``min_role``, or both; else invalid_request naming the first
    field of the triple missing."""
    triple = (req.entity_type, req.operation, req.entity_id)
    if None not in triple:
        return
    if req.min_role is not None and req.domain is None and triple == (None, None, None):
        return
    missing = SCOPE_FIELDS[triple.index(None)]
    raise InvalidRequest(f"give entity_type, operation and entity_id, or min_role: {missing} is missing", field=missing)


def verify(backend: Backend):
    body = Body(VerifyRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data)
        if req.min_position is not None:  # ensure_position checks too; this spares a coroutine per request
            await ensure_position(backend, req.min_position)
        model = backend.model
        verdict = queries.verify(model, req.token, backend.now(), backend.keys, backend.bearers)
        if verdict.credential is None or verdict.principal is None:
            return {"valid": False, "reason": verdict.reason, "position": model.position}
        return {
            "valid": True,
            "credential": backend.views.credential(verdict.credential),
            "principal": backend.views.principal(verdict.principal),
            "scopes": queries.scope_list(verdict.credential),
            "position": model.position,
        }

    return handle


def authorize(backend: Backend):
    body = Body(AuthorizeRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data)
        check_question(req)
        if req.min_position is not None:
            await ensure_position(backend, req.min_position)
        model = backend.model
        decision = queries.authorize(
            model,
            req.token,
            backend.now(),
            backend.keys,
            req.domain,
            req.entity_type,
            req.operation,
            req.entity_id,
            req.tenant_id,
            backend.bearers,
            req.min_role,
        )
        principal = decision.verdict.principal
        return {
            "allowed": decision.allowed,
            "reason": decision.reason,
            "principal": backend.views.principal(principal) if principal is not None else None,
            "matched_scope": decision.matched_scope.to_dict() if decision.matched_scope is not None else None,
            "position": model.position,
        }

    return handle


class JwksRequest(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: UUID | None = None
    min_position: Position | None = None


def jwks(backend: Backend):
    """``auth.v1.jwks``: the public keys that verify access tokens (RFC 7517), never a secret."""

    body = Body(JwksRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data or b"{}")
        await ensure_position(backend, req.min_position)
        return {"keys": queries.jwks(backend.model, req.tenant_id), "position": backend.model.position}

    return handle
