"""The write path, as an eventsourcing Application: get → decide → save, or replay.

A command sent with a ``command_id`` leaves a CommandRecord in the same transaction as its
events; a repeat finds it and gets the first reply again, secrets derived anew.  Commands
that arrive together are decided one after another, each on what the ones before it left,
and appended in one transaction (``execute_together``): the log's write lock, the commit
and the notification are paid once for the group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError, PersistenceError

from authbus.domain.commands import Command, request_digest
from authbus.domain.decisions import decide, tenancy
from authbus.domain.errors import Conflict, Unavailable
from authbus.domain.policy import Actor
from authbus.domain.registry import CommandRecord, command_record_id
from authbus.domain.unit_of_work import DEFAULT_TERMS, Meta, TokenTerms, UnitOfWork
from authbus.infra.crypto.key_material import KeyMaterial
from authbus.infra.store import LOCK_SECONDS, STATEMENT_SECONDS, EventStore, StoreBusy
from authbus.infra.store_unit import NO_PASSWORD_WORK, Group, PasswordWork, Sign, StoreUnitOfWork, cannot_sign, render_secret

T = TypeVar("T")
R = TypeVar("R")  # what a decision returns: a command's result dict, a login's outcome
Decided = tuple[dict[str, Any], int]  # a command's result and the log position that holds it
SYSTEM_ACTOR = "system"
AGAIN = "send it again (a command with the same command_id)"  # the advice of every `unavailable`
COMMAND_ATTEMPTS = 3  # decisions of one command that lose a race to another instance before `conflict`


@dataclass(frozen=True)
class Submitted:
    command: Command
    actor: Actor
    work: PasswordWork = NO_PASSWORD_WORK


@dataclass(frozen=True)
class _Accepted:
    """A command accepted into its group: its reply once the group is appended.  ``None``
    for a second use of a command_id the group already holds, replayed after the append."""

    result: dict[str, Any] | None


def _no_secrets(index: int) -> bytes:  # pragma: no cover - a read mints nothing
    raise AssertionError("a read mints no secret")


def _unavailable(error: PersistenceError) -> Unavailable:
    if isinstance(error, StoreBusy):
        return Unavailable(
            f"the event store is busy: the write waited out its bound ({LOCK_SECONDS} s for the log's write lock, "
            f"{STATEMENT_SECONDS} s a statement) and appended nothing; {AGAIN}"
        )
    return Unavailable(f"the event store is unavailable; {AGAIN}")


def _deciding(command: Command, actor: Actor) -> Callable[[StoreUnitOfWork], dict[str, Any]]:
    def decided(uow: StoreUnitOfWork) -> dict[str, Any]:
        # The re-check reads the actor's credential, principal and tenant; most commands
        # then read the aggregates their ids name: one query for them all.
        uow.prefetch(_reads(command, actor))
        return decide(command, actor, uow)

    return decided


def _reads(command: Command, actor: Actor) -> list[UUID]:
    named = (getattr(command, f) for f in command.__struct_fields__)
    return [actor.credential_id, actor.principal_id, actor.tenant_id, *(i for i in named if isinstance(i, UUID))]


class AuthbusApplication(EventStore):
    """Synchronous and thread-safe: call it from worker threads, never from the event loop."""

    name = EventStore.name  # eventsourcing names the tables after it: the same log as every reader's

    def __init__(self, keys: KeyMaterial, env: dict[str, str], terms: TokenTerms = DEFAULT_TERMS) -> None:
        super().__init__(env=env, personal_wrap=keys.key_wrap)
        self.keys = keys
        self.terms = terms

    def bootstrap(self) -> dict[str, Any]:
        """Create the system tenant and root; raises Conflict when that was done before."""
        return self.perform("bootstrap", SYSTEM_ACTOR, tenancy.bootstrap)[0]

    def execute(self, command: Command, actor: Actor, work: PasswordWork = NO_PASSWORD_WORK) -> Decided:
        """Decide one command and append what it changed in one transaction; or replay it."""
        # Instances decide at once: one that loses a race decides again on the new state.
        return self._write(
            command.command,
            _deciding(command, actor),
            actor,
            command.command_id,
            request_digest(command),
            attempts=COMMAND_ATTEMPTS,
            work=work,
        )

    def perform(
        self, name: str, actor_id: str, decision: Callable[[UnitOfWork], R], sign: Sign = cannot_sign, attempts: int = 1
    ) -> tuple[R, int]:
        """A decision no bearer sent (bootstrap, the login family), decided again up to
        ``attempts`` times when it loses a race (a refresh token used twice at once must see
        the reuse)."""
        return self._write(name, decision, actor_id, None, "", attempts=attempts, sign=sign)

    def read(self, look: Callable[[StoreUnitOfWork], T]) -> T:
        """``look`` at the store as it is now, appending nothing."""
        try:
            return look(self._unit(Meta(actor=SYSTEM_ACTOR, correlation_id=""), _no_secrets))
        except PersistenceError as error:
            raise Unavailable("the event store is unavailable; retry") from error

    def execute_together(self, submitted: Sequence[Submitted]) -> list[Decided | Exception]:
        """Each command's reply or error, in order.  Each is decided on what the accepted ones
        before it left, and all accepted ones are appended in one transaction.  A refused
        command fails alone; should the append conflict (another instance wrote first), every
        command is run again alone, so each gets the answer it would have got by itself."""
        group = Group()
        outcomes: list[Decided | Exception | _Accepted] = []
        recorded: set[UUID] = set()
        try:
            records = [self._record_id(s.actor.id, s.command.command_id) for s in submitted]
            reads = [i for s in submitted for i in _reads(s.command, s.actor)]
            group.read.update(self.aggregates([*(r for r in records if r), *reads]))
            for item, record_id in zip(submitted, records, strict=True):
                if record_id in recorded:  # its command_id twice in the group: replayed once saved
                    outcomes.append(_Accepted(None))
                elif record_id is not None and record_id in group.read:
                    outcomes.append(self._outcome(self.execute, item.command, item.actor))
                else:
                    outcomes.append(self._decide_in(group, item, record_id))
                    if record_id is not None and isinstance(outcomes[-1], _Accepted):
                        recorded.add(record_id)
            position = self.save(*group.changed.values())[-1].notification.id if group.changed else self._head()
        except IntegrityError:
            return self._alone(submitted)
        except PersistenceError as error:
            # Nothing was appended.  A refusal decided before the first accepted command saw
            # only the store and stands; every answer from there on rested on changes never
            # saved (a second revoke refused as "already revoked"), so it is unavailable too.
            failed = _unavailable(error)
            first = next((i for i, o in enumerate(outcomes) if isinstance(o, _Accepted)), len(outcomes))
            standing = [o for o in outcomes[:first] if not isinstance(o, _Accepted)]
            return standing + [failed] * (len(submitted) - len(standing))
        except Exception:  # one command's events the store cannot take: it fails alone, the rest go on
            return self._alone(submitted)
        return [self._settle(item, outcome, position) for item, outcome in zip(submitted, outcomes, strict=True)]

    def _alone(self, submitted: Sequence[Submitted]) -> list[Decided | Exception]:
        return [self._outcome(self.execute, s.command, s.actor, s.work) for s in submitted]

    def _settle(self, item: Submitted, outcome: Decided | Exception | _Accepted, position: int) -> Decided | Exception:
        if not isinstance(outcome, _Accepted):
            return outcome
        if outcome.result is None:  # the group's command_id again: the first reply, now saved
            return self._outcome(self.execute, item.command, item.actor)
        return outcome.result, position

    def _decide_in(self, group: Group, item: Submitted, record_id: UUID | None) -> Decided | Exception | _Accepted:
        command, actor = item.command, item.actor
        uow = self._unit(
            self._meta(actor.id, command.command_id), self._secret(actor.id, command.command_id), item.work, group=group
        )
        try:
            result = decide(command, actor, uow)
        except PersistenceError:
            raise
        except Exception as error:  # refused: it fails alone, and the group forgets what it changed
            uow.refused()
            return error
        if not uow.pending:  # a refusal that records nothing
            return result, self._head()
        if record_id is not None:
            credential = str(actor.credential_id)
            uow.add(self._command_record(record_id, command.command, request_digest(command), result, uow, credential))
        uow.accepted()
        return _Accepted(result)

    @staticmethod
    def _outcome(fn: Callable[..., Decided], *args: Any) -> Decided | Exception:
        try:
            return fn(*args)
        except Exception as error:
            return error

    def _head(self) -> int:
        return self.recorder.max_notification_id() or 0

    @staticmethod
    def _record_id(actor_id: str, command_id: str | None) -> UUID | None:
        return command_record_id(actor_id, command_id) if command_id else None

    @staticmethod
    def _meta(actor_id: str, command_id: str | None) -> Meta:
        return Meta(actor=actor_id, correlation_id=command_id or str(uuid4()))

    def _secret(self, actor_id: str, command_id: str | None) -> Callable[[int], bytes]:
        return lambda n: self.keys.secrets.secret(actor_id, command_id, n)

    def _unit(
        self,
        meta: Meta,
        secret: Callable[[int], bytes],
        work: PasswordWork = NO_PASSWORD_WORK,
        sign: Sign = cannot_sign,
        group: Group | None = None,
    ) -> StoreUnitOfWork:
        return StoreUnitOfWork(self, self.keys.key_wrap, meta, secret, work, sign, group, self.terms)

    def _write(
        self,
        name: str,
        decision: Callable[[StoreUnitOfWork], R],
        actor: Actor | str,
        command_id: str | None,
        digest: str,
        attempts: int,
        work: PasswordWork = NO_PASSWORD_WORK,
        sign: Sign = cannot_sign,
    ) -> tuple[R, int]:
        """Decide, then append every collected event in one transaction; or replay.  ``actor``
        is the bearer that sent it, or the id of who acts when none did."""
        actor_id = actor if isinstance(actor, str) else actor.id
        credential = None if isinstance(actor, str) else str(actor.credential_id)
        record_id = self._record_id(actor_id, command_id)
        try:
            if record_id is not None and record_id in self.repository:
                return cast(tuple[R, int], self._replay(record_id, name, digest, actor_id, credential))
            for attempt in range(attempts):
                uow = self._unit(self._meta(actor_id, command_id), self._secret(actor_id, command_id), work, sign)
                result = decision(uow)
                if not uow.pending:  # a refusal that records nothing
                    return result, self._head()
                if record_id is not None:  # only a command has a command_id, and its result is a dict
                    assert isinstance(result, dict)
                    uow.add(self._command_record(record_id, name, digest, result, uow, credential))
                try:
                    return result, self.save(*uow.pending.values())[-1].notification.id
                except IntegrityError:
                    if record_id is not None and record_id in self.repository:
                        return cast(tuple[R, int], self._replay(record_id, name, digest, actor_id, credential))
                    if attempt + 1 == attempts:
                        raise Conflict("a concurrent change got there first; send the command again") from None
        except PersistenceError as error:
            raise _unavailable(error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _command_record(
        record_id: UUID, name: str, digest: str, result: dict[str, Any], uow: StoreUnitOfWork, credential: str | None
    ) -> CommandRecord:
        minted = {value: [*recipe, str(index)] for index, (value, recipe) in enumerate(uow.minted)}
        secrets = {name: minted[value] for name, value in result.items() if isinstance(value, str) and value in minted}
        stored = {name: value for name, value in result.items() if name not in secrets}
        return CommandRecord(
            command=name,
            command_id=uow.meta["correlation_id"],
            request_digest=digest,
            result=stored,
            secrets=secrets,
            id=record_id,
            credential_id=credential,
            **uow.meta,
        )

    def _replay(self, record_id: UUID, name: str, digest: str, actor_id: str, credential: str | None) -> Decided:
        record: CommandRecord = self.aggregate(record_id)
        if record.credential_id is None or record.credential_id != credential:
            # Another credential of the same principal may hold less than the one that sent
            # it (a zero-scope PAT beside an admin key): the first reply is not for it.
            raise Conflict("this command_id was used by another credential", field="command_id")
        if record.command != name or record.request_digest != digest:
            raise Conflict("this command_id was already used for a different request", field="command_id")
        result = dict(record.result)
        for field_name, recipe in record.secrets.items():
            secret = self.keys.secrets.secret(actor_id, record.command_id, int(recipe[-1]))
            result[field_name] = render_secret(recipe[:-1], secret)
        # The first reply's position is not kept; the log's head is at least that.
        return result, self._head()
