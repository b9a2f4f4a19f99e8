"""Role: a tenant-defined set of scopes, granted to users beside the built-in roles.

The built-in roles, highest first: ``root`` (every tenant), ``admin`` (its own tenant),
``auditor`` (reads in its own tenant), ``user`` (self-service).  A tenant adds its own
(austack's ``appAdmin``, say), each carrying scopes; a user's permissions are the union of
its roles' (domain/permissions.py).  Names are unique per tenant, case-insensitively, and
never a built-in's.  A deleted role grants nothing, and its name is free again: a new role
of the same name is another role, which no earlier grant reaches.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict

BUILTIN_ROLES = ("root", "admin", "auditor", "user")
MAX_ROLE_SCOPES = 5000

ScopeDict = dict[str, Any]


def scope_key(scope: ScopeDict) -> tuple[Any, ...]:
    return (scope.get("domain"), scope["entity_type"], scope["operation"], scope["entity_id"])


class Role(Aggregate):
    @event("RoleCreated")
    def __init__(
        self, id: UUID, tenant_id: UUID, name: str, description: str, scopes: list[ScopeDict], actor: str, correlation_id: str
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.description = description
        self.scopes = {scope_key(s): s for s in scopes}
        self.deleted = False

    def _require_live(self) -> None:
        if self.deleted:
            raise Conflict("role is deleted", field="role_id")

    def add_scopes(self, scopes: list[ScopeDict], actor: str, correlation_id: str) -> None:
        self._require_live()
        new = list({scope_key(s): s for s in scopes if scope_key(s) not in self.scopes}.values())
        if not new:
            raise Conflict("the role already holds these scopes", field="scopes")
        if len(self.scopes) + len(new) > MAX_ROLE_SCOPES:
            raise Conflict(f"a role holds at most {MAX_ROLE_SCOPES} scopes", field="scopes")
        self._add_scopes(scopes=new, actor=actor, correlation_id=correlation_id)

    def remove_scopes(self, scopes: list[ScopeDict], actor: str, correlation_id: str) -> None:
        self._require_live()
        for index, scope in enumerate(scopes):
            if scope_key(scope) not in self.scopes:
                raise Conflict("the role does not hold this scope", field=f"scopes[{index}]")
        self._remove_scopes(scopes=list({scope_key(s): s for s in scopes}.values()), actor=actor, correlation_id=correlation_id)

    def delete(self, reason: str, actor: str, correlation_id: str) -> None:
        self._require_live()
        self._delete(reason=reason, actor=actor, correlation_id=correlation_id)

    @event("RoleScopesAdded")
    def _add_scopes(self, scopes: list[ScopeDict], actor: str, correlation_id: str) -> None:
        self.scopes.update((scope_key(s), s) for s in scopes)

    @event("RoleScopesRemoved")
    def _remove_scopes(self, scopes: list[ScopeDict], actor: str, correlation_id: str) -> None:
        for scope in scopes:
            self.scopes.pop(scope_key(scope), None)

    @event("RoleDeleted")
    def _delete(self, reason: str, actor: str, correlation_id: str) -> None:
        self.deleted = True


def role_name_claim_id(tenant_id: UUID, name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"authbus:role:{tenant_id}:{name.casefold()}")


def is_builtin(name: str) -> bool:
    return name.casefold() in BUILTIN_ROLES
