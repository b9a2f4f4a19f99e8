"""Answers computed from the read model alone: verification, authorization, the acting
principal behind a bearer credential, and the admin views.  The hot path is a parse, a
few dictionary lookups, one SHA-256 and a constant-time compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from authbus.domain import tokens
from authbus.domain.permissions import EVERYTHING_ROLES, READ_OPERATIONS, HeldRole, Permissions
from authbus.domain.policy import Actor
from authbus.domain.role import is_builtin
from authbus.domain.role_order import HIGHEST, RoleKey
from authbus.domain.scopes import Scope, find_grant
from authbus.domain.signing import ASYMMETRIC_ALGS
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.domain.times import rfc3339_epoch
from authbus.projections.jwt_tokens import VerificationKeys, looks_like_jwt, verify_jwt
from authbus.projections.memos import FORGETFUL, Bearers, credential_view, principal_view
from authbus.projections.read_model import (
    CredentialView,
    PrincipalView,
    ReadModel,
    RoleView,
    SessionView,
    SigningKeyView,
    TenantView,
)

BEARER_KINDS = frozenset({"pat", "api_key", "access_token"})
REDEEMABLE_KINDS = frozenset({"recovery", "invitation"})


# Not frozen: a frozen dataclass's __init__ costs four times as much, and verify makes one
# per request.  Treat both as immutable.
@dataclass(slots=True)
class Verdict:
    reason: str | None  # None when valid
    credential: Any = None  # CredentialView, or a TokenCredential for a JWT
    principal: Any = None  # PrincipalView, or an ExternalPrincipal for a tenant-minted JWT

    @property
    def valid(self) -> bool:
        return self.reason is None


def verify(model: ReadModel, token: str, now: float, keys: VerificationKeys, bearers: Bearers = FORGETFUL) -> Verdict:
    if looks_like_jwt(token):
        return Verdict(*verify_jwt(model, token, now, keys, bearers))
    # A token seen with its right secret before skips the parse and the hash; its standing
    # is checked afresh every time, and a reset secret makes the remembered digest stale.
    seen = bearers.get(token)
    if seen is not None and seen[0].digest is seen[1]:
        return _in_use(standing(model, seen[0], now), bearers, now)
    parsed = tokens.parse(token)
    if parsed is None:
        return Verdict("malformed")
    credential = model.credentials.get(parsed.credential_id)
    # A wrong secret answers exactly like an unknown id, before any status is revealed.
    if credential is None or credential.kind != parsed.kind or not tokens.secret_matches(parsed.secret, credential.digest):
        return Verdict("unknown")
    bearers.remember(token, credential, credential.digest)
    return _in_use(standing(model, credential, now), bearers, now)


def expires_ts(credential: Any) -> float | None:
    """When a verified credential ends, as a POSIX time: a stored one keeps it, a JWT's is
    read back from its RFC 3339 ``expires_at``; None: never."""
    ts: float | None = getattr(credential, "expires_ts", None)
    if ts is not None:
        return ts
    expires_at = credential.expires_at
    return None if expires_at is None else datetime.fromisoformat(expires_at).timestamp()


def _in_use(verdict: Verdict, bearers: Bearers, now: float) -> Verdict:
    if verdict.credential is not None:
        bearers.used(verdict.credential, now)
    return verdict


def standing(model: ReadModel, credential: CredentialView, now: float) -> Verdict:
    """Whether a known credential, its owner and its tenant let it act at ``now``; the secret
    is the caller's business (verify checks it first, an audit by credential id does not)."""
    if credential.status != "active":
        return Verdict("revoked")
    if credential.expires_ts is not None and credential.expires_ts <= now:
        return Verdict("expired")
    principal = model.principals[credential.owner_id]
    if principal.disabled or model.tenants[principal.tenant_id].disabled:
        return Verdict("disabled")
    return Verdict(None, credential, principal)


@dataclass(slots=True)
class Decision:
    allowed: bool
    reason: str
    verdict: Verdict
    matched_scope: Scope | None = None


