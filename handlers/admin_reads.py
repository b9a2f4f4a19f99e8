"""``auth.v1.admin.<name>``: read-only views for admins, auditors and users themselves."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec
from nats.micro.request import Request

from authbus.domain import policy
from authbus.domain.commands import RoleName
from authbus.domain.errors import Forbidden, not_found
from authbus.domain.policy import Actor
from authbus.handlers.backend import Backend
from authbus.handlers.replies import (
    CredentialDetail,
    KeyReply,
    LoginAttempt,
    Page,
    PatReply,
    RoleDetail,
    RoleReply,
    SessionDetail,
    SigningKeyDetail,
    TenantDetail,
    TenantPolicy,
    TenantReply,
    UserDetail,
    UserReply,
)
from authbus.handlers.wire import Body, Position, authenticate, ensure_position
from authbus.projections import queries
from authbus.projections.read_model import CredentialView, PrincipalView, ReadModel, RoleView, SessionView, TenantView

Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]


class _Read(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    min_position: Position | None = None


class GetTenant(_Read):
    tenant_id: UUID | None = None  # default: the caller's own


class _Listing(_Read):
    """A read that pages (§8 Paging)."""

    limit: Limit = 100
    after: UUID | None = None


class ListTenants(_Listing):
    pass


def _tenant(model: ReadModel, view: TenantView) -> TenantDetail:
    return TenantDetail(
        id=str(view.id),
        name=view.name,
        disabled=view.disabled,
        tags=view.tags,
        metadata=view.metadata,
        created_at=view.created_at,
        created_by=view.created_by,
        updated_at=view.updated_at,
        updated_by=view.updated_by,
        policy=TenantPolicy(**view.policy),
        role_order=queries.role_order_names(model, view),
    )


def _get_tenant(model: ReadModel, actor: Actor, req: GetTenant, now: float) -> TenantReply:
    tenant_id = req.tenant_id or actor.tenant_id
    view = model.tenants.get(tenant_id)
    if view is None or not actor.sees(tenant_id):
        raise not_found("tenant_id")
    if not actor.audits(tenant_id):
        raise Forbidden("reading a tenant needs the admin or auditor role")
    policy.require_scope(actor, "tenant", "read", tenant_id)
    return TenantReply(tenant=_tenant(model, view), position=model.position)


def _list_tenants(model: ReadModel, actor: Actor, req: ListTenants, now: float) -> Page[TenantDetail]:
    """Root: every tenant; an admin or auditor: its own, a list of one."""
    if not (actor.is_root or actor.audits(actor.tenant_id)):
        raise Forbidden("listing tenants needs the admin or auditor role")
    policy.require_scope(actor, "tenant", "list", "*")
    visible = model.tenants if actor.is_root else {actor.tenant_id: None}
    ids, cursor = queries.page(dict.fromkeys(visible), req.after, req.limit)
    return Page(items=[_tenant(model, model.tenants[i]) for i in ids], next=cursor, position=model.position)


class GetUser(_Read):
    user_id: UUID


class ListUsers(_Listing):
    tenant_id: UUID | None = None


class SearchUsers(_Listing):
    """Users of a tenant by username prefix (case-insensitive), role and status; all given must match."""

    tenant_id: UUID | None = None
    username_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    role: RoleName | None = None
    status: Literal["active", "disabled", "deleted"] | None = None


class GetPAT(_Read):
    pat_id: UUID


class ListCredentials(_Listing):
    user_id: UUID | None = None


def _visible_user(model: ReadModel, actor: Actor, user_id: UUID) -> PrincipalView:
    """A user the actor may read: itself, or one of a tenant it audits."""
    principal = model.principals.get(user_id)
    if principal is None or not actor.sees(principal.tenant_id):
        raise not_found("user_id")
    if principal.id != actor.principal_id and not actor.audits(principal.tenant_id):
        raise Forbidden("reading other users needs the admin or auditor role")
    policy.require_scope(actor, "user", "read", principal.id)
    return principal


def _read(backend: Backend, cls: type, answer):
    body = Body(cls)

    async def handle(request: Request) -> msgspec.Struct:
        req = body.decode(request.data)
        # Wait first, so a credential issued or revoked before min_position is judged as such.
        await ensure_position(backend, req.min_position)
        actor = authenticate(backend, request)
        return answer(backend.model, actor, req, backend.now())

    return handle


# The details are drawn in projections/queries.py, which audit.as_of (and so the audit CLI)
# shares; here they only take their reply type.
def _user(principal: PrincipalView) -> UserDetail:
    return msgspec.convert(queries.user_detail(principal), UserDetail)


def _credential(credential: CredentialView, now: float) -> CredentialDetail:
    return msgspec.convert(queries.credential_detail(credential, now), CredentialDetail)


def _session(session: SessionView, now: float) -> SessionDetail:
    return msgspec.convert(queries.session_detail(session, now), SessionDetail)


def _role(role: RoleView) -> RoleDetail:
    return msgspec.convert(queries.role_detail(role), RoleDetail)


def _get_user(model: ReadModel, actor: Actor, req: GetUser, now: float) -> UserReply:
    return UserReply(user=_user(_visible_user(model, actor, req.user_id)), position=model.position)


def _audited_tenant(model: ReadModel, actor: Actor, tenant_id: UUID | None, entity_type: str) -> UUID:
    """The tenant a listing is about (default: the actor's), if the actor audits it."""
    tenant_id = tenant_id or actor.tenant_id
    if tenant_id not in model.tenants or not actor.sees(tenant_id):
        raise not_found("tenant_id")
    if not actor.audits(tenant_id):
        raise Forbidden(f"listing {entity_type.replace('_', ' ')}s needs the admin or auditor role")
    policy.require_scope(actor, entity_type, "list", tenant_id)
    return tenant_id


def _list_users(model: ReadModel, actor: Actor, req: ListUsers, now: float) -> Page[UserDetail]:
    tenant_id = _audited_tenant(model, actor, req.tenant_id, "user")
    ids, cursor = queries.page(model.users_by_tenant.get(tenant_id, {}), req.after, req.limit)
    return Page(items=[_user(model.principals[i]) for i in ids], next=cursor, position=model.position)


def _search_users(model: ReadModel, actor: Actor, req: SearchUsers, now: float) -> Page[UserDetail]:
    tenant_id = _audited_tenant(model, actor, req.tenant_id, "user")
    found = queries.matching_users(model, tenant_id, req.username_prefix, req.role, req.status)
    ids, cursor = queries.page(found, req.after, req.limit)
    return Page(items=[_user(model.principals[i]) for i in ids], next=cursor, position=model.position)


def _readable(model: ReadModel, actor: Actor, credential_id: UUID, pat: bool, field: str) -> CredentialView:
    """A PAT (or a key: ``pat`` False) the actor may read: its owner's, or its tenant's
    admin's or auditor's; another kind's id is not found, as another tenant's is."""
    credential = model.credentials.get(credential_id)
    if credential is None or (credential.kind == "pat") != pat or not actor.sees(credential.tenant_id):
        raise not_found(field)
    _visible_user(model, actor, credential.owner_id)
    policy.require_scope(actor, "pat" if pat else "key", "read", credential.id)
    return credential


def _get_pat(model: ReadModel, actor: Actor, req: GetPAT, now: float) -> PatReply:
    credential = _readable(model, actor, req.pat_id, True, "pat_id")
    return PatReply(pat=_credential(credential, now), position=model.position)


class GetKey(_Read):
    key_id: UUID


def _get_key(model: ReadModel, actor: Actor, req: GetKey, now: float) -> KeyReply:
    credential = _readable(model, actor, req.key_id, False, "key_id")
    return KeyReply(key=_credential(credential, now), position=model.position)


def _lister(entity_type: str, kinds: frozenset[str]):
    def answer(model: ReadModel, actor: Actor, req: ListCredentials, now: float) -> Page[CredentialDetail]:
        owner = _visible_user(model, actor, req.user_id or actor.principal_id)
        policy.require_scope(actor, entity_type, "list", owner.id)
        owned = model.credentials_by_owner.get(owner.id, {})
        matching = {i: None for i in owned if model.credentials[i].kind in kinds}
        ids, cursor = queries.page(matching, req.after, req.limit)
        items: list[CredentialView] = [model.credentials[i] for i in ids]
        return Page(items=[_credential(c, now) for c in items], next=cursor, position=model.position)

    return answer


class ListSigningKeys(_Listing):  # ``after`` is a kid
    tenant_id: UUID | None = None


def _list_signing_keys(model: ReadModel, actor: Actor, req: ListSigningKeys, now: float) -> Page[SigningKeyDetail]:
    tenant_id = _audited_tenant(model, actor, req.tenant_id, "signing_key")
    kids = {UUID(kid): None for kid in model.signing_keys_by_tenant.get(tenant_id, {})}
    chunk, cursor = queries.page(kids, req.after, req.limit)
    keys = [model.signing_keys[str(kid)] for kid in chunk]
    items = [
        SigningKeyDetail(kid=k.kid, alg=k.alg, status=k.status, tenant_id=str(k.tenant_id), created_at=k.created_at) for k in keys
    ]
    return Page(items=items, next=cursor, position=model.position)


def _list_sessions(model: ReadModel, actor: Actor, req: ListCredentials, now: float) -> Page[SessionDetail]:
    owner = _visible_user(model, actor, req.user_id or actor.principal_id)
    policy.require_scope(actor, "session", "list", owner.id)
    ids, cursor = queries.page(model.sessions_by_user.get(owner.id, {}), req.after, req.limit)
    return Page(items=[_session(model.sessions[i], now) for i in ids], next=cursor, position=model.position)


class GetRole(_Read):
    role_id: UUID


class ListRoles(_Listing):
    tenant_id: UUID | None = None


def _get_role(model: ReadModel, actor: Actor, req: GetRole, now: float) -> RoleReply:
    role = model.roles.get(req.role_id)
    if role is None or role.deleted or not actor.sees(role.tenant_id):
        raise not_found("role_id")
    if not actor.audits(role.tenant_id):
        raise Forbidden("reading roles needs the admin or auditor role")
    policy.require_scope(actor, "role", "read", role.id)
    return RoleReply(role=_role(role), position=model.position)


def _list_roles(model: ReadModel, actor: Actor, req: ListRoles, now: float) -> Page[RoleDetail]:
    tenant_id = _audited_tenant(model, actor, req.tenant_id, "role")
    live = {i: None for i in model.roles_by_tenant.get(tenant_id, {}) if not model.roles[i].deleted}
    ids, cursor = queries.page(live, req.after, req.limit)
    return Page(items=[_role(model.roles[i]) for i in ids], next=cursor, position=model.position)


class LoginActivity(_Read):
    user_id: UUID | None = None


def _login_activity(model: ReadModel, actor: Actor, req: LoginActivity, now: float) -> Page[LoginAttempt]:
    owner = _visible_user(model, actor, req.user_id or actor.principal_id)
    policy.require_scope(actor, "user", "read", owner.id)
    attempts = msgspec.convert(list(reversed(model.login_activity.get(owner.id, ()))), list[LoginAttempt])
    return Page(items=attempts, next=None, position=model.position)


ADMIN_READS = {
    "get_tenant": (GetTenant, _get_tenant),
    "list_tenants": (ListTenants, _list_tenants),
    "get_user": (GetUser, _get_user),
    "list_users": (ListUsers, _list_users),
    "search_users": (SearchUsers, _search_users),
    "get_pat": (GetPAT, _get_pat),
    "get_key": (GetKey, _get_key),
    "list_pats": (ListCredentials, _lister("pat", frozenset({"pat"}))),
    "list_keys": (ListCredentials, _lister("key", frozenset({"api_key", "recovery", "invitation"}))),
    "list_signing_keys": (ListSigningKeys, _list_signing_keys),
    "list_sessions": (ListCredentials, _list_sessions),
    "login_activity": (LoginActivity, _login_activity),
    "get_role": (GetRole, _get_role),
    "list_roles": (ListRoles, _list_roles),
}


def admin_read(backend: Backend, name: str):
    cls, answer = ADMIN_READS[name]
    return _read(backend, cls, answer)
