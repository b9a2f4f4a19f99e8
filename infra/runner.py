"""Runs commands against the event store: one transaction per command, idempotent by
``command_id``, with the first reply rebuilt on a repeat."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

from cryptography.exceptions import InvalidTag
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError

from authbus.domain import tokens
from authbus.domain.commands import Command, request_digest
from authbus.domain.decisions import decide
from authbus.domain.errors import Conflict, Unavailable, not_found
from authbus.domain.policy import Actor
from authbus.domain.registry import CommandRecord, command_record_id
from authbus.domain.signing import SigningKey
from authbus.domain.unit_of_work import Meta
from authbus.infra.challenges import Challenges
from authbus.infra.crypto import keys
from authbus.infra.crypto.kek import KEKError, Passwords, SecretSource, derive
from authbus.infra.crypto.keys import b64url
from authbus.infra.snapshot import snapshot_key
from authbus.infra.store import LOCK_SECONDS, STATEMENT_SECONDS, EventStore, StoreBusy
from authbus.projections.read_model import SigningKeyView

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
SYSTEM_ACTOR = "system"
AGAIN = "send it again (a command with the same command_id)"  # the advice of every `unavailable`
KEK_CHECK_SPAN = 20  # bootstrap appends its signing key among the first events of the log


def _no_secrets(index: int) -> bytes:  # pragma: no cover - a read mints nothing
    raise AssertionError("a read mints no secret")


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


class StoreUnitOfWork:
    def __init__(
        self, runner: CommandRunner, meta: Meta, secret: Callable[[int], bytes], work: PasswordWork = NO_PASSWORD_WORK
    ) -> None:
        self.now = datetime.now(UTC)
        self.meta = meta
        self._work = work
        self.pending: dict[UUID, Aggregate] = {}
        self._read: dict[UUID, Aggregate] = {}  # one decision reads each aggregate once
        self.minted: list[tuple[str, list[str]]] = []  # (shown-once value, recipe)
        self._store = runner.store
        self._runner = runner
        self._secret = secret

    def get(self, cls: type[A], aggregate_id: UUID, field: str) -> A:
        aggregate = self.pending.get(aggregate_id) or self._read.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self._read[aggregate_id] = self._store.aggregate(aggregate_id)
            except AggregateNotFoundError:
                raise not_found(field) from None
        if not isinstance(aggregate, cls):
            raise not_found(field)
        return aggregate

    def prefetch(self, ids: Iterable[UUID]) -> None:
        """Read these aggregates together now, so the decision's ``get`` calls find them."""
        self._read.update(self._store.aggregates(i for i in ids if i not in self.pending and i not in self._read))

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.pending or aggregate_id in self._store.repository

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self.pending[aggregate.id] = aggregate

    def _shown_once(self, recipe: list[str]) -> str:
        value = render_secret(recipe, self._secret(len(self.minted)))
        self.minted.append((value, recipe))
        return value

    def mint(self, kind: str, credential_id: UUID) -> str:
        return self._shown_once(["token", kind, str(credential_id)])

    def new_signing_key(self, alg: str, kid: str) -> tuple[dict[str, str] | None, str, str | None]:
        secret = self._shown_once(["hs256"]) if alg == "HS256" else None
        generated = keys.generate(alg, kid, self._runner.sealer, secret.encode() if secret else None)
        return generated.public_jwk, generated.sealed_private, secret

    def sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        return self._runner.sign(tenant_id, claims)

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


