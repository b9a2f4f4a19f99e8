"""Positions, read-your-writes, idempotent commands, restarts and several instances."""

import asyncio
import contextlib
import uuid

import pytest

from authbus.infra.client import AuthbusClient, AuthbusError
from tests.conftest import quick_to_stale, start_instance


async def test_every_reply_carries_a_position_and_commands_report_their_last_event(client, org, instance):
    before = instance.node.model.position
    created = await client.command("create_pat", user_id=org.user_id, name="p", token=org.admin_key)
    assert created["position"] > before
    assert created["position"] == instance.node.store.recorder.max_notification_id()
    # min_position=0: no read-your-writes wait, so this checks that the reply came after the fold.
    assert (await client.verify(created["result"]["token"], min_position=0)).position >= created["position"]


async def test_revoke_then_verify_at_its_position_is_never_valid(client, org):
    for _ in range(10):
        created = await client.command("create_pat", user_id=org.user_id, name="short", token=org.admin_key)
        revoked = await client.command("revoke_pat", pat_id=created["result"]["pat_id"], token=org.admin_key)
        reply = await client.verify(created["result"]["token"], min_position=revoked["position"])
        assert reply.valid is False and reply.reason == "revoked"
        assert reply.position >= revoked["position"]


async def test_a_position_not_reached_in_time_is_stale(client, org, instance, monkeypatch):
    quick_to_stale(monkeypatch, instance)
    ahead = instance.node.model.position + 1_000_000
    with pytest.raises(AuthbusError) as error:
        await client.verify(org.user_key, min_position=ahead)
    assert (error.value.code, error.value.details["field"]) == ("stale", "min_position")


async def test_health_reports_position_store_head_and_lag(client, org, instance):
    created = await client.command("create_pat", user_id=org.user_id, name="p", token=org.admin_key)
    health = await client.call("health", token="")
    assert health["status"] == "ok" and health["position"] >= created["position"]
    assert health["store"] == {"reachable": True, "head": health["store"]["head"], "lag": health["store"]["head"] - health["position"]}
    assert health["store"]["head"] >= created["position"] and health["version"] == "0.1.0"
    assert set(health) == {"status", "reasons", "position", "store", "feed", "in_flight", "uptime_seconds", "version"}
    assert health["reasons"] == []


async def _finishing_order(waiting, prompt) -> list[str]:
    """Which of two requests answers first; the first waits on a position never reached."""
    order: list[str] = []

    async def run(name, request):
        with contextlib.suppress(AuthbusError):
            await request
        order.append(name)

    slow = asyncio.create_task(run("waiting", waiting))
    await asyncio.sleep(0.05)  # the waiting request is under way first
    await run("prompt", prompt)
    await slow
    return order


async def test_a_request_waiting_for_its_position_holds_up_no_other(client, org, instance, monkeypatch):
    """nats.py hands one subscription's messages over one at a time: a verify or an admin
    read waiting for min_position must step aside, or every request behind it waits too.
    The waiting one waits 2 s: ample for the prompt one, even on a busy machine."""
    monkeypatch.setattr(instance.node, "consistency_wait", 2.0)
    ahead = instance.node.model.position + 1_000_000
    # As an instance that lags sees it: the log already holds that position (one past the
    # head is answered `stale` at once, see test_attacks).
    monkeypatch.setattr(instance.node.head, "value", ahead)
    verifies = await _finishing_order(client.verify(org.user_key, min_position=ahead), client.verify(org.user_key))
    assert verifies == ["prompt", "waiting"]
    reads = await _finishing_order(
        client.admin("list_users", tenant_id=org.tenant_id, min_position=ahead, token=org.admin_key),
        client.admin("list_users", tenant_id=org.tenant_id, token=org.admin_key),
    )
    assert reads == ["prompt", "waiting"]


async def test_a_repeated_command_id_returns_the_first_reply_and_appends_nothing(client, org, instance):
    command_id = str(uuid.uuid4())
    first = await client.command("create_pat", user_id=org.user_id, name="once", command_id=command_id, token=org.admin_key)
    head = instance.node.store.recorder.max_notification_id()
    again = await client.command("create_pat", user_id=org.user_id, name="once", command_id=command_id, token=org.admin_key)
    assert again["result"] == first["result"]  # the same pat_id and the same token
    assert again["position"] >= first["position"]
    assert instance.node.store.recorder.max_notification_id() == head
    assert (await client.verify(again["result"]["token"])).valid is True

    with pytest.raises(AuthbusError) as error:
        await client.command("create_pat", user_id=org.user_id, name="different", command_id=command_id, token=org.admin_key)
    assert (error.value.code, error.value.details["field"]) == ("conflict", "command_id")
    assert instance.node.store.recorder.max_notification_id() == head