def owner_grant(
    model: ReadModel, principal: PrincipalView, domain: str | None, entity_type: str, operation: str, entity_id: str
) -> tuple[str, Scope | None] | None:
    """Which of the owner's roles grants the request: ``role:<name>`` and, for a
    tenant-defined role, the scope of it that matched; None when none does."""
    builtin = principal.builtin
    for role in EVERYTHING_ROLES:
        if role in builtin:
            return f"role:{role}", None
    if "auditor" in builtin and operation in READ_OPERATIONS:
        return "role:auditor", None
    for role_id in principal.role_ids:
        role_view = model.roles.get(role_id)
        if role_view is not None and not role_view.deleted:
            scope = find_grant(role_view.scopes, domain, entity_type, operation, entity_id)
            if scope is not None:
                return f"role:{role_view.name}", scope
    return None


def permissions_of(model: ReadModel, principal: PrincipalView) -> Permissions:
    held = (model.roles.get(role_id) for role_id in principal.role_ids)
    roles = tuple(HeldRole(r.name, r.scopes) for r in held if r is not None and not r.deleted)
    return Permissions(frozenset(principal.builtin), roles)


def authorize(
    model: ReadModel,
    token: str,
    now: float,
    keys: VerificationKeys,
    domain: str | None,
    entity_type: str | None,
    operation: str | None,
    entity_id: str | None,
    tenant_id: UUID | None = None,
    bearers: Bearers = FORGETFUL,
    min_role: str | None = None,
) -> Decision:
    """May the token's holder do ``operation`` on ``entity_type``/``entity_id``, and does it
    hold a role ranked at least ``min_role``?  Either question, or both (both must hold);
    the scope triple is all None when only ``min_role`` is asked."""
    verdict = verify(model, token, now, keys, bearers)
    if not verdict.valid:
        return Decision(False, verdict.reason or "unknown", verdict)
    credential, principal = verdict.credential, verdict.principal
    assert credential is not None and principal is not None
    if credential.kind in REDEEMABLE_KINDS:
        return Decision(False, "not_a_bearer_credential", verdict)
    if tenant_id is not None and tenant_id != principal.tenant_id and "root" not in principal.roles:
        return Decision(False, "other_tenant", verdict)
    if min_role is not None:
        ranked = rank_decision(model, verdict, min_role, tenant_id)
        if not ranked.allowed or entity_type is None or operation is None or entity_id is None:
            return ranked
    assert entity_type is not None and operation is not None and entity_id is not None
    if credential.kind == "tenant_token":  # the tenant vouches for its scopes; there is no owner here
        scope = find_grant(credential.scopes, domain, entity_type, operation, entity_id)
        return Decision(scope is not None, "scope" if scope else "no_matching_scope", verdict, scope)
    if credential.scopes is not None:
        # A scope counts only while its owner still holds what it is used for.
        scope = find_grant(credential.scopes, domain, entity_type, operation, entity_id)
        if scope is None or owner_grant(model, principal, domain, entity_type, operation, entity_id) is None:
            return Decision(False, "no_matching_scope", verdict)
        return Decision(True, "scope", verdict, scope)
    held = owner_grant(model, principal, domain, entity_type, operation, entity_id)  # an unscoped credential acts as its owner
    if held is None:
        return Decision(False, "no_matching_scope", verdict)
    return Decision(True, held[0], verdict, held[1])


