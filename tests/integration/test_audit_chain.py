"""Tamper evidence: signed checkpoints over a SHA-256 chain, and ``audit verify`` naming the
exact first position of an edit, a deletion or a reordering done directly in SQLite and in
PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sqlite3
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import IntegrityError

from authbus.domain.checkpoint import Checkpoint, checkpoint_id
from authbus.domain.commands import CreateTenant
from authbus.domain.registry import NameClaim
from authbus.infra.audit.chain_verifier import verify_log
from authbus.infra.bootstrap import open_application
from authbus.infra.crypto.kek import derive
from authbus.infra.crypto.keys import b64url, unb64url
from authbus.infra.node import Node
from authbus.infra.sealer import CHECKPOINT_TOPIC, CheckpointSealer
from authbus.infra.settings import Settings
from authbus.infra.store import open_store
from authbus.projections.chain import checkpoint_message, extend
from tests.conftest import BACKENDS, make_settings
from tests.helpers import root_actor

# eventsourcing's table of stored events: named after the application in PostgreSQL only.
TABLES = {"sqlite": "stored_events", "postgres": "authbus_events"}


@dataclass
class SealedLog:
    backend: str
    url: str
    kek: str
    public_key: str  # base64url, as auth.v1.audit.public_key publishes it

    def store(self):
        return open_store(self.url)

    def rows(self) -> list:
        store = self.store()
        try:
            return list(store.recorder.select_notifications(start=1, limit=1_000_000))
        finally:
            store.close()

    def checkpoint_rows(self) -> list:
        return [r for r in self.rows() if r.topic == CHECKPOINT_TOPIC]

    def verify(self, pinned: bool = True):
        store = self.store()
        try:
            return verify_log(store, unb64url(self.public_key) if pinned else None)
        finally:
            store.close()

    def sql(self, *statements: tuple[str, tuple]) -> None:
        """Tamper with the stored rows behind authbus's back, as an intruder with the database would."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                for statement, params in statements:
                    statement = statement.replace("%s", "?").replace("notification_id", "rowid")
                    conn.execute(statement.replace("{table}", TABLES["sqlite"]), params)
                conn.commit()
            finally:
                conn.close()
            return
        with psycopg.connect(self.url, autocommit=False) as conn:
            for statement, params in statements:
                conn.execute(statement.replace("{table}", TABLES["postgres"]), params)


def seal_all(sealer: CheckpointSealer) -> None:
    for _ in range(100):  # bounded: each call seals at most max_sealed events
        if not sealer.seal_once():
            return
    pytest.fail("the sealer never caught up")


def build(databases, backend: str, tmp_path: Path) -> SealedLog:
    """A log with several checkpoints, some events sealed in the middle of a batch."""
    kek = secrets.token_hex(32)
    url = databases.new(backend)
    app = open_application(Settings(database_url=url, kek=kek, data_dir=tmp_path))
    try:
        actor = root_actor(app.bootstrap())
        told: list[int] = []
        sealer = CheckpointSealer(
            app, app.keys.audit_seed, interval=1.0, max_sealed=4, sealed=lambda: told.append(sealer.position)
        )
        seal_all(sealer)
        for n in range(6):
            app.execute(CreateTenant(name=f"chain-{uuid.uuid4().hex[:6]}-{n}"), actor)
            if n % 2:
                seal_all(sealer)
        stored = app.recorder.select_notifications(start=1, limit=10_000, topics=[CHECKPOINT_TOPIC])
        assert len(told) == len(stored) and told[-1] == sealer.position  # each checkpoint told, once stored
        return SealedLog(backend, url, kek, sealer.public_key)
    finally:
        app.close()


@pytest.fixture(params=BACKENDS)
def sealed(request, databases, tmp_path) -> SealedLog:
    return build(databases, request.param, tmp_path)


