"""``authbus audit as-of``: a credential's standing at a past point, replayed from position 0."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from authbus.domain.errors import InvalidRequest
from authbus.infra.audit.audit_app import audit_app
from authbus.infra.audit.log import DatabaseUrl, fail, head, open_log, out, parse_id, parse_point, progress, read


@audit_app.command("as-of")
def as_of_command(
    ctx: typer.Context,
    at: Annotated[
        str, typer.Argument(metavar="TIME|POSITION", help="A log position, or an ISO 8601 time (UTC without an offset).")
    ],
    credential: Annotated[str | None, typer.Option(help="A PAT or key id: its standing, secret not checked.")] = None,
    token: Annotated[str | None, typer.Option(help="A PAT or key, secret checked too ('-' reads it from stdin).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Was a PAT or key valid at a past point, whose was it, which scopes did it hold.

    Replays the stored log from position 0 up to the point into a fresh read model, and lists
    the events on the credential, its owner and its tenant that made it so (login attempts
    left out).  Exits 0 when it was valid, 1 when not.  JWT access tokens are not supported.

    Example: authbus audit as-of 2026-03-01T12:00:00Z --credential <pat_id>
    """
    from authbus.projections.audit import Replay, as_of, history, related, target  # when run: the CLI starts light

    if (credential is None) == (token is None):
        fail("give exactly one of --credential and --token")
    if token == "-":
        token = sys.stdin.readline().strip()
    credential_id = parse_id(credential, "--credential") if credential else None
    try:
        wanted = target(credential_id, token)
    except InvalidRequest as error:
        fail(error.message)
    replay = Replay(parse_point(at, "TIME|POSITION"))
    store = open_log(database_url)
    try:
        with progress("replaying the log", head(store)) as bar:
            for batch in read(store, bar=bar):
                if not replay.feed(batch):
                    break
        upto = replay.model.position
        ids = related(replay.model, wanted)
        events = []
        if ids:
            with progress("collecting its events", upto) as bar:
                events = [e for batch in read(store, 1, upto, only=ids, bar=bar) for e in history(batch, ids, upto)]
    finally:
        store.close()
    answer = as_of(replay, events, credential_id, token)
    if json_output or getattr(ctx.obj, "as_json", False):
        out.print_json(json.dumps(answer))
    else:
        _print(answer)
    raise typer.Exit(0 if answer["valid"] else 1)


def _print(answer: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    at, credential, principal = answer["at"], answer["credential"], answer["principal"]
    verdict = "[green]valid[/]" if answer["valid"] else f"[red]not valid[/] ({answer['reason']})"
    out.print(f"[bold]as of[/]       position {at['position']}, {at['time'] or 'before the first event'}", highlight=False)
    out.print(f"[bold]verdict[/]     {verdict}", highlight=False)
    if credential is None:
        return
    out.print(
        f"[bold]credential[/]  {credential['kind']} {credential['id']} {escape(repr(credential['name']))}, "
        f"{credential['status']}, expires {credential['expires_at'] or 'never'}",
        highlight=False,
    )
    out.print(
        f"[bold]principal[/]   {escape(principal['username'])} ({principal['id']}), tenant {principal['tenant_id']}, "
        f"roles {', '.join(principal['roles']) or '-'}{', disabled' if principal['disabled'] else ''}",
        highlight=False,
    )
    scopes = answer["scopes"]
    held = "its owner's roles (no scopes of its own)" if scopes is None else ", ".join(map(_scope, scopes)) or "none"
    out.print(f"[bold]scopes[/]      {escape(held)}", highlight=False)
    table = Table(title="events that made it so", title_justify="left")
    for column in ("position", "timestamp", "type", "aggregate", "actor"):
        table.add_column(column, overflow="fold")
    for event in answer["events"]:
        table.add_row(str(event["position"]), event["timestamp"], event["type"], event["aggregate"], event["actor"] or "-")
    out.print(table)


def _scope(scope: dict[str, Any]) -> str:
    text = f"{scope['entity_type']}:{scope['operation']}:{scope['entity_id']}"
    return f"{scope['domain']}/{text}" if scope.get("domain") else text