def rank_decision(model: ReadModel, verdict: Verdict, min_role: str, tenant_id: UUID | None) -> Decision:
    """Whether the principal holds a role ranked at least ``min_role`` in its tenant's order
    (domain/role_order.py): a few lookups per role held, the ranks computed by the fold.

    A credential restricted to scopes (a PAT, a scoped API key, a down-scoped access token,
    a tenant token) carries no rank: a narrow credential must not pass a "≥ admin" gate.
    ``min_role`` is looked up in the tenant the request concerns (``tenant_id``, else the
    principal's); root outranks every role of every tenant."""
    credential, principal = verdict.credential, verdict.principal
    if credential.kind == "tenant_token" or credential.scopes is not None:
        return Decision(False, "scoped_credential", verdict)
    concerned = tenant_id if tenant_id is not None else principal.tenant_id
    wanted = role_key(model, concerned, min_role)
    if wanted is None:
        return Decision(False, "unknown_role", verdict)
    if HIGHEST in principal.builtin:
        return Decision(True, f"role:{HIGHEST}", verdict)
    ranks = model.tenants[principal.tenant_id].ranks
    needed = ranks.get(wanted)
    if needed is None:
        return Decision(False, "unranked_role", verdict)
    best, best_name = -1, ""
    for role in principal.builtin:
        rank = ranks.get(role, -1)
        if rank > best:
            best, best_name = rank, role
    for role_id in principal.role_ids:
        rank = ranks.get(role_id, -1)  # a deleted role has left the order
        if rank > best:
            best, best_name = rank, model.roles[role_id].name
    if best < needed:
        return Decision(False, "role_too_low", verdict)
    return Decision(True, f"role:{best_name}", verdict)


def role_key(model: ReadModel, tenant_id: UUID, name: str) -> RoleKey | None:
    """A built-in role's name (any case) or the tenant's live role of that name, by id."""
    if is_builtin(name):
        return name.casefold()
    return model.role_names.get((tenant_id, name.casefold()))


def role_order_names(model: ReadModel, tenant: TenantView) -> list[str]:
    """The tenant's role order by name, lowest first, ``root`` last."""
    names = [key if isinstance(key, str) else model.roles[key].name for key in tenant.role_order if key != HIGHEST]
    return [*names, HIGHEST]


def actor_for(model: ReadModel, token: str, now: float, keys: VerificationKeys, bearers: Bearers = FORGETFUL) -> Actor | None:
    """The acting principal behind a valid bearer (PAT, API key or access token), or None.

    An access token acts through its session: the store re-check of a command looks there.
    """
    verdict = verify(model, token, now, keys, bearers)
    credential = verdict.credential
    if credential is None or verdict.principal is None or credential.kind not in BEARER_KINDS:
        return None
    credential_id = credential.session_id if credential.kind == "access_token" else credential.id
    return _actor(credential_id, credential, verdict.principal)


def redeemer_for(model: ReadModel, token: str) -> Actor | None:
    """The owner of a recovery or invitation key, identified by its secret alone.

    Its status is left to the store: a redeemed key then answers a retried ``command_id``
    with the first reply, and anything else with ``unauthenticated``.
    """
    parsed = tokens.parse(token)
    credential = model.credentials.get(parsed.credential_id) if parsed is not None else None
    if parsed is None or credential is None or credential.kind not in REDEEMABLE_KINDS or credential.kind != parsed.kind:
        return None
    if not tokens.secret_matches(parsed.secret, credential.digest):
        return None
    return _actor(credential.id, credential, model.principals[credential.owner_id])


def _actor(credential_id: UUID, credential: Any, principal: PrincipalView) -> Actor:
    return Actor(
        principal_id=principal.id,
        tenant_id=principal.tenant_id,
        roles=frozenset(principal.roles),
        credential_id=credential_id,
        credential_kind=credential.kind,
        scopes=credential.scopes,
    )


def scope_list(credential: CredentialView) -> list[dict[str, str | None]] | None:
    """The credential's scopes; None when it has none of its own and acts with its owner's roles."""
    return None if credential.scopes is None else [s.to_dict() for s in credential.scopes.values()]


def user_detail(principal: PrincipalView) -> dict[str, Any]:
    return {
        **principal_view(principal),
        "username": principal.username,
        "disabled": principal.disabled,
        "deleted": principal.deleted,
        "has_password": principal.has_password,
        "created_at": principal.created_at,
        **principal.profile,
    }


