"""Scopes: what a credential may do, as ``domain / entity_type / operation / entity_id``.

``entity_id`` ``"*"`` grants every entity of the type; ``domain`` None grants every domain
of the owner's tenant.  A holder indexes its scopes by exact key, so a check is at most
four dictionary lookups whether it holds one scope or a thousand.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\s]+\Z")]
Operation = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*\Z")]
WILDCARD = "*"

ScopeKey = tuple[str | None, str, str, str]


class Scope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    entity_type: Name
    operation: Operation
    entity_id: Name
    domain: Name | None = None

    @property
    def key(self) -> ScopeKey:
        return (self.domain, self.entity_type, self.operation, self.entity_id)

    def to_dict(self) -> dict[str, str | None]:
        return {"domain": self.domain, "entity_type": self.entity_type, "operation": self.operation, "entity_id": self.entity_id}

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> Scope:
        return msgspec.convert(data, cls)


def scope_text(scope: Scope) -> str:
    """The string form ``parse_scope`` reads: ``[domain/]entity_type:operation:entity_id``."""
    prefix = f"{scope.domain}/" if scope.domain is not None else ""
    return f"{prefix}{scope.entity_type}:{scope.operation}:{scope.entity_id}"


def parse_scope(text: str) -> Scope | None:
    """``[domain/]entity_type:operation:entity_id`` (``docs/document:read:*``), checked as a
    request's scope is; None if it is not one.

    The domain ends at the first ``/`` and the entity type at the first ``:``; neither holds
    a ``/`` in this form (``a/b/c:read:*``, ``docs//document:read:*``: where would the domain
    end?).  The entity id is all that follows the operation, ``/`` and ``:`` included
    (``file:read:folder/7``).  So a text names one scope, and a scope has one text."""
    head, _, rest = text.partition(":")
    operation, colon, entity_id = rest.partition(":")
    if not colon:
        return None
    domain, slash, entity_type = head.partition("/")
    if not slash:
        domain, entity_type = None, head  # type: ignore[assignment]
    if "/" in entity_type:
        return None
    return checked_scope({"domain": domain, "entity_type": entity_type, "operation": operation, "entity_id": entity_id})


def checked_scope(fields: dict[str, Any]) -> Scope | None:
    """The scope ``fields`` describe, checked as a request's scope is (§4.1); None if they
    describe none."""
    try:
        return msgspec.convert(fields, Scope)
    except msgspec.ValidationError:
        return None


def candidate_keys(domain: str | None, entity_type: str, operation: str, entity_id: str) -> tuple[ScopeKey, ...]:
    """Every scope key that would grant this request, most specific first."""
    keys: list[ScopeKey] = []
    domains = (domain, None) if domain is not None else (None,)
    for d in domains:
        keys.append((d, entity_type, operation, entity_id))
        if entity_id != WILDCARD:
            keys.append((d, entity_type, operation, WILDCARD))
    return tuple(keys)


def find_grant(held: dict[ScopeKey, Scope], domain: str | None, entity_type: str, operation: str, entity_id: str) -> Scope | None:
    for key in candidate_keys(domain, entity_type, operation, entity_id):
        scope = held.get(key)
        if scope is not None:
            return scope
    return None
