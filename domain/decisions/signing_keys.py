"""A tenant's signing keys: created (its JWKS grows), retired (verifies, signs no more) and
revoked (verifies nothing)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from authbus.domain import policy
from authbus.domain.commands import CreateSigningKey, RetireSigningKey, RevokeSigningKey
from authbus.domain.decisions.access import active_tenant, visible
from authbus.domain.errors import Forbidden, InvalidRequest
from authbus.domain.policy import Actor
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.domain.unit_of_work import UnitOfWork


def create_signing_key(command: CreateSigningKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    tenant_id = command.tenant_id or actor.tenant_id
    if not actor.sees(tenant_id):
        raise Forbidden("you cannot create signing keys in another tenant", field="tenant_id")
    policy.require_admin(actor, tenant_id)
    policy.require_may_mint(actor, None)
    policy.require_scope(actor, "signing_key", "create", "*")
    active_tenant(uow, tenant_id)
    if command.alg == "HS256" and tenant_id == SYSTEM_TENANT_ID:
        raise InvalidRequest("HS256 keys are for tenants to mint their own tokens, not the system tenant", field="alg")
    if command.alg == "HS256" and command.private_key is not None:
        raise InvalidRequest("an HS256 key takes no private_key: its secret is made for it", field="private_key")
    kid = uuid4()
    public_jwk, sealed, secret = uow.new_signing_key(command.alg, str(kid), command.private_key)
    key = SigningKey(id=kid, tenant_id=tenant_id, alg=command.alg, public_jwk=public_jwk, sealed_private=sealed, **uow.meta)
    uow.add(key)
    result: dict[str, Any] = {"kid": key.kid, "alg": command.alg, "tenant_id": str(tenant_id)}
    if secret is not None:
        result["secret"] = secret
    return result


def _administered(command: RetireSigningKey | RevokeSigningKey, actor: Actor, uow: UnitOfWork, operation: str) -> SigningKey:
    key = visible(uow, actor, SigningKey, command.kid, "kid")
    policy.require_admin(actor, key.tenant_id)
    policy.require_scope(actor, "signing_key", operation, key.id)
    return key


def retire_signing_key(command: RetireSigningKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    key = _administered(command, actor, uow, "update")
    key.retire(**uow.meta)
    uow.add(key)
    return {}


def revoke_signing_key(command: RevokeSigningKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    key = _administered(command, actor, uow, "delete")
    key.revoke(reason=command.reason, **uow.meta)
    uow.add(key)
    return {}
