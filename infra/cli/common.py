"""What every ``authbus`` command shares: the root app, its options, and how answers are shown."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from authbus.infra.console import LazyConsole
from authbus.infra.settings import DEFAULT_DATA_DIR

if TYPE_CHECKING:  # the client (nats, asyncio, msgspec) loads when a command first asks
    from authbus.infra.client import AuthbusClient

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: rich's formatter alone took longer than the rest of --help
    help="authbus: event-sourced authentication and authorization on NATS.",
)

# A line is never folded at the terminal's width (80 when piped): a URL or a command
# printed to be copied stays whole. Tables still fit the width.
out = LazyConsole(soft_wrap=True)
err = LazyConsole(stderr=True, soft_wrap=True)
log = logging.getLogger("authbus.cli")

Prefix = Annotated[str, typer.Option(envvar="AUTHBUS_SUBJECT_PREFIX", help="Subject prefix.")]


class Ctx:
    def __init__(self, nats_url: str, token: str | None, prefix: str, as_json: bool) -> None:
        self.nats_url, self.token, self.prefix, self.as_json = nats_url, token, prefix, as_json


# Commands that connect to no authbus through the CLI's options: no context is read for them.
LOCAL_COMMANDS = frozenset({"context", "dev", "serve", "bootstrap", "bench", "callout"})


@app.callback()
def main_options(
    ctx: typer.Context,
    nats_url: Annotated[
        Optional[str],
        typer.Option(envvar="AUTHBUS_NATS_URL", help="NATS server URL; default nats://127.0.0.1:$AUTHBUS_NATS_PORT (4222)."),
    ] = None,
    token: Annotated[
        Optional[str], typer.Option(envvar="AUTHBUS_TOKEN", help="Bearer credential; default: ./.authbus/root.token if present.")
    ] = None,
    subject_prefix: Annotated[
        Optional[str], typer.Option(envvar="AUTHBUS_SUBJECT_PREFIX", help="Subject prefix; default auth.")
    ] = None,
    context: Annotated[
        Optional[str],
        typer.Option(envvar="AUTHBUS_CONTEXT", help="A saved connection (authbus context); default: the one in use."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    saved: dict[str, Any] = {}
    if ctx.invoked_subcommand not in LOCAL_COMMANDS:  # flags and AUTHBUS_* first, then the context
        from authbus.infra.cli.contexts import selected

        saved = selected(context)
    if nats_url is None:  # else the port `authbus dev --nats-port` (or AUTHBUS_NATS_PORT) gave its server
        nats_url = saved.get("nats_url") or f"nats://127.0.0.1:{os.environ.get('AUTHBUS_NATS_PORT') or 4222}"
    if token is None:
        default = Path(os.environ.get("AUTHBUS_DATA_DIR") or DEFAULT_DATA_DIR) / "root.token"
        token = saved.get("token") or (default.read_text().strip() if default.exists() else None)
    ctx.obj = Ctx(nats_url, token, subject_prefix or saved.get("subject_prefix") or "auth", json_output)


def ask(ctx: typer.Context, request: Callable[[AuthbusClient], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    import asyncio

    from authbus.infra.client import AuthbusClient, AuthbusError, CredentialsRefused

    options: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        try:
            client = await AuthbusClient.connect(options.nats_url, options.prefix, options.token)
        except CredentialsRefused as refused:
            fail(f"{refused}: check --token, AUTHBUS_TOKEN or the context in use", 2)
        except Exception:
            fail(f"cannot reach NATS at {options.nats_url} (is `authbus dev` running?)", 2)
        try:
            return await request(client)
        except AuthbusError as error:
            field = error.details.get("field")
            fail(f"{error.code}: {error.message}" + (f" (field: {field})" if field else ""), 1)
        except TimeoutError:
            fail(f"no authbus answered on {options.prefix}.v1.* at {options.nats_url}", 2)
        finally:
            await client.close()

    return asyncio.run(go())


def show(ctx: typer.Context, data: Any, columns: tuple[str, ...] = ()) -> None:
    if ctx.obj.as_json:
        out.print_json(json.dumps(data))
        return
    if isinstance(data, list) and not data:
        out.print("nothing found", style="dim")  # rather than an empty table, which reads as a fault
        return
    if columns and isinstance(data, list):
        from rich.table import Table

        table = Table()
        for column in columns:  # an id is copied whole: never folded across lines
            whole = column == "id" or column.endswith("_id")
            table.add_column(column, overflow="fold", no_wrap=whole, min_width=36 if whole else None)
        for row in data:
            table.add_row(*(cell(row.get(c)) for c in columns))
        out.print(table, markup=False)  # names, reasons and scopes are the users' own text, not markup
        return
    # Plain lines, soft-wrapped: a token shown once must copy as one piece.
    from rich.text import Text

    width = max(map(len, data), default=0)
    for key, value in data.items():
        out.print(Text.assemble((key.ljust(width), "bold"), "  ", cell(value)), soft_wrap=True, highlight=False)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(cell, value))
    if isinstance(value, dict):
        return format_scope(value) if "operation" in value else json.dumps(value)
    return str(value)


def format_scope(scope: dict[str, Any]) -> str:
    text = f"{scope['entity_type']}:{scope['operation']}:{scope['entity_id']}"
    return f"{scope['domain']}/{text}" if scope.get("domain") else text


def or_exit(make: Callable[[], Any]) -> Any:
    from authbus.infra.crypto.kek import KEKError

    try:
        return make()
    except (KEKError, ValueError) as error:
        fail(str(error), 2)


def fail(message: str, code: int) -> None:
    # One line, however narrow the terminal; the message may quote a user's own text.
    from rich.text import Text

    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)
