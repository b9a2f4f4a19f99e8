"""Positions, read-your-writes, idempotent commands, restarts and several instances."""

import asyncio
import contextlib
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.infra.client import AuthbusClient, AuthbusError
from tests.conftest import quick_to_stale, start_instance
from tests.helpers import PASSWORD, b64url, eventually


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
    assert health["store"] == {
        "reachable": True,
        "head": health["store"]["head"],
        "lag": health["store"]["head"] - health["position"],
    }
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
    async with two_instances(fresh_store, nats_server, "both") as (_a, _b, via_a, via_b):
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
    async with two_instances(fresh_store, nats_server, "lag") as (_a, b, via_a, via_b):
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


class Held:
    """An instance whose read model folds nothing until released, as if its follower lagged."""

    def __init__(self, instance) -> None:
        self.node = instance.node
        self.follower = instance.node._follower
        self.batches: list = []
        self.follower._apply = self.batches.append  # the follower thread hands each batch to the loop here

    async def release_once_waited_for(self) -> None:
        """Let the instance catch up once a request waits for its min_position."""
        assert await eventually(lambda: self.node._waiting > 0, 10)
        del self.follower._apply
        for batch in self.batches:
            self.follower._apply(batch)


async def through_held(instance, write, read):
    """Hold ``instance`` behind, ``write`` through another, then send ``read(written)`` to the
    held one: it waits for its min_position and is answered once the instance catches up."""
    held = Held(instance)
    written = await write()
    task = asyncio.ensure_future(read(written))
    await held.release_once_waited_for()
    return await task


async def test_login_family_and_redeem_read_their_writes_on_a_lagging_instance(fresh_store, nats_server):
    """A user, a session, a public key or a recovery key made a moment ago through instance A
    is known to instance B, held behind, for every request carrying min_position: B waits for
    it, then answers as A would (before, B refused the field, and without it the user)."""
    async with two_instances(fresh_store, nats_server, "ryw") as (_a, b, via_a, via_b):
        tenant = (await via_a.command("create_tenant", name="ryw"))["result"]["tenant_id"]
        made = {}

        async def register():
            made.update(await via_a.command("register_user", tenant_id=tenant, username="dora", password=PASSWORD))
            return made["position"]

        user_id = lambda: made["result"]["user_id"]  # noqa: E731
        pair = await through_held(b, register, lambda at: via_b.login(tenant, "dora", PASSWORD, min_position=at))
        assert pair.position >= made["position"]

        pair = await through_held(
            b,
            lambda: via_a.login(tenant, "dora", PASSWORD),
            lambda new: via_b.refresh(new.refresh_token, min_position=new.position),
        )
        await through_held(
            b, lambda: via_a.refresh(pair.refresh_token), lambda new: via_b.logout(new.refresh_token, min_position=new.position)
        )

        key = Ed25519PrivateKey.generate()
        public_key = b64url(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

        async def register_key_and_ask():
            registered = await via_a.command("register_public_key", user_id=user_id(), public_key=public_key)
            return registered["position"], await via_a.challenge(tenant, public_key)

        signed = await through_held(
            b,
            register_key_and_ask,
            lambda got: via_b.answer_challenge(got[1], b64url(key.sign(got[1].encode())), min_position=got[0]),
        )
        assert (await via_a.verify(signed.access_token, min_position=signed.position)).principal.id == user_id()
        assert await through_held(
            b,
            lambda: via_a.command("register_user", tenant_id=tenant, username="eve"),
            lambda made_eve: via_b.challenge(tenant, public_key, min_position=made_eve["position"]),
        )

        redeemed = await through_held(
            b,
            lambda: via_a.command("issue_key", user_id=user_id(), kind="recovery"),
            lambda issued: via_b.redeem(issued["result"]["token"], PASSWORD + "!", min_position=issued["position"]),
        )
        assert redeemed["result"]["user_id"] == user_id()


async def test_the_client_carries_its_position_into_a_login(fresh_store, nats_server):
    """Read-your-writes by default: a client that registered a user through A logs it in
    through B, held behind, without naming a position."""
    async with two_instances(fresh_store, nats_server, "carry") as (a, b, via_a, _):
        client = AuthbusClient(via_a.nc, a.prefix, a.root_token)  # read_your_writes on
        tenant = (await client.command("create_tenant", name="carry"))["result"]["tenant_id"]
        held = Held(b)
        await client.command("register_user", tenant_id=tenant, username="fay", password=PASSWORD)
        client.prefix = b.prefix  # the next request lands on B, as a queue group may route it
        task = asyncio.ensure_future(client.login(tenant, "fay", PASSWORD))
        await held.release_once_waited_for()
        assert (await task).session_id
