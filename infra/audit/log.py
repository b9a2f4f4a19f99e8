"""``authbus audit log``: the stored log, one line per event, redacted as on the event feed.

Also what the other audit tools share: opening the store, reading it a page at a time
(constant memory however long the log), points given as a time or a position, progress.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import unquote, urlsplit
from uuid import UUID

import msgspec
import typer

from authbus.domain.times import rfc3339
from authbus.infra.audit.audit_app import audit_app
from authbus.infra.console import LazyConsole
from authbus.infra.settings import Settings

if TYPE_CHECKING:  # the store and the projections load when a tool runs, not with the CLI
    from authbus.infra.crypto.keys import KeyWrap
    from authbus.infra.store import EventStore
    from authbus.projections.audit import Point

PAGE = 2000
TABLE_ROWS = 200  # a table is printed this many rows at a time, so memory stays flat

err = LazyConsole(stderr=True)
out = LazyConsole()

DatabaseUrl = Annotated[
    str | None, typer.Option(envvar="AUTHBUS_DATABASE_URL", help="The event store (default: sqlite under ./.authbus).")
]


def fail(message: str, code: int = 2) -> NoReturn:
    from rich.text import Text

    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False)
    raise typer.Exit(code)


def open_log(database_url: str | None) -> EventStore:
    """The event store, refusing to conjure an empty SQLite file where none is."""
    from authbus.infra.store import open_store

    url = Settings.load(database_url=database_url).database_url
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and not os.path.exists(unquote(parts.path)[1:]):
        fail(f"no event store at {url}")
    wrap = _personal_wrap()
    try:
        return open_store(url, wrap)
    except Exception as error:  # unreachable database, bad URL: one line, not a traceback
        fail(f"cannot open the event store: {error}")


def _personal_wrap() -> KeyWrap | None:
    """The KEK's key wrap when one is at hand (AUTHBUS_KEK, or the data directory's kek):
    with it an auditor reads users' personal data; without it, those fields read [sealed]."""
    from authbus.infra.crypto.kek import KEKError, load_kek
    from authbus.infra.crypto.key_material import KeyMaterial

    settings = Settings.load()
    if not settings.kek and not settings.default_kek_file.exists():
        return None
    try:
        return KeyMaterial.from_kek(load_kek(settings.kek, settings.default_kek_file)).key_wrap
    except KEKError as error:
        fail(str(error))


def head(store: EventStore) -> int:
    return store.recorder.max_notification_id() or 0


def read(
    store: EventStore, start: int = 1, stop: int | None = None, only: frozenset[UUID] | None = None, bar: Any = None
) -> Iterator[list[tuple[int, Any]]]:
    """The log from ``start`` up to ``stop`` (default: its head), a page at a time, decoded.
    With ``only``, just the events of those aggregates (the rest are not even decoded)."""
    to_event = store.mapper.to_domain_event
    while stop is None or start <= stop:
        page = store.recorder.select_notifications(start=start, limit=PAGE, stop=stop)
        if not page:
            return
        if bar is not None:
            bar(page[-1].id)
        yield [(n.id, to_event(n)) for n in page if only is None or n.originator_id in only]
        if len(page) < PAGE:
            return
        start = page[-1].id + 1


