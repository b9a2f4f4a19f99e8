"""Event store wiring: one eventsourcing Application over SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from eventsourcing.application import Application


class EventStore(Application):
    """The whole log of authbus: every aggregate of every tenant, in one sequence."""

    name = "authbus"


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
        Path(path).parent.mkdir(parents=True, exist_ok=True)
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
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_PRE_PING": "y",
        }
    raise ValueError(f"unsupported database URL scheme {url.scheme!r} (use sqlite:/// or postgresql://)")


def open_store(database_url: str) -> EventStore:
    return EventStore(env=store_environment(database_url))


def is_postgres(database_url: str) -> bool:
    return urlsplit(database_url).scheme in ("postgres", "postgresql")