class CommandRunner:
    """Synchronous and thread-safe: call it from worker threads, never from the event loop."""

    def __init__(self, store: EventStore, kek: bytes, passwords: Passwords) -> None:
        self.store = store
        self.passwords = passwords
        # Everything keyed by the KEK, each under a key derived for its one purpose.
        self.secrets = SecretSource(kek)
        self.sealer = keys.Sealer(derive(kek, b"seal"))
        self.keyring = keys.Keyring(self.sealer)
        self.challenges = Challenges(derive(kek, b"challenges"))
        self.audit_seed = derive(kek, b"audit-seal")  # the Ed25519 seed checkpoints are signed with
        self.snapshot_key = snapshot_key(kek)
        self._throttle_key = derive(kek, b"login-throttle")
        # Set by the node that owns the read model: the key a tenant's tokens are signed with.
        self.signing_key_for: Callable[[UUID], SigningKeyView] | None = None

    def throttle_id(self, tenant_id: UUID, username: str) -> UUID:
        """Where a username's failed logins are counted when no user holds it: keyed, so the
        log says nothing of names that were tried (domain/throttle.py)."""
        digest = hmac.new(self._throttle_key, f"{tenant_id}:{username.casefold()}".encode(), hashlib.sha256).digest()
        return UUID(bytes=digest[:16])

    def check_kek(self) -> None:
        """KEKError unless the KEK opens the first signing key in the log (bootstrap's)."""
        for _, event in self.store.read_events(1, KEK_CHECK_SPAN):
            if isinstance(event, SigningKey.SigningKeyCreated):
                try:
                    self.sealer.open(str(event.originator_id), event.sealed_private)
                except InvalidTag:
                    raise KEKError("this KEK does not open the store's signing keys: it is not the store's KEK") from None
                return

    def sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        if self.signing_key_for is None:  # pragma: no cover - only a node signs
            raise Unavailable("this process does not sign tokens")
        return self.keyring.sign(self.signing_key_for(tenant_id), claims)

    def read(self, look: Callable[[StoreUnitOfWork], T]) -> T:
        """``look`` at the store as it is now, appending nothing."""
        try:
            return look(StoreUnitOfWork(self, {"actor": SYSTEM_ACTOR, "correlation_id": ""}, _no_secrets))
        except PersistenceError as error:
            raise Unavailable("the event store is unavailable; retry") from error

    def run(self, command: Command, actor: Actor, work: PasswordWork = NO_PASSWORD_WORK) -> tuple[dict[str, Any], int]:
        def prefetched(actor: Actor, uow: StoreUnitOfWork) -> dict[str, Any]:
            # The re-check reads the actor's credential, principal and tenant; most commands
            # then read the aggregates their ids name: one query for them all.
            named = (getattr(command, f) for f in command.__struct_fields__)
            uow.prefetch([actor.credential_id, actor.principal_id, actor.tenant_id, *(i for i in named if isinstance(i, UUID))])
            return decide(command, actor, uow)

        # Several workers may decide at once: one that loses a race decides again on the new state.
        return self.run_function(
            command.command, prefetched, actor, actor.id, command.command_id, request_digest(command), attempts=3, work=work
        )

    def run_function(
        self,
        name: str,
        decide: Callable[..., dict[str, Any]],
        actor: Actor | None,
        actor_id: str,
        command_id: str | None,
        digest: str,
        attempts: int = 1,
        work: PasswordWork = NO_PASSWORD_WORK,
    ) -> tuple[dict[str, Any], int]:
        """Decide, then append every collected event in one transaction; or replay.

        With ``attempts`` > 1 a decision that lost a race to a concurrent writer is made
        again on the new state (a refresh token used twice at once must see the reuse).
        """
        record_id = command_record_id(actor_id, command_id) if command_id else None
        credential = str(actor.credential_id) if actor is not None else None
        try:
            if record_id is not None and record_id in self.store.repository:
                return self._replay(record_id, name, digest, actor_id, credential)
            for attempt in range(attempts):
                meta = Meta(actor=actor_id, correlation_id=command_id or str(uuid4()))
                uow = StoreUnitOfWork(self, meta, lambda n: self.secrets.secret(actor_id, command_id, n), work)
                result = decide(actor, uow)
                aggregates = list(uow.pending.values())
                if not aggregates:  # a refusal that records nothing
                    return result, self.store.recorder.max_notification_id() or 0
                if record_id is not None:
                    aggregates.append(self._record(record_id, name, digest, result, uow, credential))
                try:
                    recordings = self.store.save(*aggregates)
                    return result, recordings[-1].notification.id
                except IntegrityError:
                    if record_id is not None and record_id in self.store.repository:
                        return self._replay(record_id, name, digest, actor_id, credential)
                    if attempt + 1 == attempts:
                        raise Conflict("a concurrent change got there first; send the command again") from None
        except StoreBusy as error:
            raise Unavailable(
                f"the event store is busy: the write waited out its bound ({LOCK_SECONDS} s for the log's write lock, "
                f"{STATEMENT_SECONDS} s a statement) and appended nothing; {AGAIN}"
            ) from error
        except PersistenceError as error:
            raise Unavailable(f"the event store is unavailable; {AGAIN}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(
        self, record_id: UUID, name: str, digest: str, result: dict[str, Any], uow: StoreUnitOfWork, credential: str | None
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

    def _replay(
        self, record_id: UUID, name: str, digest: str, actor_id: str, credential: str | None
    ) -> tuple[dict[str, Any], int]:
        record: CommandRecord = self.store.aggregate(record_id)
        if record.credential_id is None or record.credential_id != credential:
            # Another credential of the same principal may hold less than the one that sent
            # it (a zero-scope PAT beside an admin key): the first reply is not for it.
            raise Conflict("this command_id was used by another credential", field="command_id")
        if record.command != name or record.request_digest != digest:
            raise Conflict("this command_id was already used for a different request", field="command_id")
        result = dict(record.result)
        for name, recipe in record.secrets.items():
            result[name] = render_secret(recipe[:-1], self.secrets.secret(actor_id, record.command_id, int(recipe[-1])))
        # The first reply's position is not kept; the log's head is at least that.
        return result, self.store.recorder.max_notification_id() or 0
