"""Tenants: created and switched off and on by root, renamed and described (tags,
metadata) by their admins; the system tenant and its root principal made once, at
bootstrap."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from authbus.domain import policy
from authbus.domain.commands import CreateTenant, DisableTenant, EnableTenant, RenameTenant, SetTenantPolicy, UpdateTenant
from authbus.domain.credentials import Key
from authbus.domain.decisions.access import claim_name, move_claim
from authbus.domain.errors import Conflict, Forbidden, InvalidRequest, not_found
from authbus.domain.policy import Actor
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import DEFAULT_POLICY, SYSTEM_TENANT_ID, Tenant, tenant_name_claim_id
from authbus.domain.tokens import hash_for_storage
from authbus.domain.unit_of_work import UnitOfWork
from authbus.domain.user import User, username_claim_id


def create_tenant(command: CreateTenant, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    policy.require_root(actor)
    policy.require_scope(actor, "tenant", "create", "*")
    tenant = Tenant(name=command.name, **uow.meta)
    claim_name(uow, tenant_name_claim_id(command.name), "tenant", command.name, tenant.id, "name")
    uow.add(tenant)
    return {"tenant_id": str(tenant.id)}


def _switched(command: DisableTenant | EnableTenant, actor: Actor, uow: UnitOfWork) -> Tenant:
    policy.require_root(actor)
    policy.require_scope(actor, "tenant", "update", command.tenant_id)
    if command.tenant_id == SYSTEM_TENANT_ID:
        raise Forbidden("the system tenant is always enabled", field="tenant_id")
    return uow.get(Tenant, command.tenant_id, "tenant_id")


def disable_tenant(command: DisableTenant, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    tenant = _switched(command, actor, uow)
    tenant.disable(reason=command.reason, **uow.meta)
    uow.add(tenant)
    return {}


def enable_tenant(command: EnableTenant, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    tenant = _switched(command, actor, uow)
    tenant.enable(**uow.meta)
    uow.add(tenant)
    return {}


def _administered(command: RenameTenant | UpdateTenant | SetTenantPolicy, actor: Actor, uow: UnitOfWork) -> Tenant:
    """A tenant its admin (or root) describes; another tenant's is not found."""
    if not actor.sees(command.tenant_id):
        raise not_found("tenant_id")
    tenant = uow.get(Tenant, command.tenant_id, "tenant_id")
    policy.require_admin(actor, tenant.id)
    policy.require_scope(actor, "tenant", "update", tenant.id)
    return tenant


def rename_tenant(command: RenameTenant, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """The name moves: the old one is free for another tenant from then on."""
    tenant = _administered(command, actor, uow)
    old_claim, new_claim = tenant_name_claim_id(tenant.name), tenant_name_claim_id(command.name)
    tenant.rename(name=command.name, **uow.meta)
    move_claim(uow, old_claim, new_claim, "tenant", command.name, tenant.id, ("tenant_id", "name"))
    uow.add(tenant)
    return {}


def update_tenant(command: UpdateTenant, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    if command.tags is None and command.metadata is None:
        raise InvalidRequest("give tags, metadata or both", field="tags")
    tenant = _administered(command, actor, uow)
    tenant.update(tags=command.tags, metadata=command.metadata, **uow.meta)
    uow.add(tenant)
    return {}


def set_tenant_policy(command: SetTenantPolicy, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    tenant = _administered(command, actor, uow)
    policy = {name: getattr(command, name) for name in DEFAULT_POLICY}
    terms = uow.terms.of_tenant(policy)
    if terms.session_seconds < terms.access_seconds:
        raise InvalidRequest(
            f"a session ({terms.session_seconds} s) must last at least as long as its access tokens ({terms.access_seconds} s)",
            field="session_seconds",
        )
    tenant.set_policy(policy=policy, **uow.meta)
    uow.add(tenant)
    return {}


def bootstrap(uow: UnitOfWork) -> dict[str, Any]:
    """The system tenant, its root service principal and that principal's API key."""
    if uow.exists(SYSTEM_TENANT_ID):
        raise Conflict("authbus is already bootstrapped")
    tenant = Tenant(name="system", id=SYSTEM_TENANT_ID, **uow.meta)
    claim_name(uow, tenant_name_claim_id("system"), "tenant", "system", tenant.id, "name")
    root = User(tenant_id=tenant.id, username="root", kind="service", roles=["root"], password_hash=None, **uow.meta)
    claim_name(uow, username_claim_id(tenant.id, "root"), "username", "root", root.id, "username")
    key_id = uuid4()
    token = uow.mint("api_key", key_id)
    key = Key(
        id=key_id,
        user_id=root.id,
        tenant_id=tenant.id,
        kind="api_key",
        name="root bootstrap key",
        secret_hash=hash_for_storage(token),
        expires_at=None,
        scopes=None,
        **uow.meta,
    )
    kid = uuid4()  # signs access tokens for every tenant that has no key of its own
    public_jwk, sealed, _ = uow.new_signing_key("EdDSA", str(kid))
    signing = SigningKey(id=kid, tenant_id=tenant.id, alg="EdDSA", public_jwk=public_jwk, sealed_private=sealed, **uow.meta)
    uow.add(tenant, root, key, signing)
    return {"tenant_id": str(tenant.id), "user_id": str(root.id), "key_id": str(key.id), "token": token}
