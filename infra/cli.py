"""The ``authbus`` command: run it (dev, serve, bootstrap) and administer it over NATS."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from authbus.domain.errors import Conflict
from authbus.infra import audit_as_of, audit_chain, audit_log, audit_rebuild, logs  # noqa: F401  (they register on audit_app)
from authbus.infra.audit_cli import audit_app
from authbus.infra.bench_cli import bench
from authbus.infra.callout_config import CalloutSetup, without_credentials
from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.nats_server import NatsServer
from authbus.infra.node import Node, open_runner, run_bootstrap
from authbus.infra.secrets import KEKError, write_private
from authbus.infra.settings import DEFAULT_DATA_DIR, Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="authbus: event-sourced authentication and authorization on NATS."
)
tenant_app = typer.Typer(no_args_is_help=True, help="Create, disable and enable tenants.")
user_app = typer.Typer(no_args_is_help=True, help="Register, inspect, disable users; grant and revoke roles.")
pat_app = typer.Typer(no_args_is_help=True, help="Personal access tokens and their scopes.")
key_app = typer.Typer(no_args_is_help=True, help="API keys, recovery and invitation keys.")
signing_app = typer.Typer(no_args_is_help=True, help="Keys that sign JWTs: create, list, retire, revoke.")
session_app = typer.Typer(no_args_is_help=True, help="Login sessions (refresh-token families).")
role_app = typer.Typer(
    no_args_is_help=True,
    help="Roles: the built-in root, admin, auditor and user, and the tenant's own, which carry scopes. Grant and revoke both.",
)
scope_app = typer.Typer(no_args_is_help=True, help="Add and remove a PAT's scopes.")
callout_app = typer.Typer(no_args_is_help=True, help="NATS auth callout: keys and nats-server configuration.")
for sub, name in (
    (audit_app, "audit"),
    (tenant_app, "tenant"),
    (user_app, "user"),
    (pat_app, "pat"),
    (key_app, "key"),
    (signing_app, "signing-key"),
    (session_app, "session"),
    (role_app, "role"),
    (scope_app, "scope"),
    (callout_app, "callout"),
):
    app.add_typer(sub, name=name)
app.command()(bench)

out = Console()
err = Console(stderr=True)
log = logging.getLogger("authbus.cli")

DataDir = Annotated[
    Path, typer.Option(envvar="AUTHBUS_DATA_DIR", help="Where dev keeps its store, KEK, NATS data and root token.")
]
Prefix = Annotated[str, typer.Option(envvar="AUTHBUS_SUBJECT_PREFIX", help="Subject prefix.")]
MetricsPort = Annotated[
    Optional[int],
    typer.Option(envvar="AUTHBUS_METRICS_PORT", help="Serve Prometheus metrics at http://<metrics-host>:<port>/metrics."),
]
MetricsHost = Annotated[str, typer.Option(envvar="AUTHBUS_METRICS_HOST", help="Address the metrics endpoint listens on.")]
LogFormat = Annotated[str, typer.Option(envvar="AUTHBUS_LOG_FORMAT", help="text, or json for one JSON object a line.")]
LogLevel = Annotated[str, typer.Option(envvar="AUTHBUS_LOG_LEVEL", help="debug, info, warning or error.")]


# ---------------------------------------------------------------- running it


@app.command()
def dev(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    nats_port: Annotated[int, typer.Option(envvar="AUTHBUS_NATS_PORT", help="Port of the embedded nats-server.")] = 4222,
    subject_prefix: Prefix = "auth",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    log_format: LogFormat = "text",
    log_level: LogLevel = "info",
    callout: Annotated[
        bool,
        typer.Option(
            "--callout", help="Have nats-server let clients in only with an authbus token, asking authbus (NATS auth callout)."
        ),
    ] = False,
) -> None:
    """Run everything on this machine: a real nats-server (JetStream) and a SQLite store under
    ./.authbus, root bootstrapped on first run with its token in ./.authbus/root.token.

    With --callout, nats-server asks authbus about every connecting client: clients connect
    with a PAT, API key or access token as their NATS token (nats://<token>@127.0.0.1:4222)
    and may use the subjects their scopes allow (docs/operations.md §4).

    Example: authbus dev --nats-port 4333 --metrics-port 9090
    """
    settings = Settings.load(
        data_dir=data_dir,
        subject_prefix=subject_prefix,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        log_level=log_level,
    )
    _or_exit(lambda: logs.configure(settings.log_format, settings.log_level))
    settings.database_url = (
        settings.database_url if os.environ.get("AUTHBUS_DATABASE_URL") else f"sqlite:///{data_dir / 'events.db'}"
    )
    lock = _or_exit(lambda: hold_data_dir(data_dir))  # noqa: F841  (held until the process ends)
    extra_args: tuple[str, ...] = ()
    if callout:
        keys = CalloutSetup.load_or_create(data_dir)
        extra_args = ("-c", str(keys.write_config(data_dir / "nats-callout.conf", settings.subject_prefix)))
        settings.callout_issuer_seed, settings.callout_xkey_seed = keys.issuer_seed, keys.xkey_seed
    server = NatsServer(data_dir / "nats", port=nats_port, extra_args=extra_args, owned=True)
    try:
        server.start()
        settings.nats_url = keys.service_url(server.host, server.port) if callout else server.url
        if callout:
            settings.nats_system_url = keys.system_url(server.host, server.port)
        runner = _or_exit(lambda: open_runner(settings, create_kek=True))
        fresh = _bootstrap_into(runner, settings.root_token_file)
        asyncio.run(_run_until_signalled(settings, runner, lambda node: _dev_banner(settings, server, node, fresh)))
    except RuntimeError as error:
        _fail(str(error), 2)
    finally:
        server.stop()


@app.command()
def serve(
    nats_url: Annotated[Optional[str], typer.Option(envvar="AUTHBUS_NATS_URL", help="NATS server URL.")] = None,
    database_url: Annotated[
        Optional[str], typer.Option(envvar="AUTHBUS_DATABASE_URL", help="postgresql://… (or sqlite:///path).")
    ] = None,
    kek_file: Annotated[
        Optional[Path], typer.Option(envvar="AUTHBUS_KEK_FILE", help="File holding the hex KEK (or set AUTHBUS_KEK).")
    ] = None,
    subject_prefix: Prefix = "auth",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    log_format: LogFormat = "text",
    log_level: LogLevel = "info",
    data_dir: Annotated[
        Optional[Path],
        typer.Option(
            envvar="AUTHBUS_DATA_DIR",
            help="Where this instance keeps its read-model snapshot (and the SQLite store when no --database-url).",
        ),
    ] = None,
) -> None:
    """Serve every endpoint against an external NATS and event store.  Run several side by side:
    they share the queue group and each follows the store.

    Example: authbus serve --nats-url nats://nats:4222 --database-url postgresql://authbus:pw@db/authbus --log-format json
    """
    settings = Settings.load(
        data_dir=data_dir,
        nats_url=nats_url,
        database_url=database_url,
        kek_file=kek_file,
        subject_prefix=subject_prefix,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        log_level=log_level,
    )
    _or_exit(lambda: logs.configure(settings.log_format, settings.log_level))
    runner = _or_exit(lambda: open_runner(settings))
    asyncio.run(
        _run_until_signalled(
            settings,
            runner,
            lambda node: log.info(
                "serving on %s (prefix %r), store at position %d",
                without_credentials(settings.nats_url),
                settings.subject_prefix,
                node.model.position,
            ),
        )
    )


@app.command()
def bootstrap(
    database_url: Annotated[Optional[str], typer.Option(envvar="AUTHBUS_DATABASE_URL", help="The event store.")] = None,
    kek_file: Annotated[
        Optional[Path], typer.Option(envvar="AUTHBUS_KEK_FILE", help="File holding the hex KEK (or set AUTHBUS_KEK).")
    ] = None,
    token_file: Annotated[Optional[Path], typer.Option(help="Also write the token here (mode 0600).")] = None,
) -> None:
    """Create the system tenant, the root principal and the system signing key (sealed under
    the KEK), and print root's token once.

    Example: AUTHBUS_KEK=… authbus bootstrap --database-url postgresql://authbus:pw@db/authbus
    """
    settings = Settings.load(database_url=database_url, kek_file=kek_file)
    runner = _or_exit(lambda: open_runner(settings))
    try:
        result = run_bootstrap(runner)
    except Conflict as error:
        _fail(error.message, 1)
    finally:
        runner.store.close()
    if token_file is not None:
        write_private(token_file, result["token"] + "\n")
    out.print(result["token"], markup=False, highlight=False)


@callout_app.command("init")
def callout_init(
    nats_host: Annotated[str, typer.Option(help="Host authbus reaches nats-server at.")] = "nats",
    nats_port: Annotated[int, typer.Option(help="Its client port.")] = 4222,
    subject_prefix: Prefix = "auth",
) -> None:
    """Make fresh callout keys and passwords.  Print the settings of `authbus serve` and the
    nats-server configuration that go with them: authbus's account, the clients' account and
    the system account (docs/operations.md §4).  The output holds secrets: keep it as you
    keep the KEK.

    Example: authbus callout init --nats-host nats > callout.txt
    """
    setup = CalloutSetup.create()
    out.print(
        "# authbus serve: environment\n"
        f"AUTHBUS_NATS_URL={setup.service_url(nats_host, nats_port)}\n"
        f"AUTHBUS_NATS_SYSTEM_URL={setup.system_url(nats_host, nats_port)}\n"
        f"AUTHBUS_CALLOUT_ISSUER_SEED={setup.issuer_seed}\n"
        f"AUTHBUS_CALLOUT_XKEY_SEED={setup.xkey_seed}\n"
        f"AUTHBUS_SUBJECT_PREFIX={subject_prefix}\n\n"
        f"# nats-server: configuration\n{setup.config(subject_prefix)}",
        markup=False,
        highlight=False,
        soft_wrap=True,
        end="",
    )


def hold_data_dir(data_dir: Path) -> IO[str]:
    """The data directory, private to its owner (0700), locked for this process: a second
    ``authbus dev`` on it would corrupt JetStream's state.  The lock goes with the process,
    however it ends."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    lock = open(data_dir / "dev.lock", "w")  # noqa: SIM115  (held open for the process's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ValueError(f"another authbus dev is running on {data_dir}") from None
    return lock


def _bootstrap_into(runner: Any, token_file: Path) -> bool:
    try:
        token = run_bootstrap(runner)["token"]
    except Conflict:
        if not token_file.exists():
            err.print(f"[yellow]the store is bootstrapped but {token_file} is missing; the root token cannot be shown again[/]")
        return False
    write_private(token_file, token + "\n")
    return True


async def _run_until_signalled(settings: Settings, runner: Any, started: Callable[[Node], None]) -> None:
    try:
        node = Node(settings, runner)
        await node.start()
    except Exception as error:  # NATS or the store unreachable: one clear line, not a traceback
        runner.store.close()
        _fail(f"cannot start: {error}", 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started(node)
    await stop.wait()
    log.info("stopping: draining requests under way")
    await node.stop()
    log.info("stopped")


def _dev_banner(settings: Settings, server: NatsServer, node: Node, fresh: bool) -> None:
    me = "authbus" if Path(sys.argv[0]).name == sys.argv[0] else sys.argv[0]
    token_file = settings.root_token_file
    out.print(f"[bold green]authbus dev[/] is running{' (root bootstrapped)' if fresh else ''}")
    out.print(f"  NATS         {server.url}  (JetStream, data in {settings.data_dir / 'nats'})")
    if node.callout_keys is not None:
        out.print(
            f"  auth callout clients connect with their token: nats://<token>@{server.host}:{server.port},\n"
            "               replies come to their private inbox (docs/wire.md §6.9)",
            markup=False,
            highlight=False,
        )
    out.print(f"  event store  {settings.database_url}  (position {node.model.position})")
    out.print(f"  root token   {token_file}")
    if node.metrics is not None:
        out.print(f"  metrics      http://{node.metrics.host}:{node.metrics.port}/metrics")
    out.print("\nTry, in another terminal:", highlight=False)
    out.print(
        f"  {me} tenant create acme\n"
        f"  {me} user create --tenant <tenant_id> alice\n"
        f"  {me} role create --tenant <tenant_id> readers --scope 'docs/document:read:*'\n"
        f"  {me} role grant <user_id> readers\n"
        f"  {me} pat create --user <user_id> --name laptop --scope 'docs/document:read:*'\n"
        f"  {me} verify <token>\n"
        f"  {me} authorize <token> --domain docs --entity-type document --operation read --entity-id 42",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    out.print("\nCtrl-C stops everything; the next start resumes from the same data.")


# ---------------------------------------------------------------- talking to it


class Ctx:
    def __init__(self, nats_url: str, token: str | None, prefix: str, as_json: bool) -> None:
        self.nats_url, self.token, self.prefix, self.as_json = nats_url, token, prefix, as_json


@app.callback()
def main_options(
    ctx: typer.Context,
    nats_url: Annotated[str, typer.Option(envvar="AUTHBUS_NATS_URL", help="NATS server URL.")] = "nats://127.0.0.1:4222",
    token: Annotated[
        Optional[str], typer.Option(envvar="AUTHBUS_TOKEN", help="Bearer credential; default: ./.authbus/root.token if present.")
    ] = None,
    subject_prefix: Prefix = "auth",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    if token is None:
        default = Path(os.environ.get("AUTHBUS_DATA_DIR") or DEFAULT_DATA_DIR) / "root.token"
        token = default.read_text().strip() if default.exists() else None
    ctx.obj = Ctx(nats_url, token, subject_prefix, json_output)


def _call(ctx: typer.Context, request: Callable[[AuthbusClient], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    options: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        try:
            client = await AuthbusClient.connect(options.nats_url, options.prefix, options.token)
        except Exception:
            _fail(f"cannot reach NATS at {options.nats_url} (is `authbus dev` running?)", 2)
        try:
            return await request(client)
        except AuthbusError as error:
            field = error.details.get("field")
            _fail(f"{error.code}: {error.message}" + (f" (field: {field})" if field else ""), 1)
        except TimeoutError:
            _fail(f"no authbus answered on {options.prefix}.v1.* at {options.nats_url}", 2)
        finally:
            await client.close()

    return asyncio.run(go())


def _show(ctx: typer.Context, data: Any, columns: tuple[str, ...] = ()) -> None:
    if ctx.obj.as_json:
        out.print_json(json.dumps(data))
        return
    if columns and isinstance(data, list):
        table = Table()
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in data:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        out.print(table, markup=False)  # names, reasons and scopes are the users' own text, not markup
        return
    # Plain lines, soft-wrapped: a token shown once must copy as one piece.
    width = max(map(len, data), default=0)
    for key, value in data.items():
        out.print(Text.assemble((key.ljust(width), "bold"), "  ", _cell(value)), soft_wrap=True, highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(_cell, value))
    if isinstance(value, dict):
        return format_scope(value) if "operation" in value else json.dumps(value)
    return str(value)


def format_scope(scope: dict[str, Any]) -> str:
    text = f"{scope['entity_type']}:{scope['operation']}:{scope['entity_id']}"
    return f"{scope['domain']}/{text}" if scope.get("domain") else text


def _command(ctx: typer.Context, name: str, /, **fields: Any) -> None:
    fields = {k: v for k, v in fields.items() if v is not None}
    reply = _call(ctx, lambda c: c.command(name, **fields))
    _show(ctx, {**reply["result"], "position": reply["position"]} if not ctx.obj.as_json else reply)


def parse_scope(text: str) -> dict[str, Any]:
    """``[domain/]entity_type:operation:entity_id``, e.g. ``docs/document:read:*``."""
    domain, slash, rest = text.partition("/")
    if not slash:
        domain, rest = None, text
    parts = rest.split(":")
    if len(parts) != 3 or not all(parts):
        raise typer.BadParameter(f"{text!r}: use [domain/]entity_type:operation:entity_id")
    return {"domain": domain, "entity_type": parts[0], "operation": parts[1], "entity_id": parts[2]}


Scopes = Annotated[Optional[list[str]], typer.Option("--scope", help="[domain/]entity_type:operation:entity_id (repeatable).")]
ExpiresIn = Annotated[Optional[int], typer.Option(help="Lifetime in seconds.")]
Reason = Annotated[Optional[str], typer.Option(help="Why (kept in the audit log).")]
CommandId = Annotated[Optional[str], typer.Option(help="Idempotency key: a repeat returns the first reply.")]


@tenant_app.command("create")
def tenant_create(ctx: typer.Context, name: str, command_id: CommandId = None) -> None:
    """Create a tenant (root only).  Example: authbus tenant create acme"""
    _command(ctx, "create_tenant", name=name, command_id=command_id)


@tenant_app.command("disable")
def tenant_disable(ctx: typer.Context, tenant_id: str, reason: Reason = None) -> None:
    """Disable a tenant: none of its credentials verify until it is enabled again."""
    _command(ctx, "disable_tenant", tenant_id=tenant_id, reason=reason)


@tenant_app.command("enable")
def tenant_enable(ctx: typer.Context, tenant_id: str) -> None:
    """Enable a disabled tenant."""
    _command(ctx, "enable_tenant", tenant_id=tenant_id)


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    username: str,
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    role: Annotated[
        Optional[list[str]], typer.Option(help="root, admin, auditor, user or a role of the tenant's own (repeatable).")
    ] = None,
    kind: Annotated[str, typer.Option(help="user or service.")] = "user",
    password_stdin: Annotated[bool, typer.Option(help="Read a password from standard input.")] = False,
    command_id: CommandId = None,
) -> None:
    """Register a user.  Example: authbus user create --tenant <tenant_id> --role admin alice"""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    _command(
        ctx, "register_user", tenant_id=tenant, username=username, kind=kind, roles=role, password=password, command_id=command_id
    )


@user_app.command("get")
def user_get(ctx: typer.Context, user_id: str) -> None:
    """Show one user."""
    _show(ctx, _call(ctx, lambda c: c.admin("get_user", user_id=user_id))["user"])


@user_app.command("list")
def user_list(
    ctx: typer.Context, tenant: Annotated[Optional[str], typer.Option(help="Tenant id (default: your own).")] = None
) -> None:
    """List the users of a tenant."""
    items = _all_pages(ctx, "list_users", tenant_id=tenant)
    _show(ctx, items, ("id", "username", "kind", "roles", "disabled", "created_at"))


@user_app.command("disable")
def user_disable(ctx: typer.Context, user_id: str, reason: Reason = None) -> None:
    """Disable a user: its credentials stop verifying at once."""
    _command(ctx, "disable_user", user_id=user_id, reason=reason)


@user_app.command("enable")
def user_enable(ctx: typer.Context, user_id: str) -> None:
    """Enable a disabled user."""
    _command(ctx, "enable_user", user_id=user_id)


@role_app.command("grant")
@user_app.command("grant-role")
def user_grant_role(ctx: typer.Context, user_id: str, role: str) -> None:
    """Grant a role, built-in or the tenant's own.  Example: authbus role grant <user_id> auditor"""
    _command(ctx, "grant_role", user_id=user_id, role=role)


@role_app.command("revoke")
@user_app.command("revoke-role")
def user_revoke_role(ctx: typer.Context, user_id: str, role: str, reason: Reason = None) -> None:
    """Revoke a role.  Example: authbus role revoke <user_id> admin --reason 'left the team'"""
    _command(ctx, "revoke_role", user_id=user_id, role=role, reason=reason)


@role_app.command("create")
def role_create(
    ctx: typer.Context,
    name: str,
    tenant: Annotated[Optional[str], typer.Option(help="Tenant id (default: your own).")] = None,
    description: Annotated[Optional[str], typer.Option()] = None,
    scope: Scopes = None,
    command_id: CommandId = None,
) -> None:
    """Define a role of the tenant's own, with the scopes its holders get.
    Example: authbus role create readers --tenant <tenant_id> --scope 'docs/document:read:*'"""
    scopes = [parse_scope(s) for s in scope or []]
    _command(ctx, "create_role", name=name, tenant_id=tenant, description=description, scopes=scopes, command_id=command_id)


@role_app.command("list")
def role_list(
    ctx: typer.Context, tenant: Annotated[Optional[str], typer.Option(help="Tenant id (default: your own).")] = None
) -> None:
    """List a tenant's own roles with their scopes.  Example: authbus role list --tenant <tenant_id>"""
    _show(ctx, _all_pages(ctx, "list_roles", tenant_id=tenant), ("id", "name", "scopes", "description"))


@role_app.command("get")
def role_get(ctx: typer.Context, role_id: str) -> None:
    """Show one role.  Example: authbus role get <role_id>"""
    _show(ctx, _call(ctx, lambda c: c.admin("get_role", role_id=role_id))["role"])


@role_app.command("add-scope")
def role_add_scope(ctx: typer.Context, role_id: str, scope: list[str]) -> None:
    """Add scopes to a role: every holder gets them.  Example: authbus role add-scope <role_id> 'docs/document:update:*'"""
    _command(ctx, "add_role_scopes", role_id=role_id, scopes=[parse_scope(s) for s in scope])


@role_app.command("remove-scope")
def role_remove_scope(ctx: typer.Context, role_id: str, scope: list[str]) -> None:
    """Remove scopes from a role: every credential of its holders loses them at once.
    Example: authbus role remove-scope <role_id> 'docs/document:update:*'"""
    _command(ctx, "remove_role_scopes", role_id=role_id, scopes=[parse_scope(s) for s in scope])


@role_app.command("delete")
def role_delete(ctx: typer.Context, role_id: str, reason: Reason = None) -> None:
    """Delete a role: it grants nothing from then on.  Example: authbus role delete <role_id> --reason 'reorg'"""
    _command(ctx, "delete_role", role_id=role_id, reason=reason)


@user_app.command("set-password")
def user_set_password(
    ctx: typer.Context,
    user_id: str,
    old_password: Annotated[
        bool, typer.Option("--old-password", help="Also read the current password, from the second line.")
    ] = False,
) -> None:
    """Set a user's password, read from standard input (never from the command line).

    Example: printf '%s\n' "$NEW" | authbus user set-password <user_id>
    """
    new = sys.stdin.readline().rstrip("\n")
    old = sys.stdin.readline().rstrip("\n") if old_password else None
    _command(ctx, "change_password", user_id=user_id, password=new, old_password=old)


@user_app.command("login-activity")
def user_login_activity(ctx: typer.Context, user_id: str) -> None:
    """The last 50 login attempts, newest first.  Example: authbus user login-activity <user_id>"""
    items = _call(ctx, lambda c: c.admin("login_activity", user_id=user_id))["items"]
    _show(ctx, items, ("at", "outcome", "method", "reason", "source"))


@pat_app.command("create")
def pat_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Owner's user id.")],
    name: Annotated[str, typer.Option(help="A name to recognise it by.")],
    description: Annotated[Optional[str], typer.Option()] = None,
    scope: Scopes = None,
    expires_in: ExpiresIn = None,
    command_id: CommandId = None,
) -> None:
    """Create a PAT; its token is shown once.
    Example: authbus pat create --user <user_id> --name ci --scope 'docs/document:read:*'"""
    scopes = [parse_scope(s) for s in scope or []]
    _command(
        ctx,
        "create_pat",
        user_id=user,
        name=name,
        description=description,
        scopes=scopes,
        expires_in=expires_in,
        command_id=command_id,
    )


@pat_app.command("list")
def pat_list(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(help="Owner (default: you).")] = None) -> None:
    """List a user's PATs (never their secrets)."""
    _show(ctx, _all_pages(ctx, "list_pats", user_id=user), ("id", "name", "status", "expires_at", "scopes"))


@pat_app.command("get")
def pat_get(ctx: typer.Context, pat_id: str) -> None:
    """Show one PAT with its scopes."""
    _show(ctx, _call(ctx, lambda c: c.admin("get_pat", pat_id=pat_id))["pat"])


@pat_app.command("revoke")
def pat_revoke(ctx: typer.Context, pat_id: str, reason: Reason = None) -> None:
    """Revoke a PAT: it stops verifying on every instance."""
    _command(ctx, "revoke_pat", pat_id=pat_id, reason=reason)


@pat_app.command("reset")
def pat_reset(ctx: typer.Context, pat_id: str, expires_in: ExpiresIn = None) -> None:
    """Give a PAT a new secret (the old token stops verifying); shown once."""
    _command(ctx, "reset_pat_secret", pat_id=pat_id, expires_in=expires_in)


@scope_app.command("add")
@pat_app.command("add-scope")
def pat_add_scope(ctx: typer.Context, pat_id: str, scope: str) -> None:
    """Add a scope.  Example: authbus scope add <pat_id> 'docs/document:update:42'"""
    _command(ctx, "add_scope", pat_id=pat_id, scope=parse_scope(scope))


@scope_app.command("remove")
@pat_app.command("remove-scope")
def pat_remove_scope(ctx: typer.Context, pat_id: str, scope: str) -> None:
    """Remove a scope.  Example: authbus scope remove <pat_id> 'docs/document:update:42'"""
    _command(ctx, "remove_scope", pat_id=pat_id, scope=parse_scope(scope))


@key_app.command("issue")
def key_issue(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Owner's user id.")],
    kind: Annotated[str, typer.Option(help="api_key, recovery or invitation.")] = "api_key",
    name: Annotated[Optional[str], typer.Option()] = None,
    scope: Scopes = None,
    expires_in: ExpiresIn = None,
) -> None:
    """Issue a key; its token is shown once.  Example: authbus key issue --user <user_id> --name deploy"""
    scopes = [parse_scope(s) for s in scope] if scope else None
    _command(ctx, "issue_key", user_id=user, kind=kind, name=name, scopes=scopes, expires_in=expires_in)


@key_app.command("list")
def key_list(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(help="Owner (default: you).")] = None) -> None:
    """List a user's keys (never their secrets)."""
    _show(ctx, _all_pages(ctx, "list_keys", user_id=user), ("id", "kind", "name", "status", "expires_at"))


@key_app.command("revoke")
def key_revoke(ctx: typer.Context, key_id: str, reason: Reason = None) -> None:
    """Revoke a key."""
    _command(ctx, "revoke_key", key_id=key_id, reason=reason)


def _all_pages(ctx: typer.Context, name: str, /, **fields: Any) -> list[dict[str, Any]]:
    fields = {k: v for k, v in fields.items() if v is not None}

    async def pages(client: AuthbusClient) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        after = None
        while True:
            reply = await client.admin(name, **fields, limit=500, **({"after": after} if after else {}))
            items.extend(reply["items"])
            after = reply["next"]
            if after is None:
                return {"items": items}

    return _call(ctx, pages)["items"]


@user_app.command("add-public-key")
def user_add_public_key(ctx: typer.Context, user_id: str, public_key: str) -> None:
    """Register an Ed25519 public key (base64url, 32 bytes) for challenge login."""
    _command(ctx, "register_public_key", user_id=user_id, public_key=public_key)


@user_app.command("remove-public-key")
def user_remove_public_key(ctx: typer.Context, user_id: str, public_key: str) -> None:
    """Remove a registered public key."""
    _command(ctx, "remove_public_key", user_id=user_id, public_key=public_key)


@signing_app.command("create")
def signing_create(
    ctx: typer.Context,
    alg: Annotated[
        str, typer.Option(help="EdDSA, ES256, RS256, or HS256 (a secret for the tenant to mint tokens with).")
    ] = "EdDSA",
    tenant: Annotated[Optional[str], typer.Option(help="Tenant id (default: your own).")] = None,
) -> None:
    """Create a signing key; an HS256 secret is shown once.  Example: authbus signing-key create --alg HS256 --tenant <id>"""
    _command(ctx, "create_signing_key", alg=alg, tenant_id=tenant)


@signing_app.command("list")
def signing_list(
    ctx: typer.Context, tenant: Annotated[Optional[str], typer.Option(help="Tenant id (default: your own).")] = None
) -> None:
    """List a tenant's signing keys (never their private halves)."""
    _show(ctx, _all_pages(ctx, "list_signing_keys", tenant_id=tenant), ("kid", "alg", "status", "created_at"))


@signing_app.command("retire")
def signing_retire(ctx: typer.Context, kid: str) -> None:
    """Stop signing with a key; its tokens verify until they expire."""
    _command(ctx, "retire_signing_key", kid=kid)


@signing_app.command("revoke")
def signing_revoke(ctx: typer.Context, kid: str, reason: Reason = None) -> None:
    """Revoke a key: every token it signed is invalid at once."""
    _command(ctx, "revoke_signing_key", kid=kid, reason=reason)


@session_app.command("list")
def session_list(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(help="User id (default: you).")] = None) -> None:
    """List a user's sessions."""
    _show(
        ctx, _all_pages(ctx, "list_sessions", user_id=user), ("id", "method", "status", "rotations", "created_at", "expires_at")
    )


@session_app.command("revoke")
def session_revoke(ctx: typer.Context, session_id: str, reason: Reason = None) -> None:
    """Revoke a session: its refresh token and every access token it issued stop working."""
    _command(ctx, "revoke_session", session_id=session_id, reason=reason)


@app.command()
def login(
    ctx: typer.Context,
    username: str,
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input instead of a prompt.")] = False,
) -> None:
    """Log in with a password and print an access token and a refresh token.
    Example: authbus login --tenant <tenant_id> alice"""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True)
    body = {"tenant_id": tenant, "username": username, "password": password, "source": "authbus cli"}
    _show(ctx, _call(ctx, lambda c: c.call("login", body, token="")))


