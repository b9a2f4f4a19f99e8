"""Instances that never fall silently behind, on PostgreSQL (issue: scale-out you can trust)."""

from __future__ import annotations

import asyncio
import secrets
import time
from urllib.parse import urlsplit

import psycopg

from authbus.domain.tenant import Tenant
from authbus.infra.node import open_runner
from tests.conftest import make_settings, start_instance
from tests.helpers import eventually

FOLDED_WITHIN = 2.5  # seconds: the watch reads the head twice a second and finds a miss on its second look
TRIALS = 12


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
        recordings = writer.store.save(Tenant(name=f"t-{secrets.token_hex(6)}", actor="test", correlation_id="x"))
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
    writer = open_runner(settings)
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
            if not await eventually(lambda: instance.node.model.position >= position, FOLDED_WITHIN, every=0.01):
                late.append(trial)
        assert late == [], f"trials {late} left an event unfolded beyond {FOLDED_WITHIN} s"
    finally:
        writer.store.close()
        await instance.node.stop()


async def test_a_commit_that_wakes_no_follower_is_folded_within_the_bound(nats_server, databases, tmp_path):
    """The missed wake-up made certain: a writer whose commits send no NOTIFY.  Only the
    follower's own look at the log's head can find them."""
    settings = make_settings(nats_server, databases.new("postgres"), f"so{secrets.token_hex(3)}", tmp_path, secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    writer = open_runner(settings)
    writer.store.recorder._notify_channel = lambda cursor: None  # noqa: SLF001  (the notification that goes missing)
    try:
        for _ in range(3):
            position = await asyncio.to_thread(append_for, writer, 0)
            assert await eventually(lambda: instance.node.model.position >= position, FOLDED_WITHIN, every=0.01)
        assert instance.node._follower.resubscribed >= 3  # noqa: SLF001
    finally:
        writer.store.close()
        await instance.node.stop()
