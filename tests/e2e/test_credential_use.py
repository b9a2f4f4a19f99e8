"""A PAT's and a key's record, as SuperMQ keeps it: who issued it, when it last changed,
when it was revoked, and when it was last used.  Use is recorded off the verify path, in
batches, at most once a minute per credential (DESIGN §6), and what is noted when a node
stops is recorded before it goes."""

from __future__ import annotations

import dataclasses
import uuid

from authbus.infra.client import AuthbusClient
from tests.conftest import start_instance
from tests.helpers import PAT_SCOPE, eventually, make_org

USED = ("PATUsed", "KeyUsed")


def uses_of(instance, credential_id: str) -> list[str]:
    """The use events stored for one credential, in order."""
    rows = instance.node.store.recorder.select_notifications(start=1, limit=100_000)
    return [
        row.topic.rsplit(".", 1)[-1]
        for row in rows
        if row.topic.rsplit(".", 1)[-1] in USED and str(row.originator_id) == credential_id
    ]


async def record(instance, client: AuthbusClient, kind: str, credential_id: str) -> dict:
    return (await client.admin(f"get_{kind}", **{f"{kind}_id": credential_id}))[kind]


async def test_use_is_recorded_once_a_minute_and_the_record_shows_who_and_when(fresh_store, nats_server):
    backend, settings = fresh_store
    instance = await start_instance(dataclasses.replace(settings(f"use{backend}"), use_interval=0.05), backend)
    client = await AuthbusClient.connect(nats_server.url, instance.prefix, instance.root_token)
    try:
        root_id = (await client.verify(instance.root_token)).principal.id
        org = await make_org(client)
        await client.command("grant_role", user_id=org.user_id, role="admin")
        pat = (await client.command("create_pat", user_id=org.user_id, name="ci", scopes=[PAT_SCOPE], token=org.admin_key))[
            "result"
        ]
        fresh = await record(instance, client, "pat", pat["pat_id"])
        assert (fresh["issued_by"], fresh["last_used_at"], fresh["updated_at"]) == (
            (await client.verify(org.admin_key)).principal.id,
            None,
            fresh["created_at"],
        )
        assert "revoked_at" not in fresh
        key = await record(instance, client, "key", org.user_key_id)
        assert key["issued_by"] == str(root_id)

        for _ in range(5):  # verify, authorize and acting as a bearer are all uses
            assert (await client.verify(pat["token"])).valid
        await client.authorize(pat["token"], entity_type="document", operation="read", entity_id="1", domain="docs")
        await client.admin("get_user", user_id=org.user_id, token=org.user_key)

        def used(credential_id: str) -> bool:
            return instance.node.model.credentials[uuid.UUID(credential_id)].used_ts is not None

        assert await eventually(lambda: used(pat["pat_id"]) and used(org.user_key_id), 10.0)
        assert (await record(instance, client, "pat", pat["pat_id"]))["last_used_at"] is not None
        assert uses_of(instance, pat["pat_id"]) == ["PATUsed"] and uses_of(instance, org.user_key_id) == ["KeyUsed"]

        # Within the minute, more use records nothing more.
        assert (await client.verify(pat["token"])).valid
        assert instance.node.uses is not None and await instance.node.uses.record() == 0
        assert uses_of(instance, pat["pat_id"]) == ["PATUsed"]

        await client.command("add_scope", pat_id=pat["pat_id"], scope={**PAT_SCOPE, "operation": "update"})
        changed = await record(instance, client, "pat", pat["pat_id"])
        assert changed["updated_at"] >= changed["created_at"] and changed["last_used_at"] is not None
        await client.command("revoke_pat", pat_id=pat["pat_id"], reason="rotated")
        revoked = await record(instance, client, "pat", pat["pat_id"])
        assert revoked["revoked_at"] == revoked["updated_at"] and revoked["revoked_reason"] == "rotated"
        assert not (await client.verify(pat["token"])).valid  # a refused bearer is no use
        assert pat["pat_id"] not in {str(i) for i in instance.node.bearers.uses}
    finally:
        await client.close()
        await instance.node.stop()


async def test_uses_noted_when_a_node_stops_are_recorded_before_it_goes(fresh_store, nats_server):
    backend, settings = fresh_store
    kept = dataclasses.replace(settings(f"usestop{backend}"), use_interval=3600.0)  # no batch before the stop
    first = await start_instance(kept, backend)
    client = await AuthbusClient.connect(nats_server.url, first.prefix, first.root_token)
    try:
        org = await make_org(client)
        assert (await client.verify(org.user_key)).valid
        await first.node.stop()
        second = await start_instance(kept, backend, bootstrap=False)
        try:
            assert uses_of(second, org.user_key_id) == ["KeyUsed"]
            assert (await record(second, client, "key", org.user_key_id))["last_used_at"] is not None
        finally:
            await second.node.stop()
    finally:
        await client.close()


async def test_a_pat_is_renamed_and_described_as_supermq_does_it(client):
    org = await make_org(client)
    pat = (await client.command("create_pat", user_id=org.user_id, name="ci"))["result"]
    await client.command("update_pat", pat_id=pat["pat_id"], name="nightly", token=org.user_key)
    await client.command("update_pat", pat_id=pat["pat_id"], description="the nightly build", token=org.admin_key)
    shown = (await client.admin("get_pat", pat_id=pat["pat_id"]))["pat"]
    assert (shown["name"], shown["description"]) == ("nightly", "the nightly build")
    assert shown["updated_at"] >= shown["created_at"] and (await client.verify(pat["token"])).valid  # the secret stays
