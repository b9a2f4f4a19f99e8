"""An event store in a dict, and the unit of work decisions run against in the fast tier:
the same ``domain.unit_of_work.UnitOfWork`` port infra's store implements, with the work
that needs I/O or keys done plainly (a password's "hash" is the password marked as one)."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from authbus.domain import tokens
from authbus.domain.commands import Command
from authbus.domain.credentials import Key
from authbus.domain.decisions import decide
from authbus.domain.decisions.tenancy import bootstrap
from authbus.domain.errors import not_found
from authbus.domain.policy import Actor
from authbus.domain.unit_of_work import Meta, TokenTerms
from authbus.domain.user import User
from authbus.projections.read_model import ReadModel

A = TypeVar("A", bound=Aggregate)


class MemoryUnitOfWork:
    def __init__(self, store: MemoryStore, actor: str) -> None:
        self.now = datetime.now(UTC)
        self.meta: Meta = {"actor": actor, "correlation_id": os.urandom(8).hex()}
        self.terms = TokenTerms()
        self._store = store
        self.pending: dict[UUID, Aggregate] = {}

    def get(self, cls: type[A], aggregate_id: UUID, field: str) -> A:
        # A copy: a decision that raises half-way leaves the store as it was.
        found = self.pending.get(aggregate_id) or copy.deepcopy(self._store.aggregates.get(aggregate_id))
        if not isinstance(found, cls):
            raise not_found(field)
        return found

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.pending or aggregate_id in self._store.aggregates

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self.pending[aggregate.id] = aggregate

    def mint(self, kind: str, credential_id: UUID) -> str:
        return tokens.mint(kind, credential_id, os.urandom(tokens.SECRET_BYTES))

    def hash_password(self, password: str) -> str:
        return f"hashed:{password}"

    def password_matches(self, password: str, password_hash: str) -> bool:
        return password_hash == f"hashed:{password}"

    def new_signing_key(
        self, alg: str, kid: str, private_key: str | None = None
    ) -> tuple[dict[str, str] | None, str, str | None]:
        secret = os.urandom(32).hex() if alg == "HS256" else None
        return (None if secret else {"kty": "OKP", "kid": kid}), "sealed", secret

    def sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        return "signed"


class MemoryStore:
    """Aggregates by id, the names of the events saved, in order, and the read model they fold into."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}
        self.log: list[str] = []
        self.model = ReadModel()  # what the saved events fold into, as an instance's would
        self.root = self.actor(UUID(self.save("system", bootstrap)["key_id"]))

    def save(self, actor: str, decision: Any) -> dict[str, Any]:
        uow = MemoryUnitOfWork(self, actor)
        result = decision(uow)
        for aggregate in uow.pending.values():
            events = aggregate.collect_events()
            self.log += [type(event).__name__ for event in events]
            for event in events:
                self.model.apply(self.model.position + 1, event)
            self.aggregates[aggregate.id] = aggregate
        return result

    def run(self, command: Command, actor: Actor) -> dict[str, Any]:
        """The command decided by ``actor`` and saved; raises what the decision raised, saving nothing."""
        return self.save(actor.id, lambda uow: decide(command, actor, uow))

    def actor(self, credential_id: UUID) -> Actor:
        """Who presents this credential (a key or a PAT), as the read model would say; the
        decision re-reads roles and scopes from the store."""
        credential = self.aggregates[credential_id]
        user = self.aggregates[credential.user_id]  # type: ignore[attr-defined]
        assert isinstance(user, User)
        kind = credential.kind if isinstance(credential, Key) else "pat"
        return Actor(user.id, user.tenant_id, frozenset(user.roles), credential_id, kind, None)