@contextmanager
def progress(label: str, total: int, shown: bool = True) -> Iterator[Any]:
    """A transient bar on stderr, when stderr is a terminal; yields ``advance_to(position)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not (shown and err.is_terminal),
    )
    task = bar.add_task(label, total=max(total, 1))
    with bar:
        yield lambda position: bar.update(task, completed=position)


def parse_point(text: str, option: str) -> Point:
    """A position (an integer) or a time (ISO 8601; without an offset it is UTC)."""
    from authbus.projections.audit import Point

    if text.isdigit():
        return Point(position=int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither a position nor an ISO 8601 time", param_hint=option) from None
    return Point(time=moment if moment.tzinfo else moment.replace(tzinfo=UTC))


# ---------------------------------------------------------------- audit log

# name, width (None: the rest), value.  Ids are cut to 8 characters: jsonl has them whole.
COLUMNS = (
    ("position", 8, lambda line: str(line["position"])),
    ("time", 20, lambda line: rfc3339(line["timestamp"]) or "-"),
    ("type", 20, lambda line: line["type"]),
    ("aggregate", 20, lambda line: f"{line['aggregate']} {line['aggregate_id'][:8]}"),
    ("tenant", 8, lambda line: line["tenant_id"][:8]),
    ("actor", 8, lambda line: (line["actor"] or "-")[:8]),
    ("correlation", 11, lambda line: (line["correlation_id"] or "-")[:8]),
    ("data", None, lambda line: msgspec.json.encode(line["data"]).decode() if line["data"] else "-"),
)


@audit_app.command("log")
def log(
    since: Annotated[str | None, typer.Option(help="From this position, or from the first event at or after this time.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this position, or up to this time.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only events of this tenant.")] = None,
    principal: Annotated[str | None, typer.Option(help="Only events this principal did, or that were done to it.")] = None,
    type: Annotated[
        list[str] | None, typer.Option("--type", help="Only these event types (comma-separated or repeated).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="jsonl or table (default: table on a terminal, else jsonl).")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Stream the stored log, one event a line, with no hash or sealed key.

    Shows position, time, actor, correlation id, type, aggregate, tenant and data.  Reads the
    store directly, a page at a time; a time bound cuts the log where its timestamps cross it.

    Example: authbus audit log --tenant <tenant_id> --type PATCreated,PATRevoked --since 2026-01-01 --format jsonl | jq .
    """
    from authbus.projections.audit import LogFilter, LogScan
    from authbus.projections.read_model import ReadModel

    chosen = format or ("table" if out.is_terminal else "jsonl")
    if chosen not in ("jsonl", "table"):
        raise typer.BadParameter("use jsonl or table", param_hint="--format")
    flt = LogFilter(
        since=parse_point(since, "--since") if since else None,
        until=parse_point(until, "--until") if until else None,
        tenant_id=str(parse_id(tenant, "--tenant")) if tenant else None,
        principal_id=principal,
        types=frozenset(name.strip() for names in type or () for name in names.split(",") if name.strip()),
    )
    store = open_log(database_url)
    write = _jsonl() if chosen == "jsonl" else _table()
    scan = LogScan(flt, ReadModel(), fold=True)
    try:
        # The bar only where it cannot tangle with the rows: output going to a file or a pipe.
        with progress("reading the log", head(store), shown=not out.is_terminal) as bar:
            for batch in read(store, stop=flt.until.position if flt.until else None, bar=bar):
                write(scan.lines(batch))
                if scan.ended:
                    break
        write(None)
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        store.close()


def parse_id(text: str, option: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an id", param_hint=option) from None


def _jsonl():
    encode = msgspec.json.Encoder().encode
    stream = sys.stdout.buffer

    def write(lines: list[dict[str, Any]] | None) -> None:
        if lines:
            stream.write(b"".join(encode(line) + b"\n" for line in lines))
        stream.flush()

    return write


def _table():
    from rich.table import Table

    rows: list[list[str]] = []
    first = True
    console = out if out.is_terminal else LazyConsole(width=200)  # a file gets the table unsqueezed

    def flush() -> None:
        nonlocal first
        table = Table(show_header=first, show_edge=False, pad_edge=False, expand=True)
        for name, width, _ in COLUMNS:
            table.add_column(name, width=width, no_wrap=width is not None, ratio=None if width else 1, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table, markup=False, highlight=False)
        rows.clear()
        first = False

    def write(lines: list[dict[str, Any]] | None) -> None:
        for line in lines or ():
            rows.append([value(line) for _, _, value in COLUMNS])
            if len(rows) >= TABLE_ROWS:
                flush()
        if lines is None and (rows or first):
            flush()

    return write
