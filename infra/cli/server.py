"""Running authbus: ``dev``, ``serve``, ``bootstrap``, ``callout init`` and ``bench``."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Optional

import typer

from authbus.domain.errors import Conflict
from authbus.infra.bench.command import bench
from authbus.infra.cli.common import Prefix, app, err, fail, log, or_exit, out
from authbus.infra.settings import DEFAULT_DATA_DIR, Settings

# The server's parts (the store, the node, nats-server, the callout's keys) are imported in
# the commands that run them: an admin command, or --help, starts without them.
if TYPE_CHECKING:
    from authbus.infra.application import AuthbusApplication
    from authbus.infra.nats.nats_server import NatsServer
    from authbus.infra.node import Node

callout_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="NATS auth callout: keys and nats-server configuration."
)
app.add_typer(callout_app, name="callout")
app.command()(bench)

DataDir = Annotated[
    Path, typer.Option(envvar="AUTHBUS_DATA_DIR", help="Where dev keeps its store, KEK, NATS data and root token.")
]
MetricsPort = Annotated[
    Optional[int],
    typer.Option(envvar="AUTHBUS_METRICS_PORT", help="Serve Prometheus metrics at http://<metrics-host>:<port>/metrics."),
]
MetricsHost = Annotated[str, typer.Option(envvar="AUTHBUS_METRICS_HOST", help="Address the metrics endpoint listens on.")]
HttpPort = Annotated[
    Optional[int],
    typer.Option(
        envvar="AUTHBUS_HTTP_PORT",
        help="Serve the HTTP edge (OIDC discovery, JWKS, introspection, forward auth, health) on this port; 0: any free one.",
    ),
]
HttpHost = Annotated[str, typer.Option(envvar="AUTHBUS_HTTP_HOST", help="Address the HTTP edge listens on.")]
LogFormat = Annotated[str, typer.Option(envvar="AUTHBUS_LOG_FORMAT", help="text, or json for one JSON object a line.")]
LogLevel = Annotated[str, typer.Option(envvar="AUTHBUS_LOG_LEVEL", help="debug, info, warning or error.")]


@app.command()
def dev(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    nats_port: Annotated[int, typer.Option(envvar="AUTHBUS_NATS_PORT", help="Port of the embedded nats-server.")] = 4222,
    subject_prefix: Prefix = "auth",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    http_port: Annotated[
        int, typer.Option(envvar="AUTHBUS_HTTP_PORT", help="Port of the HTTP edge; 0 (the default): a free one, printed.")
    ] = 0,
    http_host: HttpHost = "127.0.0.1",
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
    import asyncio

    from authbus.infra.bootstrap import open_application
    from authbus.infra.nats.callout_config import CalloutSetup
    from authbus.infra.nats.nats_server import NatsServer, free_port
    from authbus.infra.observability import logs

    settings = Settings.load(
        data_dir=data_dir,
        subject_prefix=subject_prefix,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        http_port=http_port or free_port(),
        http_host=http_host,
        log_format=log_format,
        log_level=log_level,
    )
    if not os.environ.get("AUTHBUS_ISSUER"):  # tokens name the edge that publishes their keys (OIDC discovery)
        settings.issuer = f"http://{http_host}:{settings.http_port}"
    or_exit(lambda: logs.configure(settings.log_format, settings.log_level))
    settings.database_url = (
        settings.database_url if os.environ.get("AUTHBUS_DATABASE_URL") else f"sqlite:///{data_dir / 'events.db'}"
    )
    lock = or_exit(lambda: hold_data_dir(data_dir))  # noqa: F841  (held until the process ends)
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
        application = or_exit(lambda: open_application(settings, create_kek=True))
        fresh = _bootstrap_into(application, settings.root_token_file)
        asyncio.run(_run_until_signalled(settings, application, lambda node: _dev_banner(settings, server, node, fresh)))
    except RuntimeError as error:
        fail(str(error), 2)
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
    http_port: HttpPort = None,
    http_host: HttpHost = "127.0.0.1",
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
    import asyncio

    from authbus.infra.bootstrap import open_application
    from authbus.infra.nats.callout_config import without_credentials
    from authbus.infra.observability import logs

    settings = Settings.load(
        data_dir=data_dir,
        nats_url=nats_url,
        database_url=database_url,
        kek_file=kek_file,
        subject_prefix=subject_prefix,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        http_port=http_port,
        http_host=http_host,
        log_format=log_format,
        log_level=log_level,
    )
    or_exit(lambda: logs.configure(settings.log_format, settings.log_level))
    application = or_exit(lambda: open_application(settings))
    asyncio.run(
        _run_until_signalled(
            settings,
            application,
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
    """Create the system tenant, the root principal and the system signing key (wrapped under
    the KEK), and print root's token once.

    Example: AUTHBUS_KEK=… authbus bootstrap --database-url postgresql://authbus:pw@db/authbus
    """
    from authbus.infra.bootstrap import open_application
    from authbus.infra.crypto.kek import write_private

    settings = Settings.load(database_url=database_url, kek_file=kek_file)
    application = or_exit(lambda: open_application(settings))
    try:
        result = application.bootstrap()
    except Conflict as error:
        fail(error.message, 1)
    finally:
        application.close()
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
    from authbus.infra.nats.callout_config import CalloutSetup

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


def _bootstrap_into(application: AuthbusApplication, token_file: Path) -> bool:
    from authbus.infra.crypto.kek import write_private

    try:
        token = application.bootstrap()["token"]
    except Conflict:
        if not token_file.exists():
            err.print(f"[yellow]the store is bootstrapped but {token_file} is missing; the root token cannot be shown again[/]")
        return False
    write_private(token_file, token + "\n")
    return True


async def _run_until_signalled(settings: Settings, application: AuthbusApplication, started: Callable[[Node], None]) -> None:
    import asyncio

    from authbus.infra.node import Node

    try:
        node = Node(settings, application)
        await node.start()
    except Exception as error:  # NATS or the store unreachable: one clear line, not a traceback
        application.close()
        fail(f"cannot start: {error}", 2)
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
    if node.http is not None:
        base = f"http://{node.http.host}:{node.http.port}"
        out.print(
            f"  HTTP         {base}/.well-known/openid-configuration  (JWKS, introspection, forward auth: docs/wire.md §11)"
        )
    out.print("\nTry, in another terminal:", highlight=False)
    elsewhere = {  # what the CLI must be told to find this dev: its port and data directory, if not the defaults
        "AUTHBUS_NATS_PORT": str(server.port) if server.port != 4222 else None,
        "AUTHBUS_DATA_DIR": str(settings.data_dir.resolve()) if settings.data_dir != DEFAULT_DATA_DIR else None,
    }
    if any(elsewhere.values()):
        out.print("  export " + " ".join(f"{k}={v}" for k, v in elsewhere.items() if v), markup=False, highlight=False)
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