def credential_detail(credential: CredentialView, now: float) -> dict[str, Any]:
    expired = credential.expires_ts is not None and credential.expires_ts <= now
    detail = {
        **credential_view(credential),
        "user_id": str(credential.owner_id),
        "tenant_id": str(credential.tenant_id),
        "name": credential.name,
        "status": "expired" if credential.status == "active" and expired else credential.status,
        "created_at": credential.created_at,
        "issued_by": credential.issued_by,
        "updated_at": rfc3339_epoch(credential.created if credential.changed is None else credential.changed),
        "last_used_at": rfc3339_epoch(credential.used_ts),
        "scopes": scope_list(credential),
    }
    if credential.kind == "pat":
        detail["description"] = credential.description
    if credential.revoked_reason is not None:
        detail["revoked_reason"] = credential.revoked_reason
        detail["revoked_at"] = rfc3339_epoch(credential.revoked_ts)
    return detail


def role_detail(role: RoleView) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "tenant_id": str(role.tenant_id),
        "name": role.name,
        "description": role.description,
        "scopes": [s.to_dict() for s in role.scopes.values()],
        "created_at": role.created_at,
    }


def session_detail(session: SessionView, now: float) -> dict[str, Any]:
    status = "revoked" if session.revoked else "expired" if session.expires_ts <= now else "active"
    return {
        "id": str(session.id),
        "user_id": str(session.user_id),
        "tenant_id": str(session.tenant_id),
        "method": session.method,
        "status": status,
        "revoked_reason": session.revoked_reason,
        "rotations": session.rotations,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
    }


def page(ids: dict[UUID, None], after: UUID | None, limit: int) -> tuple[list[UUID], str | None]:
    """One page of an insertion-ordered id list, and the cursor of the next page."""
    ordered = list(ids)
    start = 0
    if after is not None:
        try:
            start = ordered.index(after) + 1
        except ValueError:
            start = len(ordered)
    chunk = ordered[start : start + limit]
    more = start + limit < len(ordered)
    return chunk, (str(chunk[-1]) if more and chunk else None)


def matching_users(
    model: ReadModel, tenant_id: UUID, username_prefix: str | None, role: str | None, status: str | None
) -> dict[UUID, None]:
    """The tenant's users (in the order they registered) whose username starts with
    ``username_prefix`` and who hold ``role`` (both case-insensitively) and have ``status``,
    each only where given.  A scan of the tenant: for admin tools, not a request path."""
    prefix = None if username_prefix is None else username_prefix.casefold()
    wanted = None if role is None else role.casefold()
    found: dict[UUID, None] = {}
    for user_id in model.users_by_tenant.get(tenant_id, {}):
        principal = model.principals[user_id]
        if prefix is not None and not principal.username.casefold().startswith(prefix):
            continue
        if wanted is not None and wanted not in (name.casefold() for name in principal.roles):
            continue
        if status is not None and status != _status(principal):
            continue
        found[user_id] = None
    return found


def _status(principal: PrincipalView) -> str:
    return "deleted" if principal.deleted else "disabled" if principal.disabled else "active"


def signing_key_for(model: ReadModel, tenant_id: UUID) -> SigningKeyView | None:
    """The tenant's newest active asymmetric key, else the system's: what signs its tokens."""
    for owner in (tenant_id, SYSTEM_TENANT_ID):
        for kid in reversed(list(model.signing_keys_by_tenant.get(owner, {}))):
            key = model.signing_keys[kid]
            if key.status == "active" and key.alg in ASYMMETRIC_ALGS:
                return key
    return None


def jwks(model: ReadModel, tenant_id: UUID | None) -> list[dict[str, str]]:
    """Public keys that verify tokens (active and retired, never HS256 or revoked)."""
    owners = (SYSTEM_TENANT_ID,) if tenant_id is None or tenant_id == SYSTEM_TENANT_ID else (SYSTEM_TENANT_ID, tenant_id)
    return [
        model.signing_keys[kid].public_jwk  # type: ignore[misc]
        for owner in owners
        for kid in model.signing_keys_by_tenant.get(owner, {})
        if model.signing_keys[kid].status != "revoked" and model.signing_keys[kid].public_jwk is not None
    ]
