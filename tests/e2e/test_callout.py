"""NATS auth callout: a real nats-server asks authbus who may connect, and with which subjects.

Each module-level world is a nats-server configured for the callout (xkey sealing on or
off) and an authbus instance (SQLite or PostgreSQL) answering it; clients connect with
authbus tokens and the server enforces what authbus granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from typer.testing import CliRunner

from authbus.domain import tokens
from authbus.handlers.callout import ENDPOINT
from authbus.handlers.natsauth.nkeys import NKey, XKey, new_account_seed, new_xkey_seed
from authbus.infra import cli
from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient
from authbus.infra.nats.callout_config import render_callout_config
from authbus.infra.nats.nats_server import NatsServer, free_port
from authbus.infra.nats.sync import sync_with_server
from authbus.infra.node import Node
from authbus.infra.settings import Settings
from authbus.projections.inboxes import private_inbox
from tests.conftest import BACKENDS, Instance, start_instance
from tests.helpers import eventually, grant_scopes, make_org

WAIT = 5.0  # seconds: the bound of every single wait


def subject_scope(operation: str, subject: str, domain: str | None = None) -> dict:
    return {"domain": domain, "entity_type": "subject", "operation": operation, "entity_id": subject}


@dataclass
class Bus:
    server: NatsServer
    instance: Instance
    admin: AuthbusClient  # root, connected as the callout's service user
    settings: Settings

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.server.port}"

    def reasons(self) -> str:
        return self.server.log_file.read_text()


@pytest.fixture(scope="module", params=[(b, x) for b in BACKENDS for x in ("xkey", "plain")], ids="-".join)
async def bus(request, databases, tmp_path_factory, watch_for_secrets) -> AsyncIterator[Bus]:
    backend, mode = request.param
    data_dir = tmp_path_factory.mktemp(f"callout-{backend}-{mode}")
    issuer_seed, xkey_seed = new_account_seed(), (new_xkey_seed() if mode == "xkey" else None)
    password, system_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    conf = data_dir / "nats.conf"
    conf.write_text(
        render_callout_config(
            issuer=NKey.from_seed(issuer_seed).public_key,
            service_password=password,
            system_password=system_password,
            xkey=XKey.from_seed(xkey_seed).public_key if xkey_seed else None,
            prefix="bus",
            auth_timeout=3.0,
        )
    )
    server = NatsServer(data_dir / "nats", port=free_port(), extra_args=("-c", str(conf)))
    settings = Settings(
        data_dir=data_dir,
        nats_url=f"nats://authbus:{password}@127.0.0.1:{server.port}",
        nats_system_url=f"nats://authbus-system:{system_password}@127.0.0.1:{server.port}",
        database_url=databases.new(backend),
        subject_prefix="bus",
        kek=secrets.token_hex(32),
        seal_interval=0,
        use_interval=0,
        callout_issuer_seed=issuer_seed,
        callout_xkey_seed=xkey_seed,
    )
    for secret in (issuer_seed, password, system_password, *([xkey_seed] if xkey_seed else [])):
        watch_for_secrets.add(secret, password=True)
    try:
        server.start()
        instance = await start_instance(settings, backend)
        admin = await AuthbusClient.connect(settings.nats_url, "bus", instance.root_token)
        world = Bus(server, instance, admin, settings)
        yield world
        await admin.close()
        await world.instance.node.stop()
    finally:
        server.stop()


async def connect(bus: Bus, token: str | None, errors: list[Exception] | None = None, **options) -> Client:
    """A client as an application connects: its token, and its private inbox (wire.md §6.9)."""

    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(error)

    if token:
        options.setdefault("inbox_prefix", private_inbox(token))
    return await asyncio.wait_for(
        nats.connect(
            bus.url, token=token, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=4, error_cb=on_error, **options
        ),
        WAIT,
    )


async def refused(bus: Bus, token: str | None, reason: str) -> None:
    """The server refuses the client, and its log shows authbus's reason."""
    seen = len(bus.reasons())
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await connect(bus, token)
    assert await eventually(lambda: f"returned an error: {reason}" in bus.reasons()[seen:], WAIT), (
        f"the server never logged {reason!r}"
    )