@app.command()
def logout(ctx: typer.Context, refresh_token: str) -> None:
    """End the session a refresh token belongs to."""
    _show(ctx, _call(ctx, lambda c: c.call("logout", {"refresh_token": refresh_token}, token="")))


@app.command()
def verify(ctx: typer.Context, token: str, min_position: Annotated[Optional[int], typer.Option()] = None) -> None:
    """Verify a credential; exits 0 when valid, 1 when not.  Example: authbus verify pat_…"""
    extra = {"min_position": min_position} if min_position is not None else {}
    reply = _call(ctx, lambda c: c.call("verify", {"token": token, **extra}, token=""))
    _show(ctx, reply)
    raise typer.Exit(0 if reply["valid"] else 1)


@app.command()
def authorize(
    ctx: typer.Context,
    token: str,
    entity_type: Annotated[str, typer.Option()],
    operation: Annotated[str, typer.Option()],
    entity_id: Annotated[str, typer.Option()],
    domain: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """May this credential do it?  Exits 0 when allowed, 1 when not.
    Example: authbus authorize <token> --domain docs --entity-type document --operation read --entity-id 42"""
    fields = {"entity_type": entity_type, "operation": operation, "entity_id": entity_id}
    if domain is not None:
        fields["domain"] = domain
    reply = _call(ctx, lambda c: c.call("authorize", {"token": token, **fields}, token=""))
    _show(ctx, reply)
    raise typer.Exit(0 if reply["allowed"] else 1)


@app.command()
def health(ctx: typer.Context) -> None:
    """Is the instance that answers current?  Exits 0 when it is `ok`, 1 when `degraded`.
    Example: authbus health --json"""
    reply = _call(ctx, lambda c: c.call("health", token=""))
    _show(ctx, reply)
    raise typer.Exit(0 if reply["status"] == "ok" else 1)


def _or_exit(make: Callable[[], Any]) -> Any:
    try:
        return make()
    except (KEKError, ValueError) as error:
        _fail(str(error), 2)


def _fail(message: str, code: int) -> None:
    # One line, however narrow the terminal; the message may quote a user's own text.
    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def main() -> None:
    app()
