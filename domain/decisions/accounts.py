"""Users: registration, passwords, status, role grants, the public keys they log in with,
and a recovery or invitation key redeemed for a password."""

from __future__ import annotations

from typing import Any

from authbus.domain import policy, public_keys
from authbus.domain.commands import (
    ChangePassword,
    DeleteUser,
    DisableUser,
    EnableUser,
    GrantRole,
    RedeemKey,
    RegisterPublicKey,
    RegisterUser,
    RemovePublicKey,
    RevokeRole,
    UpdateUser,
)
from authbus.domain.credentials import Key
from authbus.domain.decisions.access import active_tenant, claim_name, move_claim, release_claim, resolve_role, visible_user
from authbus.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from authbus.domain.policy import Actor
from authbus.domain.role import BUILTIN_ROLES
from authbus.domain.unit_of_work import UnitOfWork
from authbus.domain.user import User, public_key_claim_id, username_claim_id


def register_user(command: RegisterUser, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    if not actor.sees(command.tenant_id):
        raise Forbidden("you cannot register users in another tenant", field="tenant_id")
    policy.require_admin(actor, command.tenant_id)
    policy.require_scope(actor, "user", "create", "*")
    active_tenant(uow, command.tenant_id)
    resolved = [resolve_role(uow, command.tenant_id, name, f"roles[{i}]") for i, name in enumerate(command.roles)]
    roles = sorted({name for name, role_id in resolved if role_id is None}, key=BUILTIN_ROLES.index)
    for role in roles:
        policy.require_may_grant(actor, role, command.tenant_id, "roles")
    if command.password is not None:  # a user one can log in as: a credential, by another route
        policy.require_may_mint(actor, None)
    password_hash = uow.hash_password(command.password) if command.password is not None else None
    user = User(
        tenant_id=command.tenant_id,
        username=command.username,
        kind=command.kind,
        roles=roles,
        password_hash=password_hash,
        custom_roles={str(role_id): name for name, role_id in resolved if role_id is not None} or None,
        **uow.meta,
    )
    claim_name(uow, username_claim_id(command.tenant_id, command.username), "username", command.username, user.id, "username")
    uow.add(user)
    return {"user_id": str(user.id)}


def update_user(command: UpdateUser, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """A new username (the old one is free for others from then on), a profile, or both;
    by the user itself or an admin of its tenant."""
    profile = (command.display_name, command.email, command.metadata)
    if command.username is None and all(part is None for part in profile):
        raise InvalidRequest("give username, display_name, email or metadata", field="username")
    user = visible_user(uow, actor, command.user_id)
    policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
    policy.require_scope(actor, "user", "update", user.id)
    if command.username is not None:
        old_claim = username_claim_id(user.tenant_id, user.username)
        user.rename(username=command.username, **uow.meta)
        new_claim = username_claim_id(user.tenant_id, command.username)
        move_claim(uow, old_claim, new_claim, "username", command.username, user.id, ("user_id", "username"))
    if any(part is not None for part in profile):
        user.update(display_name=command.display_name, email=command.email, metadata=command.metadata, **uow.meta)
    uow.add(user)
    return {}


def delete_user(command: DeleteUser, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """By the user itself or an admin of its tenant; never a root user.  Its username and
    public keys are free for others at once; its credentials and sessions act no more."""
    user = visible_user(uow, actor, command.user_id)
    if "root" in user.roles:
        raise Forbidden("a root user cannot be deleted", field="user_id")
    policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
    policy.require_scope(actor, "user", "delete", user.id)
    claims = [username_claim_id(user.tenant_id, user.username)]
    claims += [public_key_claim_id(user.tenant_id, key) for key in user.public_keys]
    for claim_id in claims:
        release_claim(uow, claim_id, "user_id")
    user.delete(reason=command.reason, **uow.meta)
    uow.add(user)
    return {}


def change_password(command: ChangePassword, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    user = visible_user(uow, actor, command.user_id)
    policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
    policy.require_may_mint(actor, user.id)  # a password logs in: it is a credential too
    policy.require_scope(actor, "user", "update", user.id)
    own_password = actor.principal_id == user.id and not actor.administers(user.tenant_id)
    if (
        own_password
        and user.password_hash is not None
        and (command.old_password is None or not uow.password_matches(command.old_password, user.password_hash))
    ):
        raise Forbidden("old_password does not match", field="old_password")
    user.change_password(password_hash=uow.hash_password(command.password), **uow.meta)
    uow.add(user)
    return {}


def _changed_by_an_admin(command: DisableUser | EnableUser | GrantRole | RevokeRole, actor: Actor, uow: UnitOfWork) -> User:
    """The user whose status or roles an admin of its tenant changes: never the admin itself."""
    user = visible_user(uow, actor, command.user_id)
    policy.require_admin(actor, user.tenant_id)
    policy.require_scope(actor, "user", "update", user.id)
    if user.id == actor.principal_id:
        raise Forbidden("you cannot change your own status or roles", field="user_id")
    policy.require_outranks(actor, user.roles)
    return user


def disable_user(command: DisableUser, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    user = _changed_by_an_admin(command, actor, uow)
    user.disable(reason=command.reason, **uow.meta)
    uow.add(user)
    return {}


def enable_user(command: EnableUser, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    user = _changed_by_an_admin(command, actor, uow)
    user.enable(**uow.meta)
    uow.add(user)
    return {}


def grant_role(command: GrantRole, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    user = _changed_by_an_admin(command, actor, uow)
    name, role_id = resolve_role(uow, user.tenant_id, command.role, "role")
    policy.require_may_grant(actor, name, user.tenant_id, "role")
    user.grant_role(role=name, role_id=role_id, **uow.meta)
    uow.add(user)
    return {}


def revoke_role(command: RevokeRole, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    user = _changed_by_an_admin(command, actor, uow)
    # A deleted role's grant is inert but may still be cleared by its name, also once a
    # new role has taken that name (and the user does not hold the new one).
    stale = [rid for rid, held in user.custom_roles.items() if held.casefold() == command.role.casefold()]
    try:
        name, role_id = resolve_role(uow, user.tenant_id, command.role, "role")
    except NotFound:
        if not stale:
            raise
        name, role_id = user.custom_roles[stale[0]], stale[0]
    if role_id is not None and role_id not in user.custom_roles and stale:
        name, role_id = user.custom_roles[stale[0]], stale[0]
    user.revoke_role(role=name, role_id=role_id, reason=command.reason, **uow.meta)
    uow.add(user)
    return {}


def _keyholder(command: RegisterPublicKey | RemovePublicKey, actor: Actor, uow: UnitOfWork) -> User:
    user = visible_user(uow, actor, command.user_id)
    policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
    policy.require_may_mint(actor, user.id)  # a public key logs in: it is a credential too
    policy.require_scope(actor, "user", "update", user.id)
    return user


def register_public_key(command: RegisterPublicKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    public_key = public_keys.canonical(command.public_key)
    user = _keyholder(command, actor, uow)
    claim_id = public_key_claim_id(user.tenant_id, public_key)
    user.register_public_key(public_key=public_key, **uow.meta)
    claim_name(uow, claim_id, "public_key", public_key, user.id, "public_key")
    uow.add(user)
    return {"key_id": str(claim_id), "public_key": public_key}


def remove_public_key(command: RemovePublicKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    public_key = public_keys.canonical(command.public_key)
    user = _keyholder(command, actor, uow)
    user.remove_public_key(public_key=public_key, **uow.meta)
    uow.add(user)
    release_claim(uow, public_key_claim_id(user.tenant_id, public_key), "public_key")
    return {}


def redeem_key(command: RedeemKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    if actor.credential_id != command.key_id or actor.credential_kind not in ("recovery", "invitation"):
        raise Forbidden("only the key itself redeems it", field="token")
    key = uow.get(Key, command.key_id, "token")
    key.redeem(uow.now, **uow.meta)  # single use: a second redeem finds it redeemed
    user = uow.get(User, key.user_id, "token")
    if user.disabled:
        raise Conflict("user is disabled", field="token")
    user.change_password(password_hash=uow.hash_password(command.password), **uow.meta)
    uow.add(key, user)
    return {"user_id": str(user.id)}
