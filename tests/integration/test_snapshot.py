"""Read-model snapshots on both backends: a stop leaves one, the next start folds only the
tail after it, and a snapshot that is damaged, foreign or keyed otherwise is ignored."""

import dataclasses
import logging
import os
import secrets
import stat

import pytest

from authbus.infra import snapshot
from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient
from authbus.infra.crypto.key_material import KeyMaterial
from authbus.infra.follower import fold
from authbus.infra.settings import Settings
from authbus.infra.snapshot import restore_read_model, snapshot_key, write_snapshot
from authbus.infra.store import open_store
from authbus.projections.audit import digest
from authbus.projections.read_model import ReadModel
from tests.conftest import start_instance
from tests.helpers import secret_of


def folded(settings: Settings) -> ReadModel:
    """The whole log folded afresh (its personal data opened): what any start must arrive at."""
    store = open_store(settings.database_url, KeyMaterial.from_kek(bytes.fromhex(settings.kek)).key_wrap)
    try:
        model = ReadModel()
        fold(store, model)
        return model
    finally:
        store.close()


async def test_a_stop_leaves_a_snapshot_and_the_next_start_folds_only_the_tail(fresh_store, nats_server, tmp_path, caplog):
    backend, settings = fresh_store
    first = await start_instance(settings(f"snap{backend}"), backend)
    client = await AuthbusClient.connect(nats_server.url, first.prefix, first.root_token)
    try:
        tenant = (await client.command("create_tenant", name="snapshot"))["result"]["tenant_id"]
        user = (await client.command("register_user", tenant_id=tenant, username="dora"))["result"]["user_id"]
        before = await client.command("create_pat", user_id=user, name="before")
        await first.node.stop()
        stopped_at = first.node.model.position
        snapshot_file = first.settings.snapshot_file
        assert stat.S_IMODE(snapshot_file.stat().st_mode) == 0o600
        assert [p.name for p in snapshot_file.parent.iterdir() if p.name.startswith(".readmodel")] == []  # no temp file left

        # Another instance, snapshots off, appends while the first is down.
        other = dataclasses.replace(settings(f"snapo{backend}"), data_dir=tmp_path / "other", snapshot_every=0)
        second = await start_instance(other, backend, bootstrap=False)
        via_second = await AuthbusClient.connect(nats_server.url, second.prefix, first.root_token)
        try:
            await via_second.command("revoke_pat", pat_id=before["result"]["pat_id"])
            after = await via_second.command("create_pat", user_id=user, name="after")
        finally:
            await via_second.close()
            await second.node.stop()
        assert not (tmp_path / "other" / snapshot_file.name).exists()

        expected = folded(first.settings)
        app = open_application(first.settings)
        try:
            model, tail = restore_read_model(app, snapshot_file, app.keys.snapshot_key)
        finally:
            app.close()
        assert model.position == expected.position == after["position"]
        assert model.position - tail == stopped_at >= before["position"] and tail > 0
        assert digest(model) == digest(expected)

        with caplog.at_level(logging.INFO, logger="authbus"):
            third = await start_instance(settings(f"snap{backend}"), backend, bootstrap=False)
        try:
            assert f"from snapshot at {stopped_at} + {tail} tail events" in caplog.text
            assert third.node.model.position == expected.position
            assert digest(third.node.model) == digest(expected)
            assert (await client.verify(before["result"]["token"])).reason == "revoked"
            assert (await client.verify(after["result"]["token"])).valid is True
        finally:
            await third.node.stop()
    finally:
        await client.close()


async def test_a_long_tail_is_snapshotted_at_start_and_zero_turns_snapshots_off(fresh_store, nats_server):
    backend, settings = fresh_store
    off = await start_instance(dataclasses.replace(settings(f"snapoff{backend}"), snapshot_every=0), backend)
    client = await AuthbusClient.connect(nats_server.url, off.prefix, off.root_token)
    try:
        await client.command("create_tenant", name="no-snapshot")
    finally:
        await client.close()
        await off.node.stop()
    assert not off.settings.snapshot_file.exists()

    eager = await start_instance(dataclasses.replace(settings(f"snapon{backend}"), snapshot_every=1), backend, bootstrap=False)
    try:
        assert eager.settings.snapshot_file.exists()  # written before serving, not only at stop
        written = eager.settings.snapshot_file.stat().st_mtime_ns
    finally:
        await eager.node.stop()
    assert eager.settings.snapshot_file.stat().st_mtime_ns == written  # nothing new to write at stop


