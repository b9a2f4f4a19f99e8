"""docs/operations.md §5, run: back the event store up with its pg_dump line while authbus
serves, change things, stop, restore with its pg_restore line, delete the event-feed
stream, start again. The instance serves the state the dump was taken at (its own
snapshot, newer than the dump, is discarded), the chain verifies, and the feed carries
the restored log again from position 1.

The lines run in the compose stack's postgres container there; here the same program,
from pgserver's PostgreSQL, runs with the same options against the test cluster, compose's
``-U authbus`` and database ``authbus`` replaced by the test database's URL.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import subprocess
import uuid
from pathlib import Path

import nats
import pgserver
import pytest

from authbus.domain.errors import NotFound
from authbus.infra.audit.chain_verifier import verify_log
from authbus.infra.client import AuthbusClient
from authbus.infra.publisher import stream_name
from authbus.infra.store import open_store
from tests.conftest import make_settings, start_instance
from tests.doc_commands import OPERATIONS, command_lines, split_comment
from tests.e2e.test_event_feed import stream_positions, wait_for_head
from tests.helpers import make_org, store_position

PG_BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"


def doc_pg_command(program: str, url: str) -> list[str]:
    """operations.md's line that runs ``program`` in the postgres container, aimed at ``url``."""
    (line,) = [line for line in command_lines(OPERATIONS) if f" {program} " in line]
    command, _ = split_comment(line)
    words = shlex.split(command.partition(f" {program} ")[2].split(" > ")[0].split(" < ")[0])
    args, words = [], iter(words)
    for word in words:
        if word == "-U":  # compose's user: the URL names the test cluster's
            next(words)
        elif word == "-d":
            args += ["-d", url]
            next(words)
        else:
            args.append(word)
    if "-d" not in args:  # pg_dump's database is its last word
        args[-1] = url
    return [str(PG_BIN / program), *args]


def test_the_doc_lines_are_aimed_at_the_test_database() -> None:
    assert doc_pg_command("pg_dump", "URL")[1:] == ["-Fc", "URL"]
    assert doc_pg_command("pg_restore", "URL")[1:] == ["-d", "URL", "--clean", "--if-exists"]


async def test_a_backup_restored_as_operations_says_serves_the_state_it_was_taken_at(databases, nats_server, tmp_path):
    url = databases.new("postgres")
    settings = make_settings(nats_server, url, f"bk{uuid.uuid4().hex[:8]}", tmp_path, secrets.token_hex(32))
    instance = await start_instance(settings, "postgres")
    root_token = instance.root_token
    client = await AuthbusClient.connect(nats_server.url, prefix=settings.subject_prefix, token=root_token)
    dump = tmp_path / "authbus.dump"
    try:
        org = await make_org(client, "backup")
        backed_up = store_position(instance)
        with dump.open("wb") as out:  # while authbus serves
            await asyncio.to_thread(subprocess.run, doc_pg_command("pg_dump", url), stdout=out, check=True, timeout=120)
        # After the backup: a revocation, and a user the backup never saw.
        await client.command("revoke_key", key_id=org.user_key_id, reason="after the backup")
        later = (await client.command("register_user", tenant_id=org.tenant_id, username="later"))["result"]["user_id"]
        assert not (await client.verify(org.user_key)).valid and store_position(instance) > backed_up
    finally:
        await client.close()
    await instance.node.stop()  # "Stop every instance first"; it leaves a snapshot newer than the dump

    with dump.open("rb") as dumped:
        await asyncio.to_thread(subprocess.run, doc_pg_command("pg_restore", url), stdin=dumped, check=True, timeout=120)
    nc = await nats.connect(nats_server.url)  # "delete the event-feed stream before any instance starts"
    try:
        await nc.jetstream().delete_stream(stream_name(settings.subject_prefix))
    finally:
        await nc.close()

    instance = await start_instance(settings, "postgres", bootstrap=False)  # the same data dir, snapshot and KEK
    client = await AuthbusClient.connect(nats_server.url, prefix=settings.subject_prefix, token=root_token)
    try:
        assert store_position(instance) == backed_up
        assert (await client.verify(org.user_key)).valid  # its revocation came after the backup
        with pytest.raises(NotFound):
            await client.admin("get_user", user_id=later)
        store = open_store(url)
        try:
            assert verify_log(store, None).ok
        finally:
            store.close()
        # The feed carries the restored log again, from position 1 on.
        await wait_for_head(nats_server.url, stream_name(settings.subject_prefix), backed_up)
        positions, _, _ = await stream_positions(nats_server.url, stream_name(settings.subject_prefix))
        assert positions == list(range(1, backed_up + 1))
    finally:
        await client.close()
        await instance.node.stop()
