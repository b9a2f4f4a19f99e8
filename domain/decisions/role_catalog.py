"""Tenant roles: defined, given scopes and taken them back, deleted, and placed in an order
with the built-in ones, by the tenant's admins."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from authbus.domain import policy, role_order
from authbus.domain.commands import AddRoleScopes, CreateRole, DeleteRole, RemoveRoleScopes, SetRoleOrder
from authbus.domain.decisions.access import active_tenant, claim_name, release_claim, resolve_role, unique_scopes, visible
from authbus.domain.errors import Conflict, Forbidden, InvalidRequest
from authbus.domain.policy import Actor
from authbus.domain.role import Role, is_builtin, role_name_claim_id
from authbus.domain.unit_of_work import UnitOfWork


def create_role(command: CreateRole, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    tenant_id = command.tenant_id or actor.tenant_id
    if not actor.sees(tenant_id):
        raise Forbidden("you cannot create roles in another tenant", field="tenant_id")
    policy.require_admin(actor, tenant_id)
    policy.require_scope(actor, "role", "create", "*")
    active_tenant(uow, tenant_id)
    if is_builtin(command.name):
        raise Conflict(f"{command.name.casefold()} is a built-in role", field="name")
    role = Role(
        id=uuid4(),
        tenant_id=tenant_id,
        name=command.name,
        description=command.description,
        scopes=unique_scopes(command.scopes),
        **uow.meta,
    )
    claim_name(uow, role_name_claim_id(tenant_id, command.name), "role", command.name, role.id, "name")
    uow.add(role)
    return {"role_id": str(role.id), "tenant_id": str(tenant_id)}


def _administered(command: AddRoleScopes | RemoveRoleScopes | DeleteRole, actor: Actor, uow: UnitOfWork, operation: str) -> Role:
    role = visible(uow, actor, Role, command.role_id, "role_id")
    policy.require_admin(actor, role.tenant_id)
    policy.require_scope(actor, "role", operation, role.id)
    return role


def add_role_scopes(command: AddRoleScopes, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    role = _administered(command, actor, uow, "update")
    role.add_scopes(scopes=[s.to_dict() for s in command.scopes], **uow.meta)
    uow.add(role)
    return {}


def remove_role_scopes(command: RemoveRoleScopes, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    role = _administered(command, actor, uow, "update")
    role.remove_scopes(scopes=[s.to_dict() for s in command.scopes], **uow.meta)
    uow.add(role)
    return {}


def delete_role(command: DeleteRole, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    role = _administered(command, actor, uow, "delete")
    role.delete(reason=command.reason, **uow.meta)
    uow.add(role)
    # The name is free for a new role, which no old grant reaches.
    release_claim(uow, role_name_claim_id(role.tenant_id, role.name), "role_id")
    return {}


def set_role_order(command: SetRoleOrder, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """Each name a built-in or a live role of the tenant, once; kept as built-in names and
    role ids, so the order follows the roles, not their names."""
    tenant_id = command.tenant_id or actor.tenant_id
    if not actor.sees(tenant_id):
        raise Forbidden("you cannot order the roles of another tenant", field="tenant_id")
    policy.require_admin(actor, tenant_id)
    policy.require_scope(actor, "role", "update", tenant_id)
    tenant = active_tenant(uow, tenant_id)
    seen: set[str] = set()
    entries: list[str] = []
    names: list[str] = []
    for index, name in enumerate(command.order):
        field = f"order[{index}]"
        if name.casefold() in seen:
            raise InvalidRequest("a role is listed twice", field=field)
        seen.add(name.casefold())
        resolved, role_id = resolve_role(uow, tenant_id, name, field)
        entries.append(role_order.stored(resolved if role_id is None else role_id))
        names.append(resolved)
    misplaced = role_order.misplaced(names)
    if misplaced is not None:
        raise InvalidRequest("the built-in roles keep their order user < admin < root, root last", field=f"order[{misplaced}]")
    tenant.set_role_order(order=entries, names=names, **uow.meta)
    uow.add(tenant)
    return {}
