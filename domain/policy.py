"""Who may do what.  Roles, highest first: root (every tenant), admin (own tenant),
auditor (read-only in own tenant), user (self-service).  A credential never carries more
authority than its owner: a scoped credential (every PAT, and an API key issued with
scopes) must also hold a scope in domain ``authbus`` for the entity it acts on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from authbus.domain.errors import Forbidden
from authbus.domain.permissions import ADMIN_DOMAIN
from authbus.domain.scopes import Scope, ScopeKey, find_grant
from authbus.domain.tenant import SYSTEM_TENANT_ID


@dataclass(frozen=True, slots=True)
class Actor:
    principal_id: UUID
    tenant_id: UUID
    roles: frozenset[str]
    credential_id: UUID
    credential_kind: str
    scopes: dict[ScopeKey, Scope] | None  # None: acts with its owner's full authority

    @property
    def id(self) -> str:
        return str(self.principal_id)

    @property
    def is_root(self) -> bool:
        return "root" in self.roles

    def administers(self, tenant_id: UUID) -> bool:
        return self.is_root or ("admin" in self.roles and tenant_id == self.tenant_id)

    def audits(self, tenant_id: UUID) -> bool:
        return self.administers(tenant_id) or ("auditor" in self.roles and tenant_id == self.tenant_id)

    def sees(self, tenant_id: UUID) -> bool:
        return self.is_root or tenant_id == self.tenant_id


def require_scope(actor: Actor, entity_type: str, operation: str, entity_id: UUID | str) -> None:
    if actor.scopes is None:
        return
    if find_grant(actor.scopes, ADMIN_DOMAIN, entity_type, operation, str(entity_id)) is None:
        raise Forbidden(
            f"this {actor.credential_kind} holds no scope for {entity_type}/{operation}",
            required_scope={
                "domain": ADMIN_DOMAIN,
                "entity_type": entity_type,
                "operation": operation,
                "entity_id": str(entity_id),
            },
        )


def require_admin(actor: Actor, tenant_id: UUID) -> None:
    if not actor.administers(tenant_id):
        raise Forbidden("this needs the admin role in the tenant")


def require_root(actor: Actor) -> None:
    if not actor.is_root:
        raise Forbidden("this needs the root role")


def require_self_or_admin(actor: Actor, user_id: UUID, tenant_id: UUID, roles: Iterable[str]) -> None:
    """The user itself, or an admin of its tenant; a root user only by root."""
    if actor.principal_id == user_id:
        return
    if not actor.administers(tenant_id):
        raise Forbidden("only the user itself or an admin of its tenant may do this")
    require_outranks(actor, roles)


def require_may_grant(actor: Actor, role: str, tenant_id: UUID, field: str) -> None:
    """Any role an admin holds may be granted in its tenant, but root only by root, and
    only in the system tenant."""
    if role == "root" and not (actor.is_root and tenant_id == SYSTEM_TENANT_ID):
        raise Forbidden("only root grants root, and only in the system tenant", field=field)


def require_outranks(actor: Actor, roles: Iterable[str]) -> None:
    if "root" in roles and not actor.is_root:
        raise Forbidden("only root acts on a root user or its credentials")


def require_may_mint(actor: Actor, owner_id: UUID | None) -> None:
    """Credentials cannot mint credentials that outlive or out-scope them.

    A PAT never creates PATs, keys, passwords or public keys; an API key never creates them
    for its own principal (it may for others, as its owner's admin role allows).  Root's
    bootstrap key is an API key, so it can set up every other principal but cannot
    perpetuate itself.  A person mints for themselves with the access token of a login.
    """
    if actor.credential_kind == "pat":
        raise Forbidden("a PAT cannot create credentials")
    if actor.credential_kind == "access_token" and actor.scopes is not None:
        raise Forbidden("a down-scoped access token cannot create credentials")
    if actor.credential_kind == "api_key" and actor.principal_id == owner_id:
        raise Forbidden("an API key cannot create credentials for its own principal")
