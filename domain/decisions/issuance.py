"""Credentials a principal holds: PATs and typed keys, minted within what their owner
holds, narrowed, reset and revoked; and sessions ended early."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from authbus.domain import policy
from authbus.domain.commands import (
    AddScope,
    AddScopes,
    CreatePAT,
    IssueKey,
    RemoveScope,
    RemoveScopes,
    ResetPATSecret,
    RevokeKey,
    RevokePAT,
    RevokeSession,
    UpdatePAT,
)
from authbus.domain.credentials import Key, PersonalAccessToken, expiry
from authbus.domain.decisions.access import (
    active_tenant,
    permissions_of,
    require_held,
    require_owner_or_admin,
    unique_scopes,
    visible,
    visible_user,
)
from authbus.domain.errors import Conflict, Forbidden, InvalidRequest
from authbus.domain.policy import Actor
from authbus.domain.scopes import Scope
from authbus.domain.session import Session
from authbus.domain.times import rfc3339
from authbus.domain.tokens import hash_for_storage
from authbus.domain.unit_of_work import UnitOfWork
from authbus.domain.user import User


def _owner_of_new(actor: Actor, uow: UnitOfWork, user_id: UUID, entity_type: str) -> User:
    """The user a new credential is minted for: one the actor may mint for, active."""
    user = visible_user(uow, actor, user_id)
    policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
    policy.require_may_mint(actor, user.id)
    policy.require_scope(actor, entity_type, "create", "*")
    if user.disabled:
        raise Conflict("user is disabled", field="user_id")
    active_tenant(uow, user.tenant_id)
    return user


def create_pat(command: CreatePAT, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    owner = _owner_of_new(actor, uow, command.user_id or actor.principal_id, "pat")
    require_held(permissions_of(uow, owner), command.scopes, "scopes")
    pat_id = uuid4()
    token = uow.mint("pat", pat_id)
    expires_at = expiry("pat", command.expires_in, uow.now)
    pat = PersonalAccessToken(
        id=pat_id,
        user_id=owner.id,
        tenant_id=owner.tenant_id,
        name=command.name,
        description=command.description,
        secret_hash=hash_for_storage(token),
        expires_at=expires_at,
        scopes=unique_scopes(command.scopes),
        **uow.meta,
    )
    uow.add(pat)
    return {"pat_id": str(pat.id), "token": token, "expires_at": rfc3339(expires_at)}


def _managed_pat(
    command: AddScope | AddScopes | RemoveScope | RemoveScopes | RevokePAT | ResetPATSecret | UpdatePAT,
    actor: Actor,
    uow: UnitOfWork,
    operation: str,
) -> PersonalAccessToken:
    pat = visible(uow, actor, PersonalAccessToken, command.pat_id, "pat_id")
    require_owner_or_admin(actor, uow, pat.user_id, "pat_id")
    policy.require_scope(actor, "pat", operation, pat.id)
    return pat


def add_scope(command: AddScope, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    pat = _managed_pat(command, actor, uow, "update")
    if actor.credential_id == pat.id:
        raise Forbidden("a credential cannot widen itself", field="pat_id")
    require_held(permissions_of(uow, uow.get(User, pat.user_id, "pat_id")), [command.scope], "scope", indexed=False)
    pat.add_scope(scope=command.scope.to_dict(), now=uow.now, **uow.meta)
    uow.add(pat)
    return {}


def remove_scope(command: RemoveScope, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    pat = _managed_pat(command, actor, uow, "update")
    pat.remove_scope(scope=command.scope.to_dict(), now=uow.now, **uow.meta)
    uow.add(pat)
    return {}


def add_scopes(command: AddScopes, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """Each as add_scope adds it, in one transaction: one refused, none is added."""
    pat = _managed_pat(command, actor, uow, "update")
    if actor.credential_id == pat.id:
        raise Forbidden("a credential cannot widen itself", field="pat_id")
    require_held(permissions_of(uow, uow.get(User, pat.user_id, "pat_id")), command.scopes, "scopes")
    for index, scope in _first_of_each(command.scopes):
        pat.add_scope(scope=scope, now=uow.now, field=f"scopes[{index}]", **uow.meta)
    uow.add(pat)
    return {}


def remove_scopes(command: RemoveScopes, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    pat = _managed_pat(command, actor, uow, "update")
    for index, scope in _first_of_each(command.scopes):
        pat.remove_scope(scope=scope, now=uow.now, field=f"scopes[{index}]", **uow.meta)
    uow.add(pat)
    return {}


def _first_of_each(scopes: list[Scope]) -> list[tuple[int, dict[str, str | None]]]:
    """Each scope once (a request may name one twice), with where it first was."""
    first: dict[Any, tuple[int, dict[str, str | None]]] = {}
    for index, scope in enumerate(scopes):
        first.setdefault(scope.key, (index, scope.to_dict()))
    return list(first.values())


def revoke_pat(command: RevokePAT, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    pat = _managed_pat(command, actor, uow, "delete")
    pat.revoke(reason=command.reason, **uow.meta)
    uow.add(pat)
    return {}


def update_pat(command: UpdatePAT, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    if command.name is None and command.description is None:
        raise InvalidRequest("give name, description or both", field="name")
    pat = _managed_pat(command, actor, uow, "update")
    pat.update(name=command.name, description=command.description, **uow.meta)
    uow.add(pat)
    return {}


def reset_pat_secret(command: ResetPATSecret, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    pat = _managed_pat(command, actor, uow, "update")
    policy.require_may_mint(actor, pat.user_id)
    token = uow.mint("pat", pat.id)
    expires_at = expiry("pat", command.expires_in, uow.now)
    pat.reset_secret(secret_hash=hash_for_storage(token), expires_at=expires_at, **uow.meta)
    uow.add(pat)
    return {"token": token, "expires_at": rfc3339(expires_at)}


def issue_key(command: IssueKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    owner = _owner_of_new(actor, uow, command.user_id, "key")
    if command.scopes is not None and command.kind != "api_key":
        raise InvalidRequest("only api_key keys carry scopes", field="scopes")
    if command.scopes is not None:
        require_held(permissions_of(uow, owner), command.scopes, "scopes")
    key_id = uuid4()
    token = uow.mint(command.kind, key_id)
    expires_at = expiry(command.kind, command.expires_in, uow.now)
    key = Key(
        id=key_id,
        user_id=owner.id,
        tenant_id=owner.tenant_id,
        kind=command.kind,
        name=command.name,
        secret_hash=hash_for_storage(token),
        expires_at=expires_at,
        scopes=unique_scopes(command.scopes) if command.scopes is not None else None,
        **uow.meta,
    )
    uow.add(key)
    return {"key_id": str(key.id), "token": token, "expires_at": rfc3339(expires_at)}


def revoke_key(command: RevokeKey, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    key = visible(uow, actor, Key, command.key_id, "key_id")
    require_owner_or_admin(actor, uow, key.user_id, "key_id")
    policy.require_scope(actor, "key", "delete", key.id)
    key.revoke(reason=command.reason, **uow.meta)
    uow.add(key)
    return {}


def revoke_session(command: RevokeSession, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    session = visible(uow, actor, Session, command.session_id, "session_id")
    require_owner_or_admin(actor, uow, session.user_id, "session_id")
    policy.require_scope(actor, "session", "delete", session.id)
    session.revoke(reason=command.reason or "revoked", **uow.meta)
    uow.add(session)
    return {}