async def test_a_snapshot_holds_no_plaintext_secret(fresh_store, nats_server):
    backend, settings = fresh_store
    inst = await start_instance(settings(f"snapsecret{backend}"), backend)
    client = await AuthbusClient.connect(nats_server.url, inst.prefix, inst.root_token)
    try:
        tenant = (await client.command("create_tenant", name="secretive"))["result"]["tenant_id"]
        user = (await client.command("register_user", tenant_id=tenant, username="eve"))["result"]["user_id"]
        pat = (await client.command("create_pat", user_id=user, name="laptop"))["result"]["token"]
        assert (await client.verify(pat)).valid is True  # whatever verify caches must stay out too
    finally:
        await client.close()
        await inst.node.stop()
    data = inst.settings.snapshot_file.read_bytes()
    for token in (pat, inst.root_token):
        assert token.encode() not in data and secret_of(token).encode() not in data


SPOILED = ["a flipped byte", "truncated", "garbage", "empty", "another KEK", "another format", "another store", "names code"]


class Planted:
    """What a pickle swapped in for the model could do, if the unpickler let it name code."""

    def __init__(self, position: int, marker) -> None:
        self.position, self.marker = position, marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("how", SPOILED)
def test_a_spoiled_snapshot_is_ignored_and_the_whole_log_folded(fresh_store, databases, tmp_path, caplog, how):
    backend, settings = fresh_store
    mine = settings("unused")
    app = open_application(mine)
    try:
        app.bootstrap()
        expected = folded(mine)
        path = mine.snapshot_file
        write_snapshot(expected, app, path, app.keys.snapshot_key)
        data = path.read_bytes()
        if how == "a flipped byte":
            middle = len(data) // 2
            path.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
        elif how == "truncated":
            path.write_bytes(data[:-100])
        elif how == "garbage":
            path.write_bytes(secrets.token_bytes(len(data)))
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "another KEK":
            write_snapshot(expected, app, path, snapshot_key(secrets.token_bytes(32)))
        elif how == "names code":  # soundly MACed: only the unpickler's list of classes stops it
            write_snapshot(Planted(expected.position, tmp_path / "planted"), app, path, app.keys.snapshot_key)
        elif how == "another format":
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(snapshot, "FORMAT_VERSION", snapshot.FORMAT_VERSION + 1)
                write_snapshot(expected, app, path, app.keys.snapshot_key)
        else:  # a store of its own at the same position: only the anchor tells it apart
            elsewhere = dataclasses.replace(mine, database_url=databases.new(backend), data_dir=tmp_path / "elsewhere")
            foreign = open_application(elsewhere)
            foreign.bootstrap()
            write_snapshot(folded(elsewhere), foreign, path, app.keys.snapshot_key)
            foreign.close()

        with caplog.at_level(logging.WARNING, logger="authbus.snapshot"):
            model, tail = restore_read_model(app, path, app.keys.snapshot_key)
    finally:
        app.close()
    assert tail == model.position == expected.position
    assert digest(model) == digest(expected)
    assert any(r.name == "authbus.snapshot" and "snapshot ignored" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "planted").exists()


def test_a_sound_snapshot_is_used_and_none_at_all_is_no_warning(fresh_store, caplog):
    _backend, settings = fresh_store
    mine = settings("unused")
    app = open_application(mine)
    try:
        app.bootstrap()
        with caplog.at_level(logging.INFO, logger="authbus.snapshot"):
            model, tail = restore_read_model(app, mine.snapshot_file, app.keys.snapshot_key)
        assert tail == model.position > 0
        assert [r.levelno for r in caplog.records if r.name == "authbus.snapshot"] == [logging.INFO]

        write_snapshot(model, app, mine.snapshot_file, app.keys.snapshot_key)
        again, tail = restore_read_model(app, mine.snapshot_file, app.keys.snapshot_key)
        assert tail == 0 and again is not model and digest(again) == digest(model)
    finally:
        app.close()
