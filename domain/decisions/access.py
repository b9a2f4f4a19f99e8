"""What most decisions ask first: who is acting as the store has it now, which entities it
may see, and what a credential's owner holds.  Tenancy answers ``not_found`` for what the
actor cannot see, the same answer as for an id that does not exist."""

from __future__ import annotations

import dataclasses
from typing import TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from authbus.domain import policy
from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.errors import Conflict, Forbidden, NotFound, Unauthenticated, not_found
from authbus.domain.permissions import HeldRole, Permissions
from authbus.domain.policy import Actor
from authbus.domain.registry import NameClaim
from authbus.domain.role import Role, is_builtin, role_name_claim_id
from authbus.domain.scopes import Scope
from authbus.domain.session import Session
from authbus.domain.tenant import Tenant
from authbus.domain.unit_of_work import UnitOfWork
from authbus.domain.user import User

A = TypeVar("A", bound=Aggregate)


def current_actor(actor: Actor, uow: UnitOfWork, field: str = "Authorization") -> Actor:
    """The actor as the store has it now.

    The read model that authenticated the bearer may lag the store by a few milliseconds;
    a command must not act on a credential revoked, a user disabled or a role or scope
    removed in that window, so the deciding read sees them here.
    """
    refused = Unauthenticated("the credential is not valid", field=field)
    try:
        if actor.credential_kind == "access_token":  # its session stands for it
            session = uow.get(Session, actor.credential_id, field)
            if session.revoked or session.expires_at <= uow.now:
                raise refused
            # Its scopes, if the login asked for some, are in the signed token itself.
            owner_id, scopes = session.user_id, actor.scopes
        else:
            cls = PersonalAccessToken if actor.credential_kind == "pat" else Key
            credential = uow.get(cls, actor.credential_id, field)
            credential.require_active(uow.now)
            owner_id, stored = credential.user_id, credential.scopes
            scopes = None if stored is None else {s.key: s for s in map(Scope.from_dict, stored)}
        user = uow.get(User, owner_id, field)
        tenant = uow.get(Tenant, user.tenant_id, field)
    except (NotFound, Conflict):
        raise refused from None
    if user.disabled or tenant.disabled:
        raise refused
    return dataclasses.replace(actor, roles=frozenset(user.roles), scopes=scopes)


def visible_user(uow: UnitOfWork, actor: Actor, user_id: UUID) -> User:
    """The user, or not_found when it is in a tenant the actor cannot see."""
    user = uow.get(User, user_id, "user_id")
    if not actor.sees(user.tenant_id) or user.deleted:
        raise not_found("user_id")
    return user


def visible(uow: UnitOfWork, actor: Actor, cls: type[A], entity_id: UUID, field: str) -> A:
    """A tenant's entity (a credential, a session, a role, a signing key), or not_found
    when it is in a tenant the actor cannot see."""
    entity = uow.get(cls, entity_id, field)
    if not actor.sees(entity.tenant_id):  # type: ignore[attr-defined]
        raise not_found(field)
    return entity


def require_owner_or_admin(actor: Actor, uow: UnitOfWork, owner_id: UUID, field: str) -> None:
    """The owner of the credential at ``field``, or an admin of its tenant; a deleted
    user's credentials are gone with it."""
    owner = uow.get(User, owner_id, "user_id")
    if owner.deleted:
        raise not_found(field)
    policy.require_self_or_admin(actor, owner.id, owner.tenant_id, owner.roles)


def active_tenant(uow: UnitOfWork, tenant_id: UUID) -> Tenant:
    tenant = uow.get(Tenant, tenant_id, "tenant_id")
    if tenant.disabled:
        raise Conflict("tenant is disabled", field="tenant_id")
    return tenant


def claim_name(uow: UnitOfWork, claim_id: UUID, namespace: str, name: str, owner_id: UUID, field: str) -> None:
    """Take a unique name (a tenant's, a username, a role's, a public key) for ``owner_id``:
    a new claim, or a released one taken again."""
    if not uow.exists(claim_id):
        uow.add(NameClaim(namespace=namespace, name=name, owner_id=owner_id, id=claim_id, **uow.meta))
        return
    claim = uow.get(NameClaim, claim_id, field)
    if claim.owner_id is not None:
        raise Conflict(f"{field} is already taken", field=field)
    claim.reclaim(owner_id=owner_id, **uow.meta)
    uow.add(claim)


def release_claim(uow: UnitOfWork, claim_id: UUID, field: str) -> None:
    """A unique name given up: free for others from then on."""
    claim = uow.get(NameClaim, claim_id, field)
    claim.release(**uow.meta)
    uow.add(claim)


def move_claim(uow: UnitOfWork, old: UUID, new: UUID, namespace: str, name: str, owner_id: UUID, fields: tuple[str, str]) -> None:
    """A rename's unique name: the old claim released (free for others from then on) and the
    new one taken, unless both are one claim (another spelling of the same name).  ``fields``:
    where the owner and the new name are in the request."""
    if new == old:
        return
    release_claim(uow, old, fields[0])
    claim_name(uow, new, namespace, name, owner_id, fields[1])


def resolve_role(uow: UnitOfWork, tenant_id: UUID, name: str, field: str) -> tuple[str, UUID | None]:
    """A built-in role by its name (any case), or the tenant's live role of that name."""
    if is_builtin(name):
        return name.casefold(), None
    claim_id = role_name_claim_id(tenant_id, name)
    if uow.exists(claim_id):
        claim = uow.get(NameClaim, claim_id, field)
        if claim.owner_id is not None:
            role = uow.get(Role, claim.owner_id, field)
            if not role.deleted and role.tenant_id == tenant_id:
                return role.name, role.id
    raise not_found(field)


def permissions_of(uow: UnitOfWork, user: User) -> Permissions:
    """What ``user`` holds, as the store has it now: the bound on its credentials' scopes."""
    roles = []
    for role_id in user.custom_roles:
        try:
            role = uow.get(Role, role_id, "user_id")
        except NotFound:  # pragma: no cover - a granted role always exists
            continue
        if not role.deleted:
            roles.append(HeldRole(role.name, {key: Scope.from_dict(scope) for key, scope in role.scopes.items()}))
    return Permissions(frozenset(user.roles), tuple(roles))


def require_held(held: Permissions, scopes: list[Scope], field: str, indexed: bool = True) -> None:
    for index, scope in enumerate(scopes):
        if not held.holds(scope):
            raise Forbidden(
                "a credential never carries more than its owner: the owner does not hold this scope",
                field=f"{field}[{index}]" if indexed else field,
            )


def unique_scopes(scopes: list[Scope]) -> list[dict[str, str | None]]:
    return list({s.key: s.to_dict() for s in scopes}.values())