async def test_a_failed_command_appends_nothing(client, org, instance):
    head = instance.node.store.recorder.max_notification_id()
    with pytest.raises(AuthbusError):
        await client.command("register_user", tenant_id=org.tenant_id, username="user-1", token=org.admin_key)
    with pytest.raises(AuthbusError):
        await client.command("revoke_role", user_id=org.user_id, role="admin", token=org.admin_key)
    assert instance.node.store.recorder.max_notification_id() == head


async def test_a_restart_resumes_with_the_same_credentials(fresh_store, nats_server):
    backend, settings = fresh_store
    first = await start_instance(settings(f"r{backend}"), backend)
    client = await AuthbusClient.connect(nats_server.url, first.prefix, first.root_token)
    try:
        tenant = (await client.command("create_tenant", name="restart"))["result"]["tenant_id"]
        user = (await client.command("register_user", tenant_id=tenant, username="bob"))["result"]["user_id"]
        command_id = str(uuid.uuid4())
        created = await client.command("create_pat", user_id=user, name="keep", command_id=command_id)
        await first.node.stop()

        second = await start_instance(settings(f"r{backend}"), backend, bootstrap=False)
        try:
            assert second.node.model.position == created["position"]
            assert (await client.verify(created["result"]["token"])).valid is True
            # The command_id survives the restart: the same reply, the same token, nothing appended.
            again = await client.command("create_pat", user_id=user, name="keep", command_id=command_id)
            assert again["result"] == created["result"]
            assert second.node.store.recorder.max_notification_id() == created["position"]
        finally:
            await second.node.stop()
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def two_instances(fresh_store, nats_server, name: str):
    """Instances A and B on one store, each under its own prefix, with a root client for each.
    The clients send only the min_position a test gives (no read-your-writes): lag is the subject."""
    backend, settings = fresh_store
    a = await start_instance(settings(f"{name}a{backend}"), backend)
    b = await start_instance(settings(f"{name}b{backend}"), backend, bootstrap=False)
    via_a = await AuthbusClient.connect(nats_server.url, a.prefix, a.root_token, read_your_writes=False)
    via_b = await AuthbusClient.connect(nats_server.url, b.prefix, a.root_token, read_your_writes=False)
    try:
        yield a, b, via_a, via_b
    finally:
        await via_a.close()
        await via_b.close()
        await a.node.stop()
        await b.node.stop()


async def test_two_instances_on_one_store_both_see_a_revocation(fresh_store, nats_server):
    async with two_instances(fresh_store, nats_server, "both") as (a, b, via_a, via_b):
        tenant = (await via_a.command("create_tenant", name="shared"))["result"]["tenant_id"]
        user = (await via_a.command("register_user", tenant_id=tenant, username="carol"))["result"]["user_id"]
        created = await via_a.command("create_pat", user_id=user, name="both")
        token = created["result"]["token"]
        assert (await via_b.verify(token, min_position=created["position"])).valid is True

        revoked = await via_b.command("revoke_pat", pat_id=created["result"]["pat_id"])
        assert (await via_a.verify(token, min_position=revoked["position"])).reason == "revoked"
        # Without min_position too: the follower brings B along by itself (LISTEN/NOTIFY or polling).
        for _ in range(100):
            if (await via_b.verify(token)).reason == "revoked" and (await via_a.verify(token)).reason == "revoked":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("an instance never saw the revocation")


async def test_a_lagging_instance_still_refuses_a_just_revoked_key_for_commands(fresh_store, nats_server):
    async with two_instances(fresh_store, nats_server, "lag") as (a, b, via_a, via_b):
        tenant = (await via_a.command("create_tenant", name="lag"))["result"]["tenant_id"]
        admin = (await via_a.command("register_user", tenant_id=tenant, username="adm", roles=["admin"]))["result"]["user_id"]
        issued = await via_a.command("issue_key", user_id=admin, kind="api_key")
        assert (await via_b.verify(issued["result"]["token"], min_position=issued["position"])).valid
        b.node._follower.stop()  # B's read model now lags the store
        await via_a.command("revoke_key", key_id=issued["result"]["key_id"])
        assert (await via_b.verify(issued["result"]["token"])).valid is True  # the lag is real
        with pytest.raises(AuthbusError) as error:
            await via_b.command("register_user", tenant_id=tenant, username="sneaky", token=issued["result"]["token"])
        assert error.value.code == "unauthenticated"