def inner(log: SealedLog) -> tuple[int, int]:
    """An ordinary event sealed by a middle checkpoint, and the position that checkpoint is stored at."""
    checkpoints = log.checkpoint_rows()
    assert len(checkpoints) >= 4
    middle = msgspec.json.decode(checkpoints[2].state)
    target = next(p for p, _ in middle["links"][1:] if p not in {c.id for c in checkpoints})
    return target, checkpoints[2].id


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "authbus.infra", "audit", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=cwd,
    )


# ---------------------------------------------------------------- intact logs


def test_an_untouched_log_verifies_and_sealing_again_appends_nothing(sealed: SealedLog, tmp_path):
    rows = sealed.rows()
    verdict = sealed.verify()
    assert verdict.ok, verdict
    assert verdict.checkpoints == len(sealed.checkpoint_rows())
    # Everything is sealed but the last checkpoint itself: sealing it alone would never end.
    assert [r.topic for r in rows if r.id > verdict.sealed_position] == [CHECKPOINT_TOPIC]
    assert verdict.events == len([r for r in rows if r.id <= verdict.sealed_position])
    store = sealed.store()
    try:
        sealer = CheckpointSealer(store, b"\0" * 32, interval=1.0)  # a new instance: it finds the line first
        assert sealer.seal_once() is False
    finally:
        store.close()
    assert len(sealed.rows()) == len(rows)

    # The command, in a process of its own, pinning the key from the KEK.
    done = run_cli("--database-url", sealed.url, "--json", env={"AUTHBUS_KEK": sealed.kek}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["key_source"] == "kek"
    assert report["sealed_position"] == verdict.sealed_position and report["position"] is None


def test_the_chain_is_exactly_what_the_module_docstring_says(sealed: SealedLog):
    """An auditor's recomputation from raw SQL rows, with hashlib alone, meets the signed chain."""

    def field(data: bytes) -> bytes:
        return struct.pack(">Q", len(data)) + data

    if sealed.backend == "sqlite":
        conn = sqlite3.connect(sealed.url.removeprefix("sqlite:///"))
        raw = [
            (p, uuid.UUID(hex=o).bytes, v, t, bytes(s))
            for p, o, v, t, s in conn.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
            )
        ]
        conn.close()
    else:
        with psycopg.connect(sealed.url) as conn:
            raw = [
                (p, o.bytes, v, t, bytes(s))
                for p, o, v, t, s in conn.execute(
                    "SELECT notification_id, originator_id, originator_version, topic, state FROM authbus_events ORDER BY notification_id"
                )
            ]
    last = msgspec.json.decode(sealed.checkpoint_rows()[-1].state)
    chain = bytes(32)
    for position, originator, version, topic, state in raw:
        if position > last["position"]:
            break
        parts = (
            b"authbus/chain/v1",
            chain,
            struct.pack(">Q", position),
            originator,
            struct.pack(">Q", version),
            topic.encode(),
            state,
        )
        chain = hashlib.sha256(b"".join(field(p) for p in parts)).digest()
    assert chain.hex() == last["chain"]


# ---------------------------------------------------------------- tampering