async def violation(errors: list[Exception], what: str) -> None:
    assert await eventually(lambda: any(what in str(error).lower() for error in errors), WAIT, every=0.02), (
        f"no {what!r} in {errors}"
    )


async def pat(bus: Bus, scopes: list[dict], **fields) -> tuple[str, str]:
    pat_id, token, _ = await owned_pat(bus, scopes, **fields)
    return pat_id, token


async def owned_pat(bus: Bus, scopes: list[dict], **fields) -> tuple[str, str, str]:
    """A PAT of a new user: its id, token and owner."""
    org = await make_org(bus.admin)
    await grant_scopes(bus.admin, org.tenant_id, org.user_id, scopes)
    created = await bus.admin.command("create_pat", user_id=org.user_id, name="bus", scopes=scopes, **fields)
    return created["result"]["pat_id"], created["result"]["token"], org.user_id


async def app_admin(bus: Bus) -> str:
    """An unscoped API key of a tenant admin: every subject of the client account (but
    authbus's own and other clients' inboxes)."""
    return (await make_org(bus.admin)).admin_key


async def test_a_pat_uses_exactly_the_subjects_its_scopes_allow(bus: Bus):
    _, token, _ = await owned_pat(
        bus,
        [
            subject_scope("publish", "orders.>"),
            subject_scope("subscribe", "orders.>"),
            subject_scope("publish", "billing.>", domain="docs"),  # another domain: no grant
            {"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"},  # not a subject scope
        ],
    )
    errors: list[Exception] = []
    client = await connect(bus, token, errors)
    watcher = await connect(bus, await app_admin(bus))  # the same client account, every subject
    billing = await watcher.subscribe("billing.>")
    await sync_with_server(watcher)
    try:
        own = await client.subscribe("orders.>")
        await client.publish("orders.new", b"one")
        assert (await own.next_msg(timeout=WAIT)).data == b"one"

        await client.publish("billing.invoice", b"not allowed")
        await violation(errors, 'permissions violation for publish to "billing.invoice"')
        await sync_with_server(watcher)
        with pytest.raises(nats.errors.TimeoutError):
            await billing.next_msg(timeout=0.3)

        async def echo(msg):
            await msg.respond(b"re:" + msg.data)

        responder = await watcher.subscribe("orders.echo", cb=echo)
        await sync_with_server(watcher)
        assert (await client.request("orders.echo", b"ping", timeout=WAIT)).data == b"re:ping"  # to its private inbox
        await responder.unsubscribe()

        await client.subscribe("billing.>")
        await violation(errors, 'permissions violation for subscription to "billing.>"')
        assert client.is_connected
    finally:
        await watcher.close()
        await client.close()


async def test_a_side_granted_nothing_is_denied_everything_but_its_inbox_and_authbus(bus: Bus):
    _, publisher = await pat(bus, [subject_scope("publish", "news.>")])
    errors: list[Exception] = []
    client = await connect(bus, publisher, errors)
    try:
        await client.subscribe(">")
        await violation(errors, 'permissions violation for subscription to ">"')
        reply = await client.request("bus.v1.verify", b'{"token": "x"}', timeout=WAIT)  # authbus answers everyone
        assert b'"reason":"malformed"' in reply.data
    finally:
        await client.close()
    _, subscriber = await pat(bus, [subject_scope("subscribe", "news.>")])
    client = await connect(bus, subscriber, errors)
    try:
        await client.publish("news.today", b"")
        await violation(errors, 'permissions violation for publish to "news.today"')
    finally:
        await client.close()


