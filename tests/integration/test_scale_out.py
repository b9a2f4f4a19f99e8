"""Instances that never fall silently behind, on PostgreSQL (issue: scale-out you can trust)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest

from authbus.domain.credentials import PersonalAccessToken
from authbus.domain.tenant import Tenant
from authbus.infra.bench import offline as bench_offline
from authbus.infra.bench import scale as bench_scale
from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.crypto.key_material import KeyMaterial
from authbus.infra.store import APPLICATION_NAME, open_store
from tests.conftest import make_settings, start_instance
from tests.helpers import eventually, make_org

FOLDED_WITHIN = 2.5  # seconds: the watch reads the head twice a second and finds a miss on its second look
TRIALS = 4  # each trial appends throughout the moment the follower subscribes again


def listen_backends(database_url: str, database: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'LISTEN %%'", (database,)
        ).fetchall()
    return [row[0] for row in rows]


def append_for(writer, seconds: float) -> int:
    """Append events one after another for ``seconds``; the last one's position."""
    deadline = time.monotonic() + seconds
    while True:
        recordings = writer.save(Tenant(name=f"t-{secrets.token_hex(6)}", actor="test", correlation_id="x"))
        if time.monotonic() >= deadline:
            return recordings[-1].notification.id


async def test_an_event_stored_while_a_follower_listens_again_is_folded_within_the_bound(
    nats_server, databases, postgres_url, tmp_path
):
    """Found by cutting the followers' LISTEN connections and appending one event just as they
    subscribe again: eventsourcing reads the log once before its LISTEN is in place, and an
    event between the two was not folded for seconds (with the sealer off, at all).  Here
    events are appended throughout the moment the follower subscribes again, in each trial."""
    url = databases.new("postgres")
    database = urlsplit(url).path.lstrip("/")
    settings = make_settings(nats_server, url, f"so{secrets.token_hex(3)}", tmp_path, secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    writer = open_application(settings)
    late: list[int] = []
    try:
        for trial in range(TRIALS):
            assert await eventually(lambda: bool(listen_backends(postgres_url, database)), 5)
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                for pid in listen_backends(postgres_url, database):
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # The follower backs off a second, then subscribes again: append all around then.
            await asyncio.sleep(0.85)
            position = await asyncio.to_thread(append_for, writer, 0.4)
            if not await eventually(lambda p=position: instance.node.model.position >= p, FOLDED_WITHIN, every=0.01):
                late.append(trial)
        assert late == [], f"trials {late} left an event unfolded beyond {FOLDED_WITHIN} s"
    finally:
        writer.close()
        await instance.node.stop()


async def test_a_commit_that_wakes_no_follower_is_folded_within_the_bound(nats_server, databases, tmp_path):
    """The missed wake-up made certain: a writer whose commits send no NOTIFY.  Only the
    follower's own look at the log's head can find them."""
    settings = make_settings(nats_server, databases.new("postgres"), f"so{secrets.token_hex(3)}", tmp_path, secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    writer = open_application(settings)
    writer.recorder._notify_channel = lambda cursor: None
    try:
        for _ in range(3):
            position = await asyncio.to_thread(append_for, writer, 0)
            assert await eventually(lambda p=position: instance.node.model.position >= p, FOLDED_WITHIN, every=0.01)
        # Every one of them was found by a look at the head; a look that finds a read of the
        # log still under way (a slow machine) lets that read bring the event, uncounted.
        assert instance.node._follower.missed_wakeups >= 1
    finally:
        writer.close()
        await instance.node.stop()


def finishes(work, seconds: float) -> bool:
    """Whether ``work`` returns within ``seconds`` (a hung save would never return)."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def test_the_largest_saves_authbus_makes_never_hang(databases):
    """psycopg's pipeline left the end of a large INSERT unsent and waited for its result,
    holding the log's write lock for good: one save of 800–2,000 aggregates hung every
    instance.  The largest save authbus makes (the bench's seeding batch) is made again and
    again, and a single event larger than any command could write, too."""
    store = open_store(databases.new("postgres"), KeyMaterial.from_kek(secrets.token_bytes(32)).key_wrap)
    huge = PersonalAccessToken(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        name="huge",
        description="d" * 4_000_000,
        secret_hash="0" * 64,
        expires_at=None,
        scopes=[],
        actor="test",
        correlation_id="x",
    )
    try:
        for _ in range(8):
            assert finishes(lambda: bench_offline.seed_credentials(store, bench_offline.BATCH), 60)
        assert finishes(lambda: store.save(huge), 60)
        assert store.recorder.max_notification_id() == 8 * (1 + bench_offline.BATCH + bench_offline.BATCH // 1000) + 1
    finally:
        store.close()


async def test_a_command_behind_a_stuck_writer_answers_unavailable_and_the_writer_is_ended(nats_server, databases, tmp_path):
    """A writer stuck while holding the log's write lock silenced the commands of every
    instance for 600 s while health said ok.  Now a command behind it answers
    ``unavailable`` after the lock timeout and appends nothing, health says ``degraded`` and
    why, and once the stuck authbus session has held the lock past its bound the next
    blocked write ends it: commands go through again."""
    url = databases.new("postgres")
    settings = make_settings(nats_server, url, f"so{secrets.token_hex(3)}", tmp_path, secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    client = await AuthbusClient.connect(nats_server.url, instance.prefix, instance.root_token)
    stuck = None
    try:
        org = await make_org(client)
        # An authbus session that took the write lock and then stopped (as in the pipeline hang).
        stuck = psycopg.connect(url, application_name=APPLICATION_NAME)
        stuck.execute("LOCK TABLE authbus_events IN EXCLUSIVE MODE")
        head = instance.node.store.recorder.max_notification_id()

        with pytest.raises(AuthbusError) as refused:
            await client.command("create_pat", user_id=org.user_id, name="behind", command_id="behind-1")
        assert refused.value.code == "unavailable" and "busy" in refused.value.message
        assert not stuck.closed and instance.node.store.recorder.max_notification_id() == head
        health = await client.call("health", token="")
        assert health["status"] == "degraded" and "bound" in health["reasons"][0]
        assert instance.node.gauges()["store_write_stalled"][1] == 1

        async def goes_through() -> bool:
            try:
                await client.command("create_pat", user_id=org.user_id, name="behind", command_id="behind-1")
            except AuthbusError as error:
                assert error.code == "unavailable"
                return False
            return True

        deadline = time.monotonic() + 60
        while not await goes_through():
            assert time.monotonic() < deadline, "the stuck writer was never ended"
        assert instance.node.store.stalls.writers_ended == 1
        with pytest.raises(psycopg.OperationalError):
            stuck.execute("SELECT 1")
    finally:
        if stuck is not None:
            stuck.close()
        await client.close()
        await instance.node.stop()


async def test_a_writer_that_is_slow_in_the_server_is_waited_out_not_ended(nats_server, databases, tmp_path):
    """Only a writer whose server waits on it (stopped, as in the pipeline hang) is ended.  One
    that holds the lock while the server works (a long statement, a commit waiting for a
    standby) costs the commands behind it `unavailable`, but its write is not cut off."""
    url = databases.new("postgres")
    settings = make_settings(nats_server, url, f"so{secrets.token_hex(3)}", tmp_path, secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    client = await AuthbusClient.connect(nats_server.url, instance.prefix, instance.root_token)
    try:
        org = await make_org(client)
        held = threading.Event()

        def slow_writer() -> None:
            with psycopg.connect(url, application_name=APPLICATION_NAME) as conn:
                conn.execute("LOCK TABLE authbus_events IN EXCLUSIVE MODE")
                held.set()
                conn.execute("SELECT pg_sleep(7)")  # past STUCK_WRITER_SECONDS, working all along

        writer = asyncio.ensure_future(asyncio.to_thread(slow_writer))
        assert await eventually(held.is_set, 10)
        refused = 0
        while not writer.done():
            try:
                await client.command("create_pat", user_id=org.user_id, name="behind", command_id="behind-slow")
            except AuthbusError as error:
                assert error.code == "unavailable"
                refused += 1
            else:
                break
        await writer  # it finished its own work: not terminated
        assert refused >= 3 and instance.node.store.stalls.writers_ended == 0
        await client.command("create_pat", user_id=org.user_id, name="behind", command_id="behind-slow")
    finally:
        await client.close()
        await instance.node.stop()


async def test_a_killed_instance_fails_no_call_through_the_client(nats_server, databases, tmp_path):
    """kill -9 of one of three instances lost the requests in flight on it, each costing its
    caller a full timeout.  The client repeats a verify once when no answer came in time, so
    through it no call fails; a client with repeats off, in the same run, loses some."""
    prefix = f"fo{secrets.token_hex(3)}"
    settings = make_settings(nats_server, databases.new("postgres"), prefix, tmp_path, secrets.token_hex(32))
    app = open_application(settings)
    client = await AuthbusClient.connect(nats_server.url, prefix, app.bootstrap()["token"])
    app.close()
    try:
        async with bench_scale.instances(settings, 3) as running:
            org = await make_org(client)
            for instance in running:
                await instance.folded_at(client.position)
            figures = await bench_scale.failover(
                nats_server.url,
                prefix,
                [org.user_key, org.admin_key],
                running,
                seconds=3.0,
                workers=16,
                kill_after=1.0,
                repeat_after=1.0,  # a second: a slow machine's pause is no repeat
            )
    finally:
        await client.close()
    assert figures.failed == 0, figures.first_error
    assert figures.repeated >= 1 and figures.plain_failed >= 1, figures
    assert figures.calls > 100 and running[-1].process.returncode == -9


def start_together(url: str, count: int) -> list[BaseException]:
    """``count`` instances' stores opened on ``url`` at the same moment; what each raised."""
    ready = threading.Barrier(count)
    failures: list[BaseException] = []

    def start() -> None:
        ready.wait(10)
        try:
            open_store(url).close()
        except BaseException as error:  # what is counted here
            failures.append(error)

    starting = [threading.Thread(target=start) for _ in range(count)]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join(60)
    return failures


def test_instances_starting_together_all_start(databases):
    """Two instances started at once on one store raced to create its tables and functions,
    and one died at start ("tuple concurrently updated").  Schema creation now takes turns."""
    for _ in range(4):
        assert start_together(databases.new("postgres"), 4) == []
