"""Event store wiring: one eventsourcing Application over SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import InterfaceError, Mapper, OperationalError, Recording, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.errors import LockNotAvailable, QueryCanceled
from psycopg.generators import send
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from authbus.domain.user import User
from authbus.infra.crypto.keys import KeyWrap
from authbus.infra.personal_data import PersonalDataMapper, PersonalKeys

log = logging.getLogger("authbus.store")

# PostgreSQL bounds (docs/operations.md, "The event store's bounds").  A write waits at most
# LOCK_SECONDS for the log's write lock, then answers `unavailable`; no statement runs
# longer than STATEMENT_SECONDS; a session idle inside a transaction is ended after
# IDLE_IN_TRANSACTION_SECONDS.  An authbus writer that has held the write lock for
# STUCK_WRITER_SECONDS (a write takes milliseconds) while its server waits on it is ended by
# the next writer it blocks.
LOCK_SECONDS = 2
STATEMENT_SECONDS = 15
IDLE_IN_TRANSACTION_SECONDS = 5
STUCK_WRITER_SECONDS = 5
WRITE_ATTEMPTS = 10  # as eventsourcing's own: a pooled connection broken by a restart fails once
STALL_MEMORY = 10.0  # seconds a write that waited out its bound keeps health `degraded`
APPLICATION_NAME = "authbus"
SCHEMA_LOCK = int.from_bytes(b"authbus\x00", "big")  # pg_advisory_lock key: creating the tables


def project(aggregate: Any, events: Iterable[Any]) -> Any:
    """eventsourcing's default projector without its per-event ``isinstance`` check against a
    runtime Protocol: an assert costing some 20 µs an event, once most of a command's time."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as eventsourcing's own reads
def _select(recorder: PostgresAggregateRecorder, statement: SQL | Composed, params: list[Any]) -> list[Any]:
    with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement, [params], prepare=True)
        return cursor.fetchall()


class StoreBusy(OperationalError):
    """A write waited out its bound (the write lock or the statement timeout): no retry."""


@dataclass
class Stalls:
    """Writes that waited out their bound, and stuck writers ended, for health and metrics."""

    count: int = 0
    last: float = float("-inf")  # time.monotonic() of the latest
    writers_ended: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # command workers count at once

    def stalled(self) -> None:
        with self._lock:
            self.count += 1
            self.last = time.monotonic()

    def writer_ended(self) -> None:
        with self._lock:
            self.writers_ended += 1

    def recent(self, within: float = STALL_MEMORY) -> bool:
        return time.monotonic() - self.last < within


class AuthbusRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, made safe against two ways a write could hang every instance.

    * psycopg's pipeline (3.1–3.3) stops flushing once its queue of commands is empty, then
      waits for results, so an INSERT larger than the socket's send buffer is never wholly
      sent: client and server wait on each other while the write lock is held, and no server
      timeout ends it (PostgreSQL does not time out a half-received pipeline).  Seen from
      about 500 KB a save on a Unix socket, much less over a real network.  The INSERT is
      flushed whole before the pipeline syncs.
    * A write behind the lock waits LOCK_SECONDS and fails without eventsourcing's ten
      retries; if the lock's holder is an authbus session that has held it STUCK_WRITER_SECONDS
      while waiting on its own client (ClientRead: stopped, not slow in the server, and not a
      commit waiting for a standby), it is ended, which releases the lock.
    """

    def __init__(self, datastore: PostgresDatastore, **kwargs: object) -> None:
        pool_kwargs = datastore.pool.kwargs
        assert isinstance(pool_kwargs, dict)
        pool_kwargs["application_name"] = APPLICATION_NAME
        # eventsourcing sets lock_timeout for each write and idle_in_transaction_session_timeout
        # at connect, from the POSTGRES_* settings (`store_environment`); this is the third bound.
        pool_kwargs["options"] = f"-c statement_timeout={STATEMENT_SECONDS * 1000}"
        super().__init__(datastore, **kwargs)  # type: ignore[arg-type]
        self.stalls = Stalls()

    def create_table(self) -> None:
        """eventsourcing's schema statements (CREATE TYPE, CREATE TABLE IF NOT EXISTS, CREATE OR
        REPLACE FUNCTION) run at every start, and two instances starting at once collide in the
        catalog ("tuple concurrently updated", a duplicate type): they take turns instead."""
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    def _insert_stored_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: object) -> None:
        super()._insert_stored_events(curs, stored_events, **kwargs)
        conn = curs.connection
        if conn.pgconn.pipeline_status:
            conn.wait(send(conn.pgconn))

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: object) -> Sequence[int] | None:
        write = PostgresApplicationRecorder.insert_events.__wrapped__  # type: ignore[attr-defined]
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return write(self, stored_events, **kwargs)
            except (InterfaceError, OperationalError) as error:
                if isinstance(error.__cause__, (LockNotAvailable, QueryCanceled)):
                    self.stalls.stalled()
                    self._end_stuck_writer()
                    raise StoreBusy(f"a write waited out its bound: {error}") from error
                if attempt + 1 == WRITE_ATTEMPTS:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")  # pragma: no cover

    def _end_stuck_writer(self) -> None:
        statement = SQL(
            "SELECT a.pid, pg_terminate_backend(a.pid) AS ended, extract(epoch FROM now() - a.xact_start) AS held"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'relation' AND l.relation = %s::regclass AND l.mode = 'ExclusiveLock' AND l.granted"
            " AND a.application_name = %s AND a.pid <> pg_backend_pid()"
            " AND a.wait_event = 'ClientRead' AND a.xact_start < now() - make_interval(secs => %s)"
        )
        table = f"{self.datastore.schema}.{self.events_table_name}"
        try:
            with self.datastore.get_connection() as conn:
                rows = conn.execute(statement, (table, APPLICATION_NAME, STUCK_WRITER_SECONDS)).fetchall()
        except Exception as error:  # the next blocked write tries again
            log.warning("could not look for a stuck writer: %s", error)
            return
        for row in rows:
            if row["ended"]:
                self.stalls.writer_ended()
                log.warning("ended PostgreSQL session %d: it held the event log's write lock for %.1f s", row["pid"], row["held"])


class EventStore(Application):
    """The whole log of authbus: every aggregate of every tenant, in one sequence.

    ``personal_wrap`` (the KEK's key wrap) opens the users' data keys, so personal fields are
    sealed on the way in and opened on the way out (infra/personal_data.py); without it (an
    offline tool given no KEK) they read as withheld and no user can be stored.
    """

    name = "authbus"

    def __init__(self, env: dict[str, str] | None = None, personal_wrap: KeyWrap | None = None) -> None:
        super().__init__(env=env)
        postgres = isinstance(self.recorder, PostgresAggregateRecorder)
        self.personal_keys = PersonalKeys(self.recorder.datastore, postgres, personal_wrap)  # type: ignore[attr-defined]
        if personal_wrap is not None:
            self.personal_keys.create_table()
        mapper = self.mapper
        assert isinstance(mapper, PersonalDataMapper)
        mapper.keys = self.personal_keys

    def construct_mapper(self) -> Mapper[UUID]:
        mapper = super().construct_mapper()
        return PersonalDataMapper(mapper.transcoder, mapper.compressor, mapper.cipher)

    @property
    def stalls(self) -> Stalls:
        """Writes that waited out their bound (PostgreSQL; SQLite has one writer)."""
        return getattr(self.recorder, "stalls", NO_STALLS)

    def save(self, *aggregates: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Application.save for aggregates only, which is all authbus saves.  eventsourcing's
        checks each object against two runtime Protocols, and those isinstance checks cost
        more than the rest of collecting a command's events."""
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        deleted = [event.originator_id for event in processing.events if isinstance(event, User.UserDeleted)]
        if deleted:  # appended: now their personal data goes (again at every start, should this fail)
            try:
                self.personal_keys.destroy(deleted)
            except Exception as error:
                log.warning("the data keys of deleted users %s stay until the next start: %s", deleted, error)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def read_events(self, start: int, limit: int, stop: int | None = None) -> list[tuple[int, Any]]:
        """Up to ``limit`` stored events from position ``start`` (to ``stop``), decoded, with
        their positions."""
        to_event = self.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in self.recorder.select_notifications(start=start, limit=limit, stop=stop)]

    def aggregate(self, aggregate_id: UUID) -> Any:
        """The aggregate as stored now; AggregateNotFoundError if there is none."""
        return self.repository.get(aggregate_id, projector_func=project)

    def aggregates(self, ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Those of ``ids`` that exist, as stored now.  On PostgreSQL one query reads them all:
        a command's re-check of its actor and its targets costs one round trip, not five."""
        wanted = list(dict.fromkeys(ids))
        recorder = self.recorder
        if not isinstance(recorder, PostgresAggregateRecorder):  # SQLite reads in-process: no round trips
            found = {}
            for aggregate_id in wanted:
                with contextlib.suppress(AggregateNotFoundError):
                    found[aggregate_id] = self.aggregate(aggregate_id)
            return found
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
        rows = _select(recorder, statement, wanted)
        to_event = self.mapper.to_domain_event
        aggregates: dict[UUID, Any] = {}
        for row in rows:
            stored = StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
            aggregates[stored.originator_id] = to_event(stored).mutate(aggregates.get(stored.originator_id))
        return aggregates


NO_STALLS = Stalls()


def owner_only(database: Path) -> None:
    """A SQLite store and its ``-wal`` and ``-shm`` files readable by their owner alone: they
    hold password hashes and sealed keys.  SQLite gives the journal files the mode of the
    database file, so the file is made 0600 before SQLite first opens it."""
    database.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, stat.S_IRUSR | stat.S_IWUSR))
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def store_environment(database_url: str) -> dict[str, str]:
    """eventsourcing settings for ``sqlite:///path`` or ``postgresql://user:pw@host:port/db``.

    A PostgreSQL URL may name a socket directory with ``?host=/dir`` (as libpq does).
    """
    url = urlsplit(database_url)
    if url.scheme == "sqlite":
        path = unquote(url.path)
        if url.netloc:  # sqlite://relative/path is a mistake people make; say so
            raise ValueError("use sqlite:///relative/path or sqlite:////absolute/path")
        path = path[1:] if path.startswith("/") else path
        owner_only(Path(path))
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "10"}
    if url.scheme in ("postgres", "postgresql"):
        query = dict(part.split("=", 1) for part in url.query.split("&") if "=" in part)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": unquote(query.get("host") or url.hostname or "localhost"),
            "POSTGRES_PORT": str(url.port or query.get("port") or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            # Seconds to wait for a pooled connection; eventsourcing tries 10 times, so a
            # command caught by a database outage answers `unavailable` within about 20 s.
            "POSTGRES_CONNECT_TIMEOUT": "2",
            # Enough for the command workers, the follower and the feed at once.  No pre-ping:
            # it costs a round trip per checkout (a fifth of a command's time); a connection
            # broken by a database restart fails once, is discarded, and eventsourcing retries.
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_LOCK_TIMEOUT": str(LOCK_SECONDS),  # eventsourcing sets it for each write
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(IDLE_IN_TRANSACTION_SECONDS),
            "APPLICATION_RECORDER_TOPIC": f"{AuthbusRecorder.__module__}:{AuthbusRecorder.__qualname__}",
        }
    raise ValueError(f"unsupported database URL scheme {url.scheme!r} (use sqlite:/// or postgresql://)")


def with_database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the PostgreSQL server of ``server_url`` (query kept)."""
    head, _, query = server_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def open_store(database_url: str, personal_wrap: KeyWrap | None = None) -> EventStore:
    return EventStore(env=store_environment(database_url), personal_wrap=personal_wrap)


def is_postgres(database_url: str) -> bool:
    return urlsplit(database_url).scheme in ("postgres", "postgresql")