async def test_no_client_captures_what_another_principal_sends_authbus_or_gets_back(bus: Bus):
    """A non-root client granted every subject — and JetStream's API — listens everywhere and
    tries to capture with a stream, while another principal's service logs a user in with a
    password and root sends commands: it catches none of it, and everyone gets answers."""
    org = await make_org(bus.admin)
    await bus.admin.command("change_password", user_id=org.user_id, password=(password := "victim's password"))
    spy_token = org.admin_key
    _, frontend, _ = await owned_pat(bus, [subject_scope("publish", "web.>")])  # a login page's backend, say
    caught: list[bytes] = []
    errors: list[Exception] = []
    spy = await connect(bus, spy_token, errors)
    try:

        async def note(msg):
            caught.append(msg.subject.encode() + b" " + msg.data + repr(msg.headers).encode())

        for subject in (">", "_I.>", private_inbox(frontend) + ".>", "bus.v1.login", "_INBOX.>"):
            with contextlib.suppress(nats.errors.Error):
                await spy.subscribe(subject, cb=note)
        # JetStream rights, but the client account has no JetStream to capture with.
        spying = b'{"name": "SPY", "subjects": ["bus.v1.login", "_I.>"], "no_ack": true}'
        refusal = await spy.request("$JS.API.STREAM.CREATE.SPY", spying, timeout=WAIT)
        assert b"JetStream not enabled for account" in refusal.data
        await sync_with_server(spy)

        service = await connect(bus, frontend)
        body = msgspec.json.encode({"tenant_id": org.tenant_id, "username": "user-1", "password": password})
        pair = msgspec.json.decode((await service.request("bus.v1.login", body, timeout=WAIT)).data)
        assert pair["access_token"] and pair["refresh_token"], pair
        await service.close()
        root = await connect(bus, bus.instance.root_token)  # root connects through the callout too
        created = await root.request(
            "bus.v1.cmd.create_pat",
            msgspec.json.encode({"user_id": org.user_id, "name": "by root"}),
            headers={"Authorization": f"Bearer {bus.instance.root_token}"},
            timeout=WAIT,
        )
        minted = msgspec.json.decode(created.data)["result"]["token"]
        await root.close()
        await sync_with_server(spy)
        everything = b"\n".join(caught)
        for secret in (password, pair["access_token"], pair["refresh_token"], bus.instance.root_token, minted):
            assert secret.encode() not in everything
        assert spy.is_connected
    finally:
        await spy.close()


async def test_no_client_forges_the_feed_or_reaches_the_system_account(bus: Bus):
    _, everything = await pat(bus, [subject_scope("publish", "*"), subject_scope("subscribe", "*")])
    for token in (await app_admin(bus), everything):  # an admin's unscoped key, a PAT scoped to every subject
        errors: list[Exception] = []
        client = await connect(bus, token, errors)
        try:
            for subject in ("bus.v1.login", "bus.v1.cmd.create_pat", "_INBOX.>", "$SYS.REQ.USER.AUTH"):
                await client.subscribe(subject)
                await violation(errors, f'permissions violation for subscription to "{subject.lower()}"')
            for subject in ("bus.v1.events.x.pat.PATCreated", "$SYS.REQ.SERVER.PING.CONNZ"):
                await client.publish(subject, b"{}")
                await violation(errors, f'permissions violation for publish to "{subject.lower()}"')
            await client.subscribe("bus.v1.events.>")  # every tenant's part of the feed: not for it
            await violation(errors, 'permissions violation for subscription to "bus.v1.events.>"')
            await client.publish("anything.else", b"")
            await sync_with_server(client)
            assert len(errors) == 7 and client.is_connected, "; ".join(str(e)[-50:] for e in errors)
        finally:
            await client.close()
    root = await connect(bus, bus.instance.root_token, errors := [])
    try:
        await root.subscribe("bus.v1.login")  # root is in authbus's own account, unlimited
        await sync_with_server(root)
        assert errors == [] and root.is_connected
    finally:
        await root.close()


async def test_a_subscriber_may_answer_requests_without_publish_rights(bus: Bus):
    _, token = await pat(bus, [subject_scope("subscribe", "svc.time")])
    service = await connect(bus, token)
    asking = await connect(bus, await app_admin(bus))
    try:

        async def answer(msg):
            await msg.respond(b"noon")

        await service.subscribe("svc.time", cb=answer)
        await sync_with_server(service)
        assert (await asking.request("svc.time", b"", timeout=WAIT)).data == b"noon"
    finally:
        await asking.close()
        await service.close()


async def test_revoked_expired_wrong_and_missing_tokens_cannot_connect(bus: Bus):
    pat_id, token = await pat(bus, [subject_scope("publish", "*")])
    await (await connect(bus, token)).close()
    await bus.admin.command("revoke_pat", pat_id=pat_id)
    await refused(bus, token, "revoked")

    wrong_secret = tokens.mint("pat", UUID(pat_id), secrets.token_bytes(32))
    await refused(bus, wrong_secret, "unknown")
    await refused(bus, "not-a-token", "malformed")
    await refused(bus, None, "no_token")


