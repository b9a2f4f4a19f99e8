"""``auth.v1.admin.audit_*``: the audit reads of a running instance, for admins and auditors
(root: every tenant).  They read the stored log through the backend, a stretch at a time,
and leave every answer to projections.audit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from nats.micro.request import Request

from authbus.domain import policy
from authbus.domain.errors import Forbidden, InvalidRequest, not_found
from authbus.domain.policy import Actor
from authbus.handlers.admin_reads import Limit, _Read
from authbus.handlers.backend import Backend
from authbus.handlers.replies import AsOf, AuditLogPage, LogLine, ModelDigest
from authbus.handlers.wire import Body, Position, Token, authenticate, ensure_position
from authbus.projections import audit
from authbus.projections.read_model import ReadModel

SCAN = 2000  # stored events read per request, at most: a selective filter pages on
TypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z]+\Z")]
PrincipalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+\Z")]


class AuditLog(_Read):
    since_position: Position | None = None
    until_position: Position | None = None
    type: TypeName | list[TypeName] | None = None
    principal_id: PrincipalId | None = None
    tenant_id: UUID | None = None  # root only; others read their own tenant
    limit: Limit = 100
    after: Position | None = None  # the previous page's ``next``


class AuditAsOf(_Read):
    at_position: Position | None = None
    at_time: datetime | None = None
    credential_id: UUID | None = None
    token: Token | None = None


class RebuildCheck(_Read):
    pass


def _require_auditor(actor: Actor, tenant_id: UUID | None) -> None:
    if not (actor.is_root if tenant_id is None else actor.audits(tenant_id)):
        raise Forbidden("audit reads need the admin or auditor role")
    policy.require_scope(actor, "audit", "read", tenant_id or "*")


async def _audit_log(backend: Backend, actor: Actor, req: AuditLog) -> AuditLogPage:
    model = backend.model
    tenant_id = req.tenant_id or (None if actor.is_root else actor.tenant_id)
    if tenant_id is not None and (tenant_id not in model.tenants or not actor.sees(tenant_id)):
        raise not_found("tenant_id")
    _require_auditor(actor, tenant_id)
    types = [req.type] if isinstance(req.type, str) else req.type or []
    # Only what the live model has folded: it names the tenants, and the answer has a position.
    stop = min(model.position, req.until_position if req.until_position is not None else model.position)
    flt = audit.LogFilter(
        until=audit.Point(position=stop),
        tenant_id=None if tenant_id is None else str(tenant_id),
        principal_id=req.principal_id,
        types=frozenset(types),
    )
    start = max(req.after or 0, (req.since_position or 1) - 1)
    scan = audit.LogScan(flt, model, fold=False, position=start)
    batch = await backend.read_log(start + 1, SCAN) if start < stop else []
    items = scan.lines(batch, req.limit)
    exhausted = len(batch) < SCAN and scan.position == (batch[-1][0] if batch else start)
    done = scan.ended or scan.position >= stop or exhausted
    return AuditLogPage(items=msgspec.convert(items, list[LogLine]), next=None if done else scan.position, position=stop)


async def _audit_as_of(backend: Backend, actor: Actor, req: AuditAsOf) -> AsOf:
    if req.at_position is None and req.at_time is None:
        raise InvalidRequest("give at_position or at_time (or both: the earlier point)", field="at_position")
    if req.credential_id is None and req.token is None:
        raise InvalidRequest("give credential_id or token", field="credential_id")
    # Who may ask is decided on the live model (a credential's tenant never changes); the
    # answer comes from the replay alone.
    model = backend.model
    if req.credential_id is not None and not _visible(model, actor, req.credential_id):
        raise not_found("credential_id")
    wanted = audit.target(req.credential_id, req.token)
    if wanted is not None and not _visible(model, actor, wanted):
        raise not_found("token")
    _require_auditor(actor, model.credentials[wanted].tenant_id if wanted is not None else actor.tenant_id)
    at_time = req.at_time.replace(tzinfo=UTC) if req.at_time and req.at_time.tzinfo is None else req.at_time
    stop = min(model.position, req.at_position if req.at_position is not None else model.position)
    replay = audit.Replay(audit.Point(position=stop, time=at_time))
    start = 1
    while start <= stop:
        batch = await backend.read_log(start, SCAN)
        if not replay.feed(batch) or len(batch) < SCAN:
            break
        start = batch[-1][0] + 1
    upto, ids = replay.model.position, audit.related(replay.model, wanted)
    events: list[dict[str, Any]] = []
    start = 1
    while ids and start <= upto:
        batch = await backend.read_log(start, SCAN)
        events += audit.history(batch, ids, upto)
        if len(batch) < SCAN:
            break
        start = batch[-1][0] + 1
    # The answer is drawn in projections/audit.py, which the audit CLI prints too.
    return msgspec.convert({**audit.as_of(replay, events, req.credential_id, req.token), "position": upto}, AsOf)


def _visible(model: ReadModel, actor: Actor, credential_id: UUID) -> bool:
    credential = model.credentials.get(credential_id)
    return credential is not None and actor.sees(credential.tenant_id)


async def _rebuild_check(backend: Backend, actor: Actor, req: RebuildCheck) -> ModelDigest:
    policy.require_root(actor)  # the digest covers every tenant
    return ModelDigest(digest=audit.digest(backend.model), position=backend.model.position)


AUDIT_READS = {
    "audit_log": (AuditLog, _audit_log),
    "audit_as_of": (AuditAsOf, _audit_as_of),
    "rebuild_check": (RebuildCheck, _rebuild_check),
}


def audit_read(backend: Backend, name: str):
    cls, answer = AUDIT_READS[name]

    body = Body(cls)

    async def handle(request: Request) -> msgspec.Struct:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        actor = authenticate(backend, request)
        return await answer(backend, actor, req)

    return handle
