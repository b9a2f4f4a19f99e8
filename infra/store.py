"""Event store wiring: one eventsourcing Application over SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier


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


class EventStore(Application):
    """The whole log of authbus: every aggregate of every tenant, in one sequence."""

    name = "authbus"

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
        }
    raise ValueError(f"unsupported database URL scheme {url.scheme!r} (use sqlite:/// or postgresql://)")


def with_database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the PostgreSQL server of ``server_url`` (query kept)."""
    head, _, query = server_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def open_store(database_url: str) -> EventStore:
    return EventStore(env=store_environment(database_url))


def is_postgres(database_url: str) -> bool:
    return urlsplit(database_url).scheme in ("postgres", "postgresql")