def test_an_edited_row_is_named_by_the_command(sealed: SealedLog, tmp_path):
    target, _ = inner(sealed)
    state = next(r.state for r in sealed.rows() if r.id == target)
    edited = state.replace(b"chain-", b"chaim-") if b"chain-" in state else state + b" "
    sealed.sql(("UPDATE {table} SET state = %s WHERE notification_id = %s", (edited, target)))

    done = run_cli("--database-url", sealed.url, "--public-key", sealed.public_key, "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["position"] == target and "edited" in report["reason"]
    assert report["sealed_position"] < target

    sentence = run_cli("--database-url", sealed.url, "--public-key", sealed.public_key, cwd=tmp_path)
    assert sentence.returncode == 1 and f"position {target}" in sentence.stdout


def test_a_deleted_row_is_named(sealed: SealedLog):
    target, _ = inner(sealed)
    sealed.sql(("DELETE FROM {table} WHERE notification_id = %s", (target,)))
    verdict = sealed.verify()
    assert not verdict.ok and verdict.position == target and "gone" in verdict.reason


def test_reordered_rows_are_named(sealed: SealedLog):
    target, _ = inner(sealed)
    later = max(r.id for r in sealed.rows())  # the last checkpoint, swapped with an ordinary event
    sealed.sql(
        ("UPDATE {table} SET notification_id = -1 WHERE notification_id = %s", (target,)),
        ("UPDATE {table} SET notification_id = %s WHERE notification_id = %s", (target, later)),
        ("UPDATE {table} SET notification_id = %s WHERE notification_id = -1", (later,)),
    )
    verdict = sealed.verify()
    assert not verdict.ok and verdict.position == target, verdict


def test_swapped_contents_of_two_ordinary_rows_are_named(sealed: SealedLog):
    target, _ = inner(sealed)
    ordinary = [r for r in sealed.rows() if r.topic != CHECKPOINT_TOPIC and r.id > target]
    other = ordinary[-1]
    here = next(r for r in sealed.rows() if r.id == target)
    sealed.sql(
        ("UPDATE {table} SET notification_id = -1 WHERE notification_id = %s", (other.id,)),
        ("UPDATE {table} SET notification_id = %s WHERE notification_id = %s", (other.id, here.id)),
        ("UPDATE {table} SET notification_id = %s WHERE notification_id = -1", (here.id,)),
    )
    verdict = sealed.verify()
    assert not verdict.ok and verdict.position == target, verdict


def test_a_deleted_checkpoint_is_named(sealed: SealedLog):
    _, checkpoint_at = inner(sealed)
    sealed.sql(("DELETE FROM {table} WHERE notification_id = %s", (checkpoint_at,)))
    verdict = sealed.verify()
    assert not verdict.ok and verdict.position == checkpoint_at and "gone" in verdict.reason, verdict


def test_a_checkpoint_moved_before_what_it_seals_is_named(sealed: SealedLog):
    target, checkpoint_at = inner(sealed)
    sealed.sql(
        ("UPDATE {table} SET notification_id = -1 WHERE notification_id = %s", (target,)),
        ("UPDATE {table} SET notification_id = %s WHERE notification_id = %s", (target, checkpoint_at)),
        ("UPDATE {table} SET notification_id = %s WHERE notification_id = -1", (checkpoint_at,)),
    )
    verdict = sealed.verify()
    assert not verdict.ok and verdict.position == target, verdict


def test_a_forged_checkpoint_signature_is_detected(sealed: SealedLog):
    last = sealed.checkpoint_rows()[-1]
    body = msgspec.json.decode(last.state)
    forged = bytearray(unb64url(body["signature"]))
    forged[0] ^= 1
    state = last.state.replace(body["signature"].encode(), b64url(bytes(forged)).encode())
    sealed.sql(("UPDATE {table} SET state = %s WHERE notification_id = %s", (state, last.id)))
    for pinned in (True, False):
        verdict = sealed.verify(pinned)
        assert not verdict.ok and verdict.position == last.id and "signature" in verdict.reason, verdict


def test_a_checkpoint_sealed_with_another_key_is_detected(sealed: SealedLog):
    """An intruder who can write the store but lacks the KEK re-seals with a key of their own."""
    rows = sealed.rows()
    checkpoints = [msgspec.json.decode(r.state) for r in rows if r.topic == CHECKPOINT_TOPIC]
    previous = checkpoints[-1]
    chain, links = previous["chain"], []
    for row in rows:
        if row.id > previous["position"]:
            chain = extend(chain, row)
            links.append([row.id, chain])
    position = links[-1][0]
    key = Ed25519PrivateKey.generate()
    message = checkpoint_message(previous["position"], previous["chain"], position, chain, len(links), links)
    store = sealed.store()
    try:
        after = dict(
            id=checkpoint_id(previous["position"]), position=position, chain=chain,
            previous_position=previous["position"], previous_chain=previous["chain"], actor="system",
        )  # fmt: skip
        signature = b64url(key.sign(message))
        public_key = b64url(key.public_key().public_bytes_raw())
        store.save(
            Checkpoint(
                **after, count=len(links), links=links, signature=signature, public_key=public_key, correlation_id="forged"
            )
        )
        # The line of checkpoints cannot fork: a second one after the same position collides.
        with pytest.raises(IntegrityError):
            store.save(Checkpoint(**after, count=0, links=[], signature="", public_key="", correlation_id="fork"))
        forged_at = store.recorder.max_notification_id()
    finally:
        store.close()
    for pinned in (True, False):  # unpinned, it still must match the first checkpoint's key
        verdict = sealed.verify(pinned)
        assert not verdict.ok and verdict.position == forged_at and "signature" in verdict.reason, verdict


def test_a_sealer_that_lost_the_race_appends_nothing_then_follows_the_winner(sealed: SealedLog):
    class Stale(CheckpointSealer):
        def catch_up(self) -> None:  # as if it read the line just before the winner stored its checkpoint
            pass

    store = sealed.store()
    try:
        written = len(store.recorder.select_notifications(start=1, limit=100_000))
        stale = Stale(store, b"\0" * 32, interval=1.0)
        assert stale.seal_once() is False  # collided on the checkpoint id after position 0
        assert len(store.recorder.select_notifications(start=1, limit=100_000)) == written
        assert stale.position == 0
        follower = CheckpointSealer(store, derive(bytes.fromhex(sealed.kek), b"audit-seal"), interval=1.0)
        follower.catch_up()
        assert follower.position == sealed.verify().sealed_position
        # In PostgreSQL the collision left a gap in the positions; the next checkpoint seals
        # across it, covering the events actually present.
        store.save(
            NameClaim(id=uuid.uuid4(), namespace="test", name="after-gap", owner_id=uuid.uuid4(), actor="t", correlation_id="t")
        )
        seal_all(follower)
    finally:
        store.close()
    verdict = sealed.verify()
    assert verdict.ok and verdict.sealed_position == follower.position, verdict


# ---------------------------------------------------------------- in a running node


async def wait_sealed(url: str, position: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        store = open_store(url)
        try:
            sealer = CheckpointSealer(store, b"\0" * 32, interval=1.0)
            sealer.catch_up()
            if sealer.position >= position:
                return
        finally:
            store.close()
        await asyncio.sleep(0.1)
    pytest.fail(f"nothing sealed position {position} within {seconds} s")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_nodes_seal_one_line_in_the_background_and_publish_the_key(backend, databases, nats_server, tmp_path):
    kek = secrets.token_hex(32)
    url = databases.new(backend)
    settings = [make_settings(nats_server, url, f"seal{backend}{n}", tmp_path / str(n), kek) for n in range(2)]
    for s in settings:
        s.seal_interval, s.event_feed = 0.05, False
    app = open_application(settings[0])
    actor = root_actor(app.bootstrap())
    first = await Node(settings[0], app).start()
    second = await Node(settings[1], open_application(settings[1])).start()
    try:
        for n in range(5):
            await first.execute(CreateTenant(name=f"bg-{uuid.uuid4().hex[:6]}-{n}"), actor)
        rows = first.store.recorder.select_notifications(start=1, limit=100_000)
        head = max(r.id for r in rows if r.topic != CHECKPOINT_TOPIC)
        await wait_sealed(url, head)
        nc = await nats.connect(nats_server.url)
        try:
            reply = msgspec.json.decode((await nc.request(f"seal{backend}1.v1.audit.public_key", b"", timeout=5)).data)
        finally:
            await nc.close()
        assert reply["alg"] == "EdDSA" and reply["position"] >= 0
        assert reply["public_key"] == first.audit_public_key == second.audit_public_key
    finally:
        await second.stop()
        await first.stop()
    log = SealedLog(backend, url, kek, reply["public_key"])
    verdict = log.verify()
    assert verdict.ok and verdict.sealed_position >= head, verdict
    previous = [msgspec.json.decode(r.state)["previous_position"] for r in log.checkpoint_rows()]
    assert previous == sorted(set(previous)), "the checkpoints forked"
