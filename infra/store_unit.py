"""The unit of work a decision runs in (domain/unit_of_work.py's port), over the event store.

It reads each aggregate once, collects what the decision changes, and does the impure work a
decision asks for: minting a shown-once secret, generating a signing key, signing a token,
and handing over password work done beforehand.  Inside a group of commands
(infra/application.py) it sees what the commands before it in the group left.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from authbus.domain import tokens
from authbus.domain.errors import Unavailable, not_found
from authbus.domain.unit_of_work import DEFAULT_TERMS, Meta, TokenTerms
from authbus.infra.crypto import keys
from authbus.infra.crypto.keys import b64url

A = TypeVar("A", bound=Aggregate)
Sign = Callable[[UUID, dict[str, Any]], str]  # (tenant, claims) → a JWT from the tenant's signing key


def render_secret(recipe: list[str], secret: bytes) -> str:
    """The shown-once value a recipe makes from derived secret bytes (see CommandRecord)."""
    if recipe[0] == "token":
        return tokens.mint(recipe[1], UUID(recipe[2]), secret)
    return b64url(secret)  # "hs256": the tenant's HMAC key is this string's UTF-8 bytes


@dataclass(frozen=True)
class PasswordWork:
    """argon2 done for a command outside its transaction (infra.crypto.password_gate), so it never
    holds the writer: hashes of the passwords it sets, and checks of those it compares."""

    hashes: dict[str, str] = field(default_factory=dict)  # password → its hash
    checks: dict[tuple[str, str], bool] = field(default_factory=dict)  # (password, hash) → matches


NO_PASSWORD_WORK = PasswordWork()


class PasswordWorkNeeded(Exception):
    """A decision came to a password it has no hash or check for: nothing is appended, the
    caller does the work (fairly, off the writer) and decides again.  Only a decision that
    passed its rules up to there asks, so no caller makes argon2 run for a refusal."""

    def __init__(self, password: str, password_hash: str | None = None) -> None:
        super().__init__("password work needed")
        self.password = password
        self.password_hash = password_hash  # None: hash ``password``; else check it against this


class Reader(Protocol):
    """What a unit reads aggregates from: the store (infra/store.py's EventStore)."""

    def aggregate(self, aggregate_id: UUID) -> Any: ...
    def aggregates(self, ids: Iterable[UUID]) -> dict[UUID, Any]: ...


@dataclass
class Group:
    """What the commands decided so far in one group hold: aggregates read from the store
    (unchanged), and those the accepted ones changed, which the next command builds on."""

    read: dict[UUID, Aggregate] = field(default_factory=dict)
    changed: dict[UUID, Aggregate] = field(default_factory=dict)


def cannot_sign(tenant_id: UUID, claims: dict[str, Any]) -> str:
    raise Unavailable("this process does not sign tokens")


class StoreUnitOfWork:
    def __init__(
        self,
        store: Reader,
        key_wrap: keys.KeyWrap,
        meta: Meta,
        secret: Callable[[int], bytes],
        work: PasswordWork = NO_PASSWORD_WORK,
        sign: Sign = cannot_sign,
        group: Group | None = None,
        terms: TokenTerms = DEFAULT_TERMS,
    ) -> None:
        self.now = datetime.now(UTC)
        self.meta = meta
        self.terms = terms
        self.pending: dict[UUID, Aggregate] = {}
        self.minted: list[tuple[str, list[str]]] = []  # (shown-once value, recipe)
        self._store = store
        self._key_wrap = key_wrap
        self._secret = secret
        self._work = work
        self._sign = sign
        self._group = group or Group()  # alone, a command is a group of one
        self._taken: list[UUID] = []  # ids handed out from the group's reads, unchanged until now
        self._copies: dict[UUID, Aggregate] = {}  # of what the group's accepted commands changed

    def get(self, cls: type[A], aggregate_id: UUID, field: str) -> A:
        aggregate = self.pending.get(aggregate_id) or self._copies.get(aggregate_id)
        if aggregate is None:
            aggregate = self._from_group(aggregate_id)
        if aggregate is None:
            raise not_found(field)
        if not isinstance(aggregate, cls):
            raise not_found(field)
        return aggregate

    def _from_group(self, aggregate_id: UUID) -> Aggregate | None:
        group = self._group
        changed = group.changed.get(aggregate_id)
        if changed is not None:
            # A copy: should this decision fail, the group keeps what the others changed.  It
            # joins the group's changes only if the decision hands it back with ``add``.
            aggregate: Aggregate = copy.deepcopy(changed)
            self._copies[aggregate_id] = aggregate
            return aggregate
        if aggregate_id not in group.read:
            try:
                group.read[aggregate_id] = self._store.aggregate(aggregate_id)
            except AggregateNotFoundError:
                return None
        self._taken.append(aggregate_id)
        return group.read[aggregate_id]

    def prefetch(self, ids: Iterable[UUID]) -> None:
        """Read these aggregates together now, so the decision's ``get`` calls find them."""
        group = self._group
        wanted = [i for i in ids if i not in self.pending and i not in group.changed and i not in group.read]
        group.read.update(self._store.aggregates(wanted))

    def exists(self, aggregate_id: UUID) -> bool:
        group = self._group
        return aggregate_id in self.pending or aggregate_id in group.changed or self._from_group(aggregate_id) is not None

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self.pending[aggregate.id] = aggregate

    def accepted(self) -> None:
        """The decision stands: what it changed is what the group's next command sees."""
        self._group.changed.update(self.pending)

    def refused(self) -> None:
        """The decision failed: forget the aggregates it changed before it raised."""
        read = self._group.read
        for aggregate_id in self._taken:
            aggregate = read.get(aggregate_id)
            if aggregate is not None and aggregate.pending_events:
                del read[aggregate_id]

    def _shown_once(self, recipe: list[str]) -> str:
        value = render_secret(recipe, self._secret(len(self.minted)))
        self.minted.append((value, recipe))
        return value

    def mint(self, kind: str, credential_id: UUID) -> str:
        return self._shown_once(["token", kind, str(credential_id)])

    def new_signing_key(
        self, alg: str, kid: str, private_key: str | None = None
    ) -> tuple[dict[str, str] | None, str, str | None]:
        if private_key is not None:
            taken = keys.take_in(alg, kid, self._key_wrap, private_key)
            return taken.public_jwk, taken.sealed_private, None
        secret = self._shown_once(["hs256"]) if alg == "HS256" else None
        generated = keys.generate(alg, kid, self._key_wrap, secret.encode() if secret else None)
        return generated.public_jwk, generated.sealed_private, secret

    def sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        return self._sign(tenant_id, claims)

    def hash_password(self, password: str) -> str:
        done = self._work.hashes.get(password)
        if done is None:
            raise PasswordWorkNeeded(password)
        return done

    def password_matches(self, password: str, password_hash: str) -> bool:
        done = self._work.checks.get((password, password_hash))
        if done is None:
            raise PasswordWorkNeeded(password, password_hash)
        return done
