"""What a principal holds, and whether that covers a scope: the bound on every credential.

A principal's permissions are the union of its roles': ``root`` and ``admin`` hold
everything (scopes name no tenant: "everything" is relative to the owner's tenant, whose
boundary the tenant checks keep), ``auditor`` every ``read`` and ``list``, ``user`` nothing
of its own, and a tenant-defined role the scopes it carries.  A credential is created or
widened only with scopes its owner holds, and at use a scope of it counts only while its
owner still holds what it is used for.

"Holds" is ``covers`` over the owner's scopes: a wildcard id (``*``) covers every id of its
type, a domain-less scope covers every domain, and for entity type ``subject`` (NATS
subjects, for the auth callout) a pattern covers the patterns it matches
(``orders.>`` covers ``orders.eu.*``).  Scopes in domain ``authbus`` only narrow what
authbus's own role rules already allow, so every owner holds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from authbus.domain.scopes import WILDCARD, Scope, ScopeKey, find_grant

ADMIN_DOMAIN = "authbus"
SUBJECT = "subject"  # entity type whose ids are NATS subject patterns
EVERY_SUBJECT = ">"
EVERYTHING_ROLES = ("root", "admin")  # highest first
READ_OPERATIONS = frozenset({"read", "list"})


def subject_covers(held: str, wanted: str) -> bool:
    """Whether every subject ``wanted`` matches is matched by ``held`` (NATS wildcards)."""
    held_tokens, wanted_tokens = held.split("."), wanted.split(".")
    for index, token in enumerate(held_tokens):
        if token == EVERY_SUBJECT:
            return index < len(wanted_tokens)
        if index >= len(wanted_tokens) or wanted_tokens[index] == EVERY_SUBJECT:
            return False
        if token != "*" and token != wanted_tokens[index]:
            return False
    return len(held_tokens) == len(wanted_tokens)


def subject_meet(a: str, b: str) -> str | None:
    """The pattern matching exactly the subjects both ``a`` and ``b`` match, or None."""
    left, right = a.split("."), b.split(".")
    out: list[str] = []
    for index in range(min(len(left), len(right))):
        x, y = left[index], right[index]
        if x == EVERY_SUBJECT:
            return ".".join(out + right[index:])
        if y == EVERY_SUBJECT:
            return ".".join(out + left[index:])
        if x == "*":
            out.append(y)
        elif y == "*" or x == y:
            out.append(x)
        else:
            return None
    return ".".join(out) if len(left) == len(right) else None


def subject_pattern(entity_id: str) -> str:
    """A subject scope's id as a NATS pattern: ``*`` alone, "every entity", is every subject."""
    return EVERY_SUBJECT if entity_id == WILDCARD else entity_id


def covers(held: Scope, wanted: Scope) -> bool:
    if held.entity_type != wanted.entity_type or held.operation != wanted.operation:
        return False
    if held.domain is not None and held.domain != wanted.domain:
        return False
    if held.entity_type == SUBJECT:
        return subject_covers(subject_pattern(held.entity_id), subject_pattern(wanted.entity_id))
    if held.entity_id == WILDCARD:
        return True
    if wanted.entity_id == WILDCARD:
        return False
    return held.entity_id == wanted.entity_id


@dataclass(frozen=True, slots=True)
class HeldRole:
    """A tenant-defined role as the permission check sees it: its name and its scopes."""

    name: str
    scopes: dict[ScopeKey, Scope]


@dataclass(frozen=True, slots=True)
class Permissions:
    builtin: frozenset[str]  # the built-in roles held
    roles: tuple[HeldRole, ...] = ()  # the tenant-defined roles held

    @property
    def everything(self) -> bool:
        return any(role in self.builtin for role in EVERYTHING_ROLES)

    def holds(self, wanted: Scope) -> bool:
        """Whether a credential of this owner may be given ``wanted``."""
        if self.everything or wanted.domain == ADMIN_DOMAIN:
            return True
        if "auditor" in self.builtin and wanted.operation in READ_OPERATIONS:
            return True
        for role in self.roles:
            if find_grant(role.scopes, wanted.domain, wanted.entity_type, wanted.operation, wanted.entity_id) is not None:
                return True
            if wanted.entity_type == SUBJECT and any(covers(held, wanted) for held in role.scopes.values()):
                return True
        return False

    def subjects(self, operation: str, domains: Iterable[str | None]) -> tuple[str, ...] | None:
        """The subject patterns held for ``operation`` (publish, subscribe) in ``domains``;
        None when everything is held."""
        if self.everything:
            return None
        wanted = frozenset(domains)
        found = {
            subject_pattern(s.entity_id): None
            for role in self.roles
            for s in role.scopes.values()
            if s.entity_type == SUBJECT and s.operation == operation and s.domain in wanted
        }
        return tuple(found)
