"""Faults survived: real processes stopped, killed and started again on loopback.

Every loop here is bounded in count and in time (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import uuid
from collections import Counter
from pathlib import Path

import nats
import pytest

from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.nats.nats_server import NatsServer, free_port
from authbus.infra.settings import Settings
from tests.conftest import BACKENDS, make_settings, pgserver_data, start_instance
from tests.e2e.test_event_feed import serve, stream_positions, wait_for_head
from tests.helpers import make_org


class PrivatePostgres:
    """A PostgreSQL of this test's own, so stopping it breaks no other test."""

    def __init__(self, data: Path) -> None:
        import pgserver

        self.server = pgserver.get_server(data, cleanup_mode="stop")
        self.url = self.server.get_uri()

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture
def private_postgres() -> PrivatePostgres:
    with pgserver_data() as data:
        postgres = PrivatePostgres(data)
        yield postgres
        postgres.server.cleanup()


async def until_ok(request, seconds: float = 60.0, retry: tuple[type[BaseException], ...] = ()):
    """Retry while the answer is ``unavailable`` (or one of ``retry``), at most ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await request()
        except Exception as error:
            if not isinstance(error, retry):
                assert isinstance(error, AuthbusError) and error.code == "unavailable", error
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_postgres_stopped_and_started_again(nats_server, private_postgres, tmp_path):
    """Commands answer `unavailable` (not `internal`, not a hang), queries keep answering from
    the read model with their position, and all recovers without restarting authbus."""
    settings = make_settings(nats_server, private_postgres.url, "pgfault", tmp_path / "data", secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    client = await AuthbusClient.connect(nats_server.url, instance.prefix, instance.root_token)
    client.timeout = 90  # a refusal must come back well before this
    try:
        org = await make_org(client)
        kept = await client.command("create_pat", user_id=org.user_id, name="kept", token=org.admin_key)
        position = instance.node.model.position
        private_postgres.stop()
        try:
            loop = asyncio.get_running_loop()
            for _ in range(3):
                started = loop.time()
                with pytest.raises(AuthbusError) as refused:
                    await client.command("create_pat", user_id=org.user_id, name="lost", token=org.admin_key)
                assert refused.value.code == "unavailable", refused.value
                assert loop.time() - started < client.timeout
            reply = await client.verify(kept["result"]["token"])
            assert reply.valid is True and reply.position == position
            health = await client.call("health")
            assert (health["status"], health["store"]["reachable"], health["position"]) == ("degraded", False, position)
            assert health["reasons"][0] == "the event store cannot be reached"
            allowed = await client.authorize(kept["result"]["token"], entity_type="doc", operation="read", entity_id="1")
            assert allowed.position == position
        finally:
            private_postgres.start()
        created = await until_ok(lambda: client.command("create_pat", user_id=org.user_id, name="after", token=org.admin_key))
        revoked = await until_ok(lambda: client.command("revoke_pat", pat_id=kept["result"]["pat_id"], token=org.admin_key))
        # The follower is back on LISTEN/NOTIFY: both are seen at their positions.
        assert (await client.verify(created["result"]["token"], min_position=created["position"])).valid is True
        assert (await client.verify(kept["result"]["token"], min_position=revoked["position"])).reason == "revoked"
        assert instance.node.store.recorder.max_notification_id() == revoked["position"]
        health = await client.call("health")
        assert health["status"] == "ok" and health["store"] == {"reachable": True, "head": revoked["position"], "lag": 0}
    finally:
        await client.close()
        await instance.node.stop()


COMMANDS = 120
KILL_AFTER = 40  # acknowledged commands before the kill


async def bootstrapped(database_url: str, nats_server, tmp_path: Path, prefix: str, timeout: float):
    """Settings for an `authbus serve` of a new store, its app, and a root client."""
    settings = Settings(
        data_dir=tmp_path,
        nats_url=nats_server.url,
        database_url=database_url,
        subject_prefix=prefix,
        kek=secrets.token_hex(32),
        seal_interval=0,
        use_interval=0,
    )
    app = open_application(settings)
    client = await AuthbusClient.connect(nats_server.url, prefix, app.bootstrap()["token"])
    client.timeout = timeout
    return settings, app, client


def impatient(client: AuthbusClient) -> AuthbusClient:
    """The client's connection with a short timeout, for a load while an instance or a
    server may be gone: a request sent to it fails fast and is retried.  Setup and checks
    keep the patient client, so a slow moment of a busy machine fails nothing."""
    return AuthbusClient(client.nc, client.prefix, client.token, timeout=2.0)


def stored_events(app) -> list:
    return [event for _, event in app.read_events(1, 100_000)]


async def wait_serving(client: AuthbusClient, seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            await client.verify(client.token)
            return
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_instance_loses_no_acknowledged_command_and_applies_none_twice(backend, databases, nats_server, tmp_path):
    """kill -9 under a command load; clients retry with the same command_id on a new instance.
    Every command is then in the store exactly once, whole, and an acknowledged one's retry
    returns the very token it first returned."""
    settings, app, client = await bootstrapped(databases.new(backend), nats_server, tmp_path, f"kill{backend}", timeout=10.0)
    first = serve(settings, settings.kek)
    try:
        await wait_serving(client)
        org = await make_org(client)
        command_ids = [str(uuid.uuid4()) for _ in range(COMMANDS)]
        acknowledged: dict[str, dict] = {}

        async def create(command_id: str, via: AuthbusClient = client) -> dict:
            reply = await via.command("create_pat", user_id=org.user_id, name="load", command_id=command_id, token=org.admin_key)
            return reply["result"]

        async def load(share: list[str]) -> None:
            quick = impatient(client)
            for command_id in share:
                with contextlib.suppress(Exception):  # the instance is gone: this one is retried below
                    acknowledged[command_id] = await create(command_id, quick)
                if len(acknowledged) >= KILL_AFTER and first.poll() is None:
                    first.send_signal(signal.SIGKILL)

        await asyncio.gather(*(load(command_ids[i::8]) for i in range(8)))
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert KILL_AFTER <= len(acknowledged) < COMMANDS
    finally:
        if first.poll() is None:
            first.kill()
    second = serve(settings, settings.kek)
    try:
        await wait_serving(client)
        for command_id in command_ids:  # every client retries what it sent, answered or not
            result = await until_ok(lambda c=command_id: create(c), retry=(Exception,))
            if command_id in acknowledged:
                assert result == acknowledged[command_id]
            assert (await client.verify(result["token"])).valid is True
        applied = Counter((e.__class__.__name__, e.correlation_id) for e in stored_events(app) if e.correlation_id in command_ids)
        for command_id in command_ids:  # whole and once: the PAT and its command record
            assert applied[("PATCreated", command_id)] == 1 and applied[("CommandRecorded", command_id)] == 1
        assert sum(applied.values()) == 2 * COMMANDS
    finally:
        second.terminate()
        second.wait(timeout=15)
        await client.close()
        app.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_nats_restarted_under_load(backend, databases, tmp_path):
    """Handlers reconnect and answer again; the event feed resumes with no gap and no duplicate."""
    server = NatsServer(tmp_path / "nats", port=free_port()).start()
    settings = make_settings(server, databases.new(backend), "natsfault", tmp_path / "data", secrets.token_hex(32))
    instance = await start_instance(settings, backend)
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    client = AuthbusClient(nc, instance.prefix, instance.root_token)
    quick = impatient(client)
    try:
        org = await make_org(client)
        answered = {"before": 0, "after": 0}
        phase = "before"
        stop = asyncio.Event()

        async def verify_load() -> None:  # bounded: it ends when told, and sends at most 100,000
            for _ in range(100_000):
                if stop.is_set():
                    return
                try:
                    if (await quick.verify(org.user_key)).valid:
                        answered[phase] += 1
                except Exception:  # no server for a moment: the load goes on
                    await asyncio.sleep(0.05)

        load = asyncio.create_task(verify_load())
        await until_ok(lambda: _at_least(answered, "before", 1), retry=(AssertionError,))
        server.stop()
        await asyncio.sleep(0.5)
        server.start()
        phase = "after"
        created = await until_ok(
            lambda: client.command("create_pat", user_id=org.user_id, name="after", token=org.admin_key), retry=(Exception,)
        )
        assert (await client.verify(created["result"]["token"])).valid is True
        await until_ok(lambda: _at_least(answered, "after", 100), retry=(AssertionError,))
        stop.set()
        await load
        head = instance.node.store.recorder.max_notification_id()
        await wait_for_head(server.url, "AUTHBUS_EVENTS_NATSFAULT", head)
        positions, _, _ = await stream_positions(server.url, "AUTHBUS_EVENTS_NATSFAULT")
        stored = [n.id for n in instance.node.store.recorder.select_notifications(start=1, limit=100_000)]
        assert positions == stored
    finally:
        await nc.close()
        await instance.node.stop()
        server.stop()


async def _at_least(counts: dict[str, int], key: str, wanted: int) -> None:
    await asyncio.sleep(0.05)
    assert counts[key] >= wanted, counts


def nats_cluster(tmp_path: Path, size: int = 3) -> list[NatsServer]:
    """A NATS cluster on loopback: every node routes to every other."""
    cluster_ports = [free_port() for _ in range(size)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
    return [
        NatsServer(
            tmp_path / f"n{i}",
            port=free_port(),
            extra_args=(
                "--name",
                f"n{i}",
                "--cluster_name",
                "authbus",
                "--cluster",
                f"nats://127.0.0.1:{port}",
                "--routes",
                routes,
            ),
        ).start()
        for i, port in enumerate(cluster_ports)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_node_and_an_instance_lost_in_a_three_node_cluster(backend, databases, tmp_path):
    """Two instances on a 3-node cluster; one node and one instance stop.  Verify keeps
    answering after a bounded blip, and a revocation made during the fault is honoured at
    its position."""
    nodes = nats_cluster(tmp_path)
    database_url = databases.new(backend)
    kek = secrets.token_hex(32)
    settings = [make_settings(node, database_url, "cluster", tmp_path / f"data{i}", kek) for i, node in enumerate(nodes[:2])]
    for s in settings:
        s.event_feed = False  # the feed is the subject of test_event_feed; here only requests matter
    a = await start_instance(settings[0], backend)
    b = await start_instance(settings[1], backend, bootstrap=False)
    nc = await nats.connect(nodes[2].url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    client = AuthbusClient(nc, "cluster", a.root_token)
    try:
        org = await until_ok(lambda: make_org(client), retry=(Exception,))  # routes may still be forming
        head = a.node.store.recorder.max_notification_id()
        assert await a.node.reached(head, 10) and await b.node.reached(head, 10)  # a bearer is new to neither
        pat = await client.command("create_pat", user_id=org.user_id, name="doomed", token=org.admin_key)
        await a.node.stop()
        nodes[1].stop()  # b's own node: b must find another
        loop = asyncio.get_running_loop()
        lost = loop.time()
        token, created_at = pat["result"]["token"], pat["position"]
        quick = impatient(client)
        reply = await until_ok(lambda: quick.verify(token, min_position=created_at), seconds=30, retry=(Exception,))
        blip = loop.time() - lost
        assert reply.valid is True and blip < 30
        revoked = await until_ok(
            lambda: client.command("revoke_pat", pat_id=pat["result"]["pat_id"], token=org.admin_key), retry=(Exception,)
        )
        after = await client.verify(pat["result"]["token"], min_position=revoked["position"])
        assert (after.valid, after.reason) == (False, "revoked")
        for _ in range(50):  # and it stays answered, on every request
            assert (await client.verify(org.user_key, min_position=revoked["position"])).valid is True
    finally:
        await nc.close()
        await b.node.stop()
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigterm_finishes_what_is_under_way_and_exits_0(backend, databases, nats_server, tmp_path):
    """Commands under way when SIGTERM lands are answered; none is left half-done."""
    settings, app, client = await bootstrapped(databases.new(backend), nats_server, tmp_path, f"term{backend}", timeout=20.0)
    process = serve(settings, settings.kek)
    try:
        await wait_serving(client)
        org = await make_org(client)
        command_ids = [str(uuid.uuid4()) for _ in range(40)]
        sent = [
            asyncio.ensure_future(client.command("create_pat", user_id=org.user_id, name="t", command_id=c, token=org.admin_key))
            for c in command_ids
        ]
        await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)  # they are arriving
        process.send_signal(signal.SIGTERM)
        replies = await asyncio.gather(*sent, return_exceptions=True)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    answered = {c for c, r in zip(command_ids, replies, strict=False) if not isinstance(r, BaseException)}
    assert answered, "not one command was answered"
    stored = Counter(e.correlation_id for e in stored_events(app) if e.__class__.__name__ == "PATCreated")
    assert all(stored[c] == 1 for c in answered)  # every answer stands
    assert all(stored[c] in (0, 1) for c in command_ids)  # the unanswered are whole or absent: retry them
    await client.close()
    app.close()
