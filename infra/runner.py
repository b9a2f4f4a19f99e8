"""Runs commands against the event store: one transaction per command, idempotent by
``command_id``, with the first reply rebuilt on a repeat."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError

from authbus.domain import tokens
from authbus.domain.commands import Command, current_actor
from authbus.domain.errors import Conflict, Unavailable, not_found
from authbus.domain.policy import Actor
from authbus.domain.registry import CommandRecord, command_record_id
from authbus.infra.secrets import Passwords, SecretSource
from authbus.infra.store import EventStore

A = TypeVar("A", bound=Aggregate)
SYSTEM_ACTOR = "system"


class StoreUnitOfWork:
    def __init__(self, store: EventStore, meta: dict[str, str], secret: Callable[[int], bytes], passwords: Passwords) -> None:
        self.now = datetime.now(timezone.utc)
        self.meta = meta
        self.pending: dict[UUID, Aggregate] = {}
        self.minted: list[tuple[str, str, UUID]] = []  # (token, kind, credential id)
        self._store = store
        self._secret = secret
        self._passwords = passwords

    def get(self, cls: type[A], aggregate_id: UUID, field: str) -> A:
        aggregate = self.pending.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self._store.repository.get(aggregate_id)
            except AggregateNotFoundError:
                raise not_found(field) from None
        if not isinstance(aggregate, cls):
            raise not_found(field)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.pending or aggregate_id in self._store.repository

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self.pending[aggregate.id] = aggregate

    def mint(self, kind: str, credential_id: UUID) -> str:
        token = tokens.mint(kind, credential_id, self._secret(len(self.minted)))
        self.minted.append((token, kind, credential_id))
        return token

    def hash_password(self, password: str) -> str:
        return self._passwords.hash(password)

    def password_matches(self, password: str, password_hash: str) -> bool:
        return self._passwords.matches(password, password_hash)


class CommandRunner:
    """Synchronous: call it from one worker thread, never from the event loop."""

    def __init__(self, store: EventStore, secrets: SecretSource, passwords: Passwords) -> None:
        self.store = store
        self.secrets = secrets
        self.passwords = passwords

    def run(self, command: Command, actor: Actor) -> tuple[dict[str, Any], int]:
        def decide(actor: Actor, uow: StoreUnitOfWork) -> dict[str, Any]:
            return command.run(current_actor(actor, uow, command.credential_field), uow)

        return self.run_function(command.command, decide, actor, actor.id, command.command_id, command.digest())

    def run_function(
        self,
        name: str,
        decide: Callable[..., dict[str, Any]],
        actor: Actor | None,
        actor_id: str,
        command_id: str | None,
        digest: str,
    ) -> tuple[dict[str, Any], int]:
        """Decide, then append every collected event in one transaction; or replay."""
        record_id = command_record_id(actor_id, command_id) if command_id else None
        try:
            if record_id is not None and record_id in self.store.repository:
                return self._replay(record_id, name, digest, actor_id)
            meta = {"actor": actor_id, "correlation_id": command_id or str(uuid4())}
            uow = StoreUnitOfWork(self.store, meta, lambda n: self.secrets.secret(actor_id, command_id, n), self.passwords)
            result = decide(actor, uow)
            aggregates = list(uow.pending.values())
            if record_id is not None:
                aggregates.append(self._record(record_id, name, digest, result, uow))
            try:
                recordings = self.store.save(*aggregates)
            except IntegrityError:
                if record_id is not None and record_id in self.store.repository:
                    return self._replay(record_id, name, digest, actor_id)
                raise Conflict("a concurrent change got there first; send the command again") from None
        except PersistenceError as error:
            raise Unavailable("the event store is unavailable; retry with the same command_id") from error
        return result, recordings[-1].notification.id

    def _record(self, record_id: UUID, name: str, digest: str, result: dict[str, Any], uow: StoreUnitOfWork) -> CommandRecord:
        minted = {token: (kind, credential_id, index) for index, (token, kind, credential_id) in enumerate(uow.minted)}
        secrets = {
            field: [minted[value][0], str(minted[value][1]), str(minted[value][2])]
            for field, value in result.items()
            if isinstance(value, str) and value in minted
        }
        stored = {field: value for field, value in result.items() if field not in secrets}
        return CommandRecord(
            command=name,
            command_id=uow.meta["correlation_id"],
            request_digest=digest,
            result=stored,
            secrets=secrets,
            id=record_id,
            **uow.meta,
        )

    def _replay(self, record_id: UUID, name: str, digest: str, actor_id: str) -> tuple[dict[str, Any], int]:
        record: CommandRecord = self.store.repository.get(record_id)
        if record.command != name or record.request_digest != digest:
            raise Conflict("this command_id was already used for a different request", field="command_id")
        result = dict(record.result)
        for field, (kind, credential_id, index) in record.secrets.items():
            secret = self.secrets.secret(actor_id, record.command_id, int(index))
            result[field] = tokens.mint(kind, UUID(credential_id), secret)
        # The first reply's position is not kept; the log's head is at least that.
        return result, self.store.recorder.max_notification_id() or 0
