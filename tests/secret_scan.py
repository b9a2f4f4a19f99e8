"""After the whole suite: no secret any test was ever given is in any store the suite made.

Every reply and request that crosses NATS in this process is watched. The watcher records
the secret part of every token, every HS256 secret, the signature of every access token
and every password sent. At the end of the session, each SQLite file and PostgreSQL
database the suite created (``Databases.new``) is read raw and searched for them. The
search is exhaustive and cheap: each secret has a fixed alphabet and length, so every such
run of characters in a store is pulled out and looked up in a set. This is the
"nothing in plaintext" half of DESIGN's non-negotiable 4, proved over everything the suite
did, not over one test's data.  Every authbus log line of the session, formatted as
``--log-format json`` writes it, is searched the same way: no secret reaches a log either.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from nats.aio.client import Client

from authbus.domain import tokens
from authbus.infra.observability.logs import Correlated, JsonFormatter

SECRET_FIELDS = ("token", "secret", "refresh_token", "access_token")
PASSWORD_FIELDS = ("password", "new_password", "old_password")
RUNS = re.compile(rb"[A-Za-z0-9_\-]{20,}")


class Watcher:
    def __init__(self) -> None:
        self.secrets: set[bytes] = set()  # fixed-alphabet secrets, found as whole runs
        self.passwords: set[bytes] = set()  # free text, searched for as is
        self.scanned = 0  # stores searched, once the session is over

    def wrap(self, request: Any) -> Any:
        watcher = self

        async def watched(nc: Client, subject: str, payload: bytes = b"", *args: Any, **kwargs: Any) -> Any:
            watcher.look(payload, PASSWORD_FIELDS, password=True)
            reply = await request(nc, subject, payload, *args, **kwargs)
            watcher.look(reply.data, SECRET_FIELDS)
            return reply

        return watched

    def look(self, data: bytes, fields: tuple[str, ...], password: bool = False) -> None:
        try:
            body = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # the bad-input tests send such
            return
        for found in _values(body, fields):
            self.add(found, password)

    def add(self, value: str, password: bool) -> None:
        if password:
            # What a password must be (shorter ones were refused anyway), and not text of
            # authbus's own code: Hypothesis draws strings from the code's constants, and the
            # fuzz test's "PasswordChanged" is in every store as an event's name.
            if len(value) >= 8 and value.encode() not in _source_text():
                self.passwords.add(value.encode())
            return
        parsed = tokens.parse(value)
        if parsed is not None:
            self.secrets.add(parsed.secret.encode())
        elif value.count(".") == 2:  # a JWT: its signature is the secret part
            self.secrets.add(value.rsplit(".", 1)[1].encode())
        elif RUNS.fullmatch(value.encode()):
            self.secrets.add(value.encode())  # an HS256 secret

    def leaks(self, raw: bytes) -> list[str]:
        found = {run for run in RUNS.findall(raw) if run in self.secrets}
        found.update(p for p in self.passwords if p in raw)
        return sorted(f.decode(errors="replace")[:12] + "…" for f in found)


class LogRecorder(logging.Handler):
    """Keeps every log line at info level and up, as the JSON log format writes it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(Correlated())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> bytes:
        return "\n".join(self.lines).encode()


def _values(body: Any, fields: tuple[str, ...]) -> list[str]:
    """Every string under one of ``fields``, at any depth."""
    if isinstance(body, dict):
        out = [v for k, v in body.items() if k in fields and isinstance(v, str)]
        for value in body.values():
            out.extend(_values(value, fields))
        return out
    if isinstance(body, list):
        return [v for item in body for v in _values(item, fields)]
    return []


def stored_bytes(database_url: str) -> bytes:
    """Everything a store holds, as raw bytes: the SQLite files, or every PostgreSQL row.
    Only once no connection of this process has a SQLite store open: closing any descriptor
    of the file drops every POSIX lock the process holds on it, its connections' included."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return b"".join(
            str(row).encode() + b"".join(bytes(v) for v in row if isinstance(v, (bytes, memoryview)))
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
        )


_SOURCE: list[bytes] = []


def _source_text() -> bytes:
    """Every Python file of the authbus package (not its tests: their passwords are real
    ones to look for), read once."""
    if not _SOURCE:
        root = Path(tokens.__file__).resolve().parent.parent
        files = (p for p in sorted(root.rglob("*.py")) if not {".venv", "tests"} & set(p.relative_to(root).parts))
        _SOURCE.append(b"\n".join(p.read_bytes() for p in files))
    return _SOURCE[0]
