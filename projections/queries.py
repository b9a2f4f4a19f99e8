"""Answers computed from the read model alone: verification, authorization, the acting
principal behind a bearer credential, and the admin views.  The hot path is a parse, a
few dictionary lookups, one SHA-256 and a constant-time compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from authbus.domain import tokens
from authbus.domain.policy import Actor
from authbus.domain.scopes import Scope, find_grant
from authbus.projections.read_model import CredentialView, PrincipalView, ReadModel

BEARER_KINDS = frozenset({"pat", "api_key"})
REDEEMABLE_KINDS = frozenset({"recovery", "invitation"})


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str | None  # None when valid
    credential: CredentialView | None = None
    principal: PrincipalView | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


def verify(model: ReadModel, token: str, now: float) -> Verdict:
    parsed = tokens.parse(token)
    if parsed is None:
        return Verdict("malformed")
    credential = model.credentials.get(parsed.credential_id)
    # A wrong secret answers exactly like an unknown id, before any status is revealed.
    if credential is None or credential.kind != parsed.kind or not tokens.secret_matches(parsed.secret, credential.digest):
        return Verdict("unknown")
    if credential.status != "active":
        return Verdict("revoked")
    if credential.expires_ts is not None and credential.expires_ts <= now:
        return Verdict("expired")
    principal = model.principals[credential.owner_id]
    if principal.disabled or model.tenants[principal.tenant_id].disabled:
        return Verdict("disabled")
    return Verdict(None, credential, principal)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    verdict: Verdict
    matched_scope: Scope | None = None


ROLE_OPERATIONS = {"auditor": frozenset({"read", "list"})}


def authorize(
    model: ReadModel,
    token: str,
    now: float,
    domain: str | None,
    entity_type: str,
    operation: str,
    entity_id: str,
    tenant_id: UUID | None = None,
) -> Decision:
    verdict = verify(model, token, now)
    if not verdict.valid:
        return Decision(False, verdict.reason or "unknown", verdict)
    credential, principal = verdict.credential, verdict.principal
    assert credential is not None and principal is not None
    if credential.kind in REDEEMABLE_KINDS:
        return Decision(False, "not_a_bearer_credential", verdict)
    if tenant_id is not None and tenant_id != principal.tenant_id and "root" not in principal.roles:
        return Decision(False, "other_tenant", verdict)
    if credential.scopes is not None:
        scope = find_grant(credential.scopes, domain, entity_type, operation, entity_id)
        return Decision(scope is not None, "scope" if scope else "no_matching_scope", verdict, scope)
    # An unscoped credential acts with its owner's roles.
    for role in principal.roles:
        if role in ("root", "admin") or operation in ROLE_OPERATIONS.get(role, ()):
            return Decision(True, f"role:{role}", verdict)
    return Decision(False, "no_matching_scope", verdict)


def actor_for(model: ReadModel, token: str, now: float) -> Actor | None:
    """The acting principal behind a valid bearer credential (PAT or API key), or None."""
    verdict = verify(model, token, now)
    if verdict.credential is None or verdict.principal is None or verdict.credential.kind not in BEARER_KINDS:
        return None
    return _actor(verdict.credential, verdict.principal)


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
    return _actor(credential, model.principals[credential.owner_id])


def _actor(credential: CredentialView, principal: PrincipalView) -> Actor:
    return Actor(
        principal_id=principal.id,
        tenant_id=principal.tenant_id,
        roles=frozenset(principal.roles),
        credential_id=credential.id,
        credential_kind=credential.kind,
        scopes=credential.scopes,
    )


def credential_view(credential: CredentialView) -> dict[str, Any]:
    return {"id": str(credential.id), "kind": credential.kind, "expires_at": credential.expires_at}


def principal_view(principal: PrincipalView) -> dict[str, Any]:
    return {
        "id": str(principal.id),
        "tenant_id": str(principal.tenant_id),
        "kind": principal.kind,
        "roles": list(principal.roles),
    }


def scope_list(credential: CredentialView) -> list[dict[str, str | None]] | None:
    """The credential's scopes; None when it has none of its own and acts with its owner's roles."""
    return None if credential.scopes is None else [s.to_dict() for s in credential.scopes.values()]


def user_detail(principal: PrincipalView) -> dict[str, Any]:
    return {
        **principal_view(principal),
        "username": principal.username,
        "disabled": principal.disabled,
        "has_password": principal.has_password,
        "created_at": principal.created_at,
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
        "scopes": scope_list(credential),
    }
    if credential.kind == "pat":
        detail["description"] = credential.description
    if credential.revoked_reason is not None:
        detail["revoked_reason"] = credential.revoked_reason
    return detail


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