async def test_unscoped_credentials_act_with_their_owners_roles(bus: Bus):
    org = await make_org(bus.admin)
    admin = await connect(bus, org.admin_key)  # an admin's unscoped API key: every subject
    try:
        await admin.publish("anything.at.all", b"")
        await sync_with_server(admin)
        assert admin.is_connected
    finally:
        await admin.close()
    await refused(bus, org.user_key, "no_matching_scope")  # role user, no scopes
    _, nothing = await pat(bus, [{"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}])
    await refused(bus, nothing, "no_matching_scope")
    recovery = await bus.admin.command("issue_key", user_id=org.user_id, kind="recovery")
    await refused(bus, recovery["result"]["token"], "not_a_bearer_credential")


async def test_an_access_token_from_login_connects(bus: Bus):
    org = await make_org(bus.admin)
    password = "a long bus password"
    await bus.admin.command("change_password", user_id=org.admin_id, password=password)
    tokens = await bus.admin.call("login", {"tenant_id": org.tenant_id, "username": "admin-1", "password": password}, token="")
    client = await connect(bus, tokens["access_token"])
    await client.close()
    await bus.admin.command("revoke_session", session_id=tokens["session_id"])
    await refused(bus, tokens["access_token"], "revoked")


async def test_the_callout_is_counted_like_an_endpoint(bus: Bus):
    _, token = await pat(bus, [subject_scope("subscribe", "x")])
    stats = bus.instance.node.stats.endpoints[ENDPOINT]
    before_ok, before_refused = stats.outcomes.get("ok", 0), stats.outcomes.get("unauthenticated", 0)
    await (await connect(bus, token)).close()
    await refused(bus, "nope", "malformed")
    assert stats.outcomes["ok"] == before_ok + 1
    assert stats.outcomes["unauthenticated"] == before_refused + 1
    assert stats.last_error == "unauthenticated: malformed"
    info = await bus.admin.nc.request(f"$SRV.INFO.authbus.{bus.instance.node.service.id}", b"", timeout=WAIT)
    assert b'"$SYS.REQ.USER.AUTH"' in info.data


async def test_the_callout_survives_an_authbus_restart(bus: Bus):
    _, token = await pat(bus, [subject_scope("publish", "after.restart")])
    await bus.instance.node.stop()
    try:  # nobody answers the server: no one gets in
        kept_out = await connect(bus, token)
    except (TimeoutError, nats.errors.Error):
        pass
    else:  # the server's refusal came after the handshake: nats.py hands back a closed client
        assert not kept_out.is_connected
        await kept_out.close()
    node = await Node(bus.settings, open_application(bus.settings)).start()
    bus.instance = Instance(node, bus.instance.root_token, bus.settings, bus.instance.backend)
    client = await connect(bus, token)
    try:
        await client.publish("after.restart", b"")
        await sync_with_server(client)
    finally:
        await client.close()


async def test_callout_init_prints_a_working_pair_of_settings_and_server_configuration(databases, tmp_path):
    printed = CliRunner().invoke(
        cli.app,
        ["callout", "init", "--nats-host", "127.0.0.1", "--nats-port", str(port := free_port()), "--subject-prefix", "init"],
    )
    assert printed.exit_code == 0, printed.output
    env_text, _, config = printed.output.partition("# nats-server: configuration\n")
    env = dict(line.split("=", 1) for line in env_text.splitlines() if line and not line.startswith("#"))
    (tmp_path / "nats.conf").write_text(config)
    server = NatsServer(tmp_path / "nats", port=port, extra_args=("-c", str(tmp_path / "nats.conf")))
    settings = Settings(
        data_dir=tmp_path,
        nats_url=env["AUTHBUS_NATS_URL"],
        nats_system_url=env["AUTHBUS_NATS_SYSTEM_URL"],
        database_url=databases.new("sqlite"),
        subject_prefix=env["AUTHBUS_SUBJECT_PREFIX"],
        kek=secrets.token_hex(32),
        seal_interval=0,
        use_interval=0,
        callout_issuer_seed=env["AUTHBUS_CALLOUT_ISSUER_SEED"],
        callout_xkey_seed=env["AUTHBUS_CALLOUT_XKEY_SEED"],
    )
    try:
        server.start()
        instance = await start_instance(settings, "sqlite")
        client = await asyncio.wait_for(nats.connect(f"nats://127.0.0.1:{port}", token=instance.root_token), WAIT)
        await client.close()
        await instance.node.stop()
    finally:
        server.stop()


async def test_a_connection_gets_what_the_credential_and_its_owner_both_hold(bus: Bus):
    """A scope counts only while the owner holds it: the owner's role narrowed to orders.eu.>
    narrows a PAT minted with orders.> on its next connection."""
    org = await make_org(bus.admin)
    role_id = await grant_scopes(bus.admin, org.tenant_id, org.user_id, [subject_scope("publish", "orders.>")])
    created = await bus.admin.command(
        "create_pat", user_id=org.user_id, name="bus", scopes=[subject_scope("publish", "orders.>")]
    )
    await bus.admin.command("remove_role_scopes", role_id=role_id, scopes=[subject_scope("publish", "orders.>")])
    narrowed = await bus.admin.command("add_role_scopes", role_id=role_id, scopes=[subject_scope("publish", "orders.eu.>")])
    assert await eventually(lambda: bus.instance.node.model.position >= narrowed["position"], WAIT)
    errors: list[Exception] = []
    client = await connect(bus, created["result"]["token"], errors)
    try:
        await client.publish("orders.eu.new", b"")
        await client.publish("orders.us.new", b"")
        await violation(errors, 'permissions violation for publish to "orders.us.new"')
        assert len(errors) == 1
    finally:
        await client.close()


# ---------------------------------------------------------------- revocation reaches open connections

CLOSED_WITHIN = 2.0  # seconds from the revoking command's reply to the connection's end


async def closed_after(client: Client, change) -> float:
    """Seconds from sending ``change`` until the server closes ``client``."""
    started = time.monotonic()
    await change()
    assert await eventually(lambda: not client.is_connected, 2 * CLOSED_WITHIN, every=0.01), "the connection stayed open"
    return time.monotonic() - started


async def test_revoking_or_narrowing_a_credential_closes_its_open_connections(bus: Bus):
    """A revoked PAT's connection kept publishing; now every connection a credential opened
    closes within 2 s when it, its owner, its tenant or its session is revoked or disabled,
    its secret is reset, or its owner loses a scope it used (it may come back narrower)."""
    scopes = [subject_scope("publish", "x.>")]
    took: dict[str, float] = {}
    pat_id, token, _ = await owned_pat(bus, scopes)
    client = await connect(bus, token)
    took["revoke_pat"] = await closed_after(client, lambda: bus.admin.command("revoke_pat", pat_id=pat_id))
    await refused(bus, token, "revoked")

    pat_id, token, _ = await owned_pat(bus, scopes)
    client = await connect(bus, token)
    took["reset_pat_secret"] = await closed_after(client, lambda: bus.admin.command("reset_pat_secret", pat_id=pat_id))

    _, token, owner = await owned_pat(bus, scopes)
    client = await connect(bus, token)
    took["disable_user"] = await closed_after(client, lambda: bus.admin.command("disable_user", user_id=owner))

    org = await make_org(bus.admin)
    client = await connect(bus, org.admin_key)
    took["disable_tenant"] = await closed_after(client, lambda: bus.admin.command("disable_tenant", tenant_id=org.tenant_id))

    org = await make_org(bus.admin)
    role_id = await grant_scopes(bus.admin, org.tenant_id, org.user_id, [*scopes, subject_scope("publish", "y.>")])
    created = await bus.admin.command(
        "create_pat", user_id=org.user_id, name="n", scopes=[*scopes, subject_scope("publish", "y.>")]
    )
    client = await connect(bus, created["result"]["token"])
    took["remove_role_scopes"] = await closed_after(
        client, lambda: bus.admin.command("remove_role_scopes", role_id=role_id, scopes=[subject_scope("publish", "y.>")])
    )
    errors: list[Exception] = []
    again = await connect(bus, created["result"]["token"], errors)  # back in, with what the owner still holds
    try:
        await again.publish("x.ok", b"")
        await again.publish("y.no", b"")
        await violation(errors, 'permissions violation for publish to "y.no"')
    finally:
        await again.close()

    password = "an access token's password"
    await bus.admin.command("change_password", user_id=org.admin_id, password=password)
    login = await bus.admin.call("login", {"tenant_id": org.tenant_id, "username": "admin-1", "password": password}, token="")
    client = await connect(bus, login["access_token"])
    took["revoke_session"] = await closed_after(
        client, lambda: bus.admin.command("revoke_session", session_id=login["session_id"])
    )
    assert all(seconds <= CLOSED_WITHIN for seconds in took.values()), took


async def test_an_expiring_credential_is_dropped_at_its_end_and_not_let_back_in(bus: Bus):
    """A PAT with expires_in 3 was dropped after 2.0 s and let in again at once: its
    connection now ends at the credential's end, and a reconnect then is refused."""
    pat_id, token = await pat(bus, [subject_scope("publish", "*")], expires_in=3)
    expires_at = (await bus.admin.admin("get_pat", pat_id=pat_id))["pat"]["expires_at"]
    end = datetime.fromisoformat(expires_at).timestamp()
    client = await connect(bus, token)
    assert await eventually(lambda: not client.is_connected, 6, every=0.01)
    dropped = time.time()
    await refused(bus, token, "expired")
    # Not before its end (it was dropped a second early); how long after is the machine's
    # business, bounded by the wait above.
    assert dropped >= end - 0.5, (dropped, end)


async def test_a_connection_reads_its_own_tenants_part_of_the_feed_and_no_other(bus: Bus):
    """The feed names users, roles and claims: a tenant's admin with every subject hears
    none of it, and a credential scoped to its own tenant's part hears only that."""
    org = await make_org(bus.admin)
    own = subject_scope("subscribe", f"bus.v1.events.{org.tenant_id}.>")
    await grant_scopes(bus.admin, org.tenant_id, org.user_id, [own])
    listener = (await bus.admin.command("create_pat", user_id=org.user_id, name="feed", scopes=[own]))["result"]["token"]
    heard: list[str] = []
    errors: list[Exception] = []
    clients = [await connect(bus, listener, errors), await connect(bus, org.admin_key, errors)]
    try:
        for client, subject in zip(clients, (f"bus.v1.events.{org.tenant_id}.>", ">"), strict=False):

            async def note(msg, who=subject):
                heard.append(f"{who} {msg.subject}")

            await client.subscribe(subject, cb=note)
            await sync_with_server(client)
        other = await make_org(bus.admin)  # events of another tenant
        mine = await bus.admin.command("register_user", tenant_id=org.tenant_id, username="someone")  # one of its own
        assert mine["ok"] and await eventually(lambda: any("user.UserRegistered" in h for h in heard), WAIT), heard
        await sync_with_server(clients[1])
        feed = [h for h in heard if ".v1.events." in h]
        assert feed and all(h.startswith(f"bus.v1.events.{org.tenant_id}.> bus.v1.events.{org.tenant_id}.") for h in feed), feed
        assert other.tenant_id not in "".join(heard)
    finally:
        for client in clients:
            await client.close()


async def test_a_root_credential_with_scopes_is_held_to_them(bus: Bus):
    """A root-owned PAT carrying one subject scope landed in authbus's own account with no
    limits: it could hear logins and commands and forge the feed."""
    system = (await bus.admin.call("verify", {"token": bus.instance.root_token}, token=""))["principal"]["tenant_id"]
    another_root = await bus.admin.command(
        "register_user", tenant_id=system, username=f"ops-{secrets.token_hex(4)}", roles=["root"]
    )
    created = await bus.admin.command(
        "create_pat", user_id=another_root["result"]["user_id"], name="metrics", scopes=[subject_scope("publish", "metrics.x")]
    )
    errors: list[Exception] = []
    client = await connect(bus, created["result"]["token"], errors)
    try:
        await client.subscribe("bus.v1.login")
        await violation(errors, 'permissions violation for subscription to "bus.v1.login"')
        await client.publish("bus.v1.events.x.pat.PATCreated", b"{}")
        await violation(errors, 'permissions violation for publish to "bus.v1.events.x.pat.patcreated"')
    finally:
        await client.close()
