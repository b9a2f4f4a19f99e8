"""The JetStream event feed: every stored event, in log order, exactly once, across a
publisher killed mid-stream, a NATS restart, and several instances."""

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import nats
import pytest

from authbus.domain.commands import CreateTenant
from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient
from authbus.infra.nats.nats_server import NatsServer, free_port
from authbus.infra.publisher import stream_name
from authbus.infra.settings import Settings
from tests.conftest import BACKENDS, start_instance
from tests.helpers import eventually, make_tenant, root_actor

FORBIDDEN = (b"secret_hash", b"password_hash", b"sealed_private", b"refresh_hash", b"$argon2", b"PRIVATE KEY")


async def stream_positions(nats_url: str, stream: str) -> tuple[list[int], list[bytes], list[str]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        messages = (
            [await js.get_msg(stream, seq=seq) for seq in range(state.first_seq, state.last_seq + 1)] if state.messages else []
        )
        return [int(m.headers["Nats-Msg-Id"]) for m in messages], [m.data for m in messages], [m.subject for m in messages]
    finally:
        await nc.close()


async def wait_for_head(nats_url: str, stream: str, head: int, seconds: float = 30.0) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                info = await js.stream_info(stream)
                if info.state.last_seq:
                    last = await js.get_msg(stream, seq=info.state.last_seq)
                    if int(last.headers["Nats-Msg-Id"]) >= head:
                        return
            except nats.js.errors.NotFoundError:
                pass
            await asyncio.sleep(0.1)
        pytest.fail(f"the feed did not reach position {head} in {seconds} s")
    finally:
        await nc.close()


def store_positions(app) -> list[int]:
    return [n.id for n in app.recorder.select_notifications(start=1, limit=1_000_000)]


def seed(app, tenants: int) -> None:
    root = app.bootstrap()
    actor = root_actor(root)
    for n in range(tenants):
        app.execute(CreateTenant(name=f"feed-{n}"), actor)


async def test_every_event_is_published_in_order_once_without_secrets(client, org, instance, nats_server):
    await client.command("create_pat", user_id=org.user_id, name="fed", token=org.admin_key)
    head = instance.node.store.recorder.max_notification_id()
    stream = stream_name(instance.prefix)
    await wait_for_head(nats_server.url, stream, head)
    positions, payloads, subjects = await stream_positions(nats_server.url, stream)
    stored = [n.id for n in instance.node.store.recorder.select_notifications(start=1, limit=1_000_000)]
    assert positions[: len(stored)] == stored  # each position once, in log order
    assert not [p for p in payloads if any(word in p for word in FORBIDDEN)]
    last = msgspec.json.decode(payloads[stored.index(head)])
    assert last["type"] == "PATCreated" and last["tenant_id"] == org.tenant_id and last["position"] == head
    assert subjects[stored.index(head)] == f"{instance.prefix}.v1.events.{org.tenant_id}.pat.PATCreated"
    assert "token" not in last["data"] and last["actor"] == org.admin_id


def serve(settings: Settings, kek: str, *flags: str, stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
    env = {
        **os.environ,
        "AUTHBUS_DATA_DIR": str(settings.data_dir),  # its snapshot goes there, not into the working directory
        "AUTHBUS_DATABASE_URL": settings.database_url,
        "AUTHBUS_NATS_URL": settings.nats_url,
        "AUTHBUS_KEK": kek,
        "AUTHBUS_SUBJECT_PREFIX": settings.subject_prefix,
        "AUTHBUS_FEED_LEASE_SECONDS": "1",
        "AUTHBUS_SEAL_INTERVAL": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "authbus.infra", "serve", *flags], env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True
    )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_publisher_and_a_restarted_nats_lose_and_duplicate_nothing(backend, databases, tmp_path):
    server = NatsServer(tmp_path / "nats", port=free_port()).start()
    kek = secrets.token_hex(32)
    settings = Settings(
        data_dir=tmp_path,
        nats_url=server.url,
        database_url=databases.new(backend),
        subject_prefix="feed",
        kek=kek,
        seal_interval=0,
        use_interval=0,
    )
    app = open_application(settings)
    seed(app, tenants=400)
    stored = store_positions(app)
    stream = stream_name("feed")
    first = serve(settings, kek)
    try:
        nc = await nats.connect(server.url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # kill it once it is publishing
            try:
                if (await nc.jetstream().stream_info(stream)).state.messages > 50:
                    break
            except nats.js.errors.NotFoundError:
                pass
            await asyncio.sleep(0.02)
        await nc.close()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    server.stop()
    server.start()
    second = serve(settings, kek)
    try:
        await wait_for_head(server.url, stream, stored[-1])
        positions, _, _ = await stream_positions(server.url, stream)
        assert positions == stored
    finally:
        second.terminate()
        second.wait(timeout=15)
        app.close()
        server.stop()


@contextlib.asynccontextmanager
async def leader_and_standby(fresh_store, nats_url: str, prefix: str):
    """Two instances on one store with a quick lease, once the feed holds the whole log.
    Both run in the test's event loop: the lease outlasts a stall of it by a margin."""
    backend, settings = fresh_store
    a_settings, b_settings = settings(prefix), settings(prefix)
    a_settings.feed_lease_seconds = b_settings.feed_lease_seconds = 3.0
    a = await start_instance(a_settings, backend)
    b = await start_instance(b_settings, backend, bootstrap=False)
    b.root_token = a.root_token  # one store: the root token works on either
    try:
        await wait_for_head(nats_url, stream_name(prefix), a.node.store.recorder.max_notification_id())
        assert await eventually(lambda: [a.node.publisher.leading, b.node.publisher.leading].count(True) == 1, 10)
        yield (a, b) if a.node.publisher.leading else (b, a)
    finally:
        for inst in (a, b):
            if not inst.node._stopping:
                await inst.node.stop()


async def purge(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().purge_stream(stream)
    finally:
        await nc.close()


async def create_tenant(nats_url: str, prefix: str, token: str) -> int:
    client = await AuthbusClient.connect(nats_url, prefix, token)
    try:
        return (await client.command("create_tenant", name=f"after-{uuid.uuid4().hex[:6]}"))["position"]
    finally:
        await client.close()


async def test_of_two_instances_one_publishes_and_the_other_takes_over(fresh_store, nats_server, logs):
    """…and each change of leader is logged, naming the instance."""
    prefix = f"two{fresh_store[0]}"
    async with leader_and_standby(fresh_store, nats_server.url, prefix) as (leader, standby):
        await leader.node.stop()  # gives the lease up
        created = await create_tenant(nats_server.url, prefix, leader.root_token)
        await wait_for_head(nats_server.url, stream_name(prefix), created)
        positions, _, _ = await stream_positions(nats_server.url, stream_name(prefix))
        assert positions == store_positions(standby.node.app)
        assert standby.node.publisher.leading
        said = [line for line in logs.lines if stream_name(prefix) in line]
        for instance, verb in ((leader, "now leads"), (leader, "gave up"), (standby, "now leads")):
            assert any(f"({instance.node.publisher.instance}) {verb}" in line for line in said), verb


async def test_a_purged_stream_goes_on_with_new_events(fresh_store, nats_server):
    """A new leader that finds the stream purged publishes what comes next, not nothing."""
    backend, settings = fresh_store

    def quick_lease(prefix: str):
        made = settings(prefix)
        made.feed_lease_seconds = 1.0  # a lease not given back expires quickly
        return made

    first = await start_instance(quick_lease(f"purge{backend}"), backend)
    stream = stream_name(f"purge{backend}")
    await wait_for_head(nats_server.url, stream, first.node.store.recorder.max_notification_id())
    await first.node.stop()
    await purge(nats_server.url, stream)
    second = await start_instance(quick_lease(f"purge{backend}"), backend, bootstrap=False)
    try:
        created = await create_tenant(nats_server.url, second.prefix, first.root_token)
        await wait_for_head(nats_server.url, stream, created)
        positions, _, _ = await stream_positions(nats_server.url, stream)
        assert positions == [p for p in store_positions(second.node.app) if p > first.node.model.position]
    finally:
        await second.node.stop()


async def test_a_standby_taking_over_a_purged_stream_publishes_what_came_during_the_takeover(fresh_store, nats_server):
    """Events stored between the leader's last publish and the standby's takeover are not skipped."""
    prefix = f"purgeover{fresh_store[0]}"
    stream = stream_name(prefix)
    async with leader_and_standby(fresh_store, nats_server.url, prefix) as (leader, standby):
        head = leader.node.store.recorder.max_notification_id()
        await purge(nats_server.url, stream)
        # The standby has seen the leader hold the lease at the head.
        assert await eventually(lambda: standby.node.publisher._known_published >= head, 10)
        assert standby.node.publisher._known_published == head
        await leader.node.stop()
        created = await create_tenant(nats_server.url, prefix, leader.root_token)
        await wait_for_head(nats_server.url, stream, created)
        positions, _, _ = await stream_positions(nats_server.url, stream)
        assert positions == [p for p in store_positions(standby.node.app) if p > head]


def documented_filters() -> list[str]:
    """The subjects wire.md §9.1 tells a verify cache to subscribe to, as written there."""
    text = (Path(__file__).parents[2] / "docs" / "wire.md").read_text()
    section = text[text.index("### 9.1") : text.index("### 9.2")]
    return re.findall(r"^(auth\.v1\.events\.<tenant_id>\.\S+)$", section, re.MULTILINE)


async def test_the_documented_revocation_filters_each_receive_their_event(client, instance, nats_server):
    filters = documented_filters()
    assert len(filters) == 7, filters
    world = await make_tenant(client, "filters", login=True)
    doomed = (await client.command("register_user", tenant_id=world.tenant_id, username="doomed"))["result"]["user_id"]
    kid = (await client.command("create_signing_key", tenant_id=world.tenant_id, alg="EdDSA"))["result"]["kid"]
    received: dict[str, list[str]] = {f: [] for f in filters}
    nc = await nats.connect(nats_server.url)
    try:
        for written in filters:
            subject = written.replace("auth.", f"{instance.prefix}.", 1).replace("<tenant_id>", world.tenant_id)

            async def note(msg, written=written) -> None:
                received[written].append(msgspec.json.decode(msg.data)["type"])

            await nc.subscribe(subject, cb=note)
        await nc.flush()
        for name, fields in (
            ("revoke_pat", {"pat_id": world.pat_id}),
            ("revoke_key", {"key_id": world.key_id}),
            ("revoke_session", {"session_id": world.session_id}),
            ("revoke_signing_key", {"kid": kid}),
            ("disable_user", {"user_id": world.user_id}),
            ("delete_user", {"user_id": doomed}),
            ("disable_tenant", {"tenant_id": world.tenant_id}),
        ):
            await client.command(name, **fields)
        assert await eventually(lambda: all(received.values()), 30.0), received
        assert {f: types for f, types in received.items()} == {f: [f.rsplit(".", 1)[1]] for f in filters}
    finally:
        await nc.close()
