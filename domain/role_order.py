"""The order of a tenant's roles, lowest first: what ``authorize``'s ``min_role`` compares.

A tenant places its own roles among the built-in ones (austack's ``user < appAdmin <
admin < root``).  An order names the built-ins by name and the tenant's roles by id, so a
role deleted and made again under the same name is not the one ranked, and a deleted role
drops out.  ``root`` is always highest, listed or not; the built-ins listed keep
``user < admin < root``; ``auditor`` may go anywhere or be left out.  A role left out has
no rank: holding it ranks nobody, and nobody but root is "at least" it.  A tenant that
never set an order has ``DEFAULT_ORDER``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from uuid import UUID

from authbus.domain.role import BUILTIN_ROLES

DEFAULT_ORDER = ("user", "auditor", "admin", "root")
FIXED = ("user", "admin", "root")  # the built-ins whose order a tenant keeps
HIGHEST = "root"

RoleKey = str | UUID  # a built-in role's name, or a tenant-defined role's id
Ranks = Mapping[RoleKey, int]


def misplaced(names: Sequence[str]) -> int | None:
    """The index of the first built-in that breaks ``user < admin < root`` (``root`` only
    last), or None when the order keeps it.  ``names`` are casefolded built-in names and
    the tenant's role names."""
    reached = -1
    for index, name in enumerate(names):
        if name == HIGHEST and index != len(names) - 1:
            return index
        if name in FIXED:
            place = FIXED.index(name)
            if place < reached:
                return index
            reached = place
    return None


def ranks(order: Iterable[RoleKey]) -> dict[RoleKey, int]:
    """Each listed role's rank, 0 the lowest; ``root`` above every other, listed or not."""
    ranked = {key: rank for rank, key in enumerate(key for key in order if key != HIGHEST)}
    ranked[HIGHEST] = len(ranked)
    return ranked


def stored(key: RoleKey) -> str:
    """A key as the ``RoleOrderSet`` event keeps it: a built-in's name or the id as text."""
    return str(key)


def key_of(entry: str) -> RoleKey:
    """A ``RoleOrderSet`` entry read back: a built-in's name, else a role's id."""
    return entry if entry in BUILTIN_ROLES else UUID(entry)


DEFAULT_RANKS: Ranks = ranks(DEFAULT_ORDER)  # shared by every tenant that set none: never changed in place
