"""Attacks that once worked, through real NATS on both stores: each must fail now."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import jwt
import msgspec
import nats
import pytest

from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.crypto.password_gate import IN_FLIGHT_PER_CALLER
from authbus.infra.nats.sync import sync_with_server
from tests.helpers import make_org, store_position


async def test_a_replayed_command_id_answers_only_the_credential_that_sent_it(client, org, instance):
    """A zero-scope PAT of the same owner re-sent the owner's create_pat with its command_id
    (visible as correlation_id on the feed) and got the powerful token back."""
    command_id = str(uuid.uuid4())
    body = {"user_id": org.user_id, "name": "powerful", "command_id": command_id}
    first = await client.command("create_pat", **body, token=org.admin_key)
    weak = (await client.command("create_pat", user_id=org.admin_id, name="weak", scopes=[]))["result"]["token"]
    other_key = (await client.command("issue_key", user_id=org.admin_id, kind="api_key"))["result"]["token"]
    before = store_position(instance)
    for token in (weak, other_key):
        with pytest.raises(AuthbusError) as refused:
            await client.command("create_pat", **body, token=token)
        assert (refused.value.code, refused.value.details.get("field")) == ("conflict", "command_id")
        assert first["result"]["token"] not in str(refused.value)
    assert store_position(instance) == before
    again = await client.command("create_pat", **body, token=org.admin_key)
    assert again["result"] == first["result"]


async def test_a_tenant_token_naming_another_tenants_user_is_not_that_user(client, org):
    """A tenant-minted token with ``sub`` = a real user's id of another tenant came back with
    ``principal.id`` equal to that id: services keyed on principal ids were confused."""
    other = await make_org(client)
    created = await client.command("create_signing_key", tenant_id=org.tenant_id, alg="HS256", token=org.admin_key)
    now = int(time.time())
    token = jwt.encode(
        {"tnd": org.tenant_id, "sub": other.admin_id, "iat": now, "exp": now + 60, "per": {}},
        created["result"]["secret"],
        algorithm="HS256",
        headers={"kid": created["result"]["kid"]},
    )
    verified = await client.verify(token, min_position=created["position"])
    assert verified.valid and verified.principal.kind == "external"
    assert verified.principal.id != other.admin_id and verified.principal.subject == other.admin_id
    assert verified.principal.tenant_id == org.tenant_id


async def test_the_cli_prints_users_strings_as_they_are(client, org, instance, nats_server):
    """A PAT named ``[/]`` crashed ``authbus pat list``; ``[link=…]`` was rendered as a link."""
    names = ["[/]", "[link=https://evil.example]click[/link]", "[bold red]x"]
    for name in names:
        await client.command("create_pat", user_id=org.user_id, name=name, token=org.admin_key)
    listed = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "authbus.infra",
            "--nats-url",
            nats_server.url,
            "--subject-prefix",
            instance.prefix,
            "--token",
            org.admin_key,
            "pat",
            "list",
            "--user",
            org.user_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert listed.returncode == 0, listed.stderr
    for name in names:
        assert name in listed.stdout, listed.stdout


# ---------------------------------------------------------------- delegation is bounded by the owner

BILLING_DELETE = {"domain": "billing", "entity_type": "invoice", "operation": "delete", "entity_id": "*"}
PUBLISH_ANYTHING = {"domain": None, "entity_type": "subject", "operation": "publish", "entity_id": "*"}
DOC_READ = {"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}


async def refused(call, code: str, field: str | None = None) -> AuthbusError:
    with pytest.raises(AuthbusError) as error:
        await call
    assert (error.value.code, error.value.details.get("field")) == (code, field), error.value
    return error.value


async def test_a_user_mints_only_scopes_it_holds(client, org, instance):
    """A user-role principal created a PAT for itself with billing/invoice:delete:* and
    subject:publish:*, and authorize said allowed while its own access token did not."""
    password = "a long user password"
    await client.command("change_password", user_id=org.user_id, password=password)
    login = await client.call("login", {"tenant_id": org.tenant_id, "username": "user-1", "password": password}, token="")
    access = login["access_token"]
    before = store_position(instance)
    await refused(
        client.command("create_pat", user_id=org.user_id, name="mine", scopes=[DOC_READ, BILLING_DELETE], token=access),
        "forbidden",
        "scopes[0]",
    )
    await refused(
        client.command("issue_key", user_id=org.user_id, kind="api_key", scopes=[PUBLISH_ANYTHING], token=access),
        "forbidden",
        "scopes[0]",
    )
    await refused(
        client.command("create_pat", user_id=org.user_id, name="by admin", scopes=[BILLING_DELETE], token=org.admin_key),
        "forbidden",
        "scopes[0]",
    )  # not even an admin gives a user's PAT more than the user holds
    assert store_position(instance) == before
    assert not (
        await client.authorize(access, domain="billing", entity_type="invoice", operation="delete", entity_id="1")
    ).allowed

    await client.command("grant_role", user_id=org.user_id, role=await tenant_role(client, org, [BILLING_DELETE]))
    pat = await client.command("create_pat", user_id=org.user_id, name="mine", scopes=[BILLING_DELETE], token=access)
    for token in (pat["result"]["token"], access):  # the PAT and the access token agree now
        decision = await client.authorize(
            token, domain="billing", entity_type="invoice", operation="delete", entity_id="1", min_position=pat["position"]
        )
        assert decision.allowed, decision


async def tenant_role(client, org, scopes: list[dict]) -> str:
    name = f"r{uuid.uuid4().hex[:10]}"
    await client.command("create_role", tenant_id=org.tenant_id, name=name, scopes=scopes)
    return name


async def test_a_credential_never_widens_itself(client, org):
    """A PAT holding pat/update added scopes to itself."""
    await client.command("grant_role", user_id=org.user_id, role=await tenant_role(client, org, [DOC_READ]))
    update = {"domain": "authbus", "entity_type": "pat", "operation": "update", "entity_id": "*"}
    pat = (await client.command("create_pat", user_id=org.user_id, name="self", scopes=[update], token=org.admin_key))["result"]
    await refused(client.command("add_scope", pat_id=pat["pat_id"], scope=DOC_READ, token=pat["token"]), "forbidden", "pat_id")
    sibling = (await client.command("create_pat", user_id=org.user_id, name="sibling", token=org.admin_key))["result"]
    await refused(
        client.command("add_scope", pat_id=sibling["pat_id"], scope=BILLING_DELETE, token=pat["token"]), "forbidden", "scope"
    )
    await client.command("add_scope", pat_id=sibling["pat_id"], scope=DOC_READ, token=pat["token"])  # what the owner holds


async def test_an_auditors_credentials_only_read(client, org):
    """An auditor's PAT got ``delete``."""
    auditor = (await client.command("register_user", tenant_id=org.tenant_id, username="aud", roles=["auditor"]))["result"][
        "user_id"
    ]
    doc_delete = {**DOC_READ, "operation": "delete"}
    await refused(
        client.command("create_pat", user_id=auditor, name="x", scopes=[DOC_READ, doc_delete], token=org.admin_key),
        "forbidden",
        "scopes[1]",
    )
    reader = (await client.command("create_pat", user_id=auditor, name="x", scopes=[DOC_READ], token=org.admin_key))["result"]
    assert (await client.authorize(reader["token"], entity_type="doc", operation="read", entity_id="1")).allowed


async def test_removing_a_role_narrows_every_credential_of_its_holders_at_once(client, org):
    role_id = (await client.command("create_role", tenant_id=org.tenant_id, name="readers", scopes=[DOC_READ]))["result"][
        "role_id"
    ]
    await client.command("grant_role", user_id=org.user_id, role="readers")
    pat = (await client.command("create_pat", user_id=org.user_id, name="r", scopes=[DOC_READ], token=org.admin_key))["result"]
    tokens = (pat["token"], org.user_key)  # scoped, and unscoped (acts as its owner)

    async def can_read(position: int) -> list[bool]:
        return [
            (await client.authorize(t, entity_type="doc", operation="read", entity_id="7", min_position=position)).allowed
            for t in tokens
        ]

    assert await can_read(0) == [True, True]
    revoked = await client.command("revoke_role", user_id=org.user_id, role="readers")
    assert await can_read(revoked["position"]) == [False, False]
    again = await client.command("grant_role", user_id=org.user_id, role="readers")
    assert await can_read(again["position"]) == [True, True]
    narrowed = await client.command("remove_role_scopes", role_id=role_id, scopes=[DOC_READ])
    assert await can_read(narrowed["position"]) == [False, False]
    widened = await client.command("add_role_scopes", role_id=role_id, scopes=[DOC_READ])
    assert await can_read(widened["position"]) == [True, True]
    deleted = await client.command("delete_role", role_id=role_id)
    assert await can_read(deleted["position"]) == [False, False]
    # A new role of the same name is another role: the old grant does not reach it.
    await client.command("create_role", tenant_id=org.tenant_id, name="readers", scopes=[DOC_READ])
    assert await can_read(0) == [False, False]
    user = (await client.admin("get_user", user_id=org.user_id))["user"]
    assert user["roles"] == ["user"]
    await client.command("revoke_role", user_id=org.user_id, role="readers")  # clears the inert grant of the deleted one
    await refused(client.command("revoke_role", user_id=org.user_id, role="readers"), "conflict", "role")


async def test_tenant_roles_are_named_once_per_tenant_and_stay_in_it(client, org):
    other = await make_org(client)
    await client.command("create_role", tenant_id=org.tenant_id, name="appAdmin", scopes=[DOC_READ], token=org.admin_key)
    await refused(
        client.command("create_role", tenant_id=org.tenant_id, name="APPADMIN", token=org.admin_key), "conflict", "name"
    )
    await refused(client.command("create_role", tenant_id=org.tenant_id, name="Admin", token=org.admin_key), "conflict", "name")
    await refused(client.command("create_role", tenant_id=org.tenant_id, name="x", token=org.user_key), "forbidden")
    await refused(
        client.command("create_role", tenant_id=other.tenant_id, name="x", token=org.admin_key), "forbidden", "tenant_id"
    )
    await client.command("create_role", tenant_id=other.tenant_id, name="appAdmin", token=other.admin_key)  # its own tenant's
    await refused(client.command("grant_role", user_id=other.user_id, role="nope", token=other.admin_key), "not_found", "role")
    listed = (await client.admin("list_roles", tenant_id=org.tenant_id, token=org.admin_key))["items"]
    assert [(r["name"], r["scopes"]) for r in listed] == [("appAdmin", [DOC_READ])]
    await refused(client.admin("get_role", role_id=listed[0]["id"], token=other.admin_key), "not_found", "role_id")
    await refused(client.command("delete_role", role_id=listed[0]["id"], token=other.admin_key), "not_found", "role_id")
    await client.command("grant_role", user_id=org.user_id, role="appadmin", token=org.admin_key)  # any case
    verified = await client.verify(org.user_key)
    assert verified.principal.roles == ["user", "appAdmin"]


# ---------------------------------------------------------------- no enumeration, bounded abuse


async def login_reply(client, tenant_id: str, username: str, password: str) -> dict:
    """The raw reply (error or not), as a caller sees it."""
    body = msgspec.json.encode({"tenant_id": tenant_id, "username": username, "password": password})
    msg = await client.nc.request(f"{client.prefix}.v1.login", body, timeout=client.timeout)
    return msgspec.json.decode(msg.data)


async def test_an_unknown_user_and_a_wrong_password_look_the_same_in_every_way(client, org, instance):
    """The reply's position moved only for an existing user, and only an existing user got
    rate_limited on the sixth try."""
    await client.command("change_password", user_id=org.user_id, password="the right password")
    for username in ("user-1", f"nobody-{uuid.uuid4().hex[:6]}"):
        replies = []
        for _ in range(6):
            before = store_position(instance)
            reply = await login_reply(client, org.tenant_id, username, "a wrong password")
            replies.append((reply["error"]["code"], reply["error"]["message"], reply["position"] - before))
        assert replies == [("unauthenticated", "wrong username or password", 1)] * 5 + [
            ("rate_limited", "too many failed logins: try again in a few minutes", 0)
        ], (username, replies)


async def test_the_failure_limit_holds_under_concurrency(client, org, instance):
    """40 concurrent wrong passwords for one user: 32 were checked (limit 5)."""
    password = "the right password"
    await client.command("change_password", user_id=org.user_id, password=password)
    before = store_position(instance)
    replies = await asyncio.gather(*(login_reply(client, org.tenant_id, "user-1", "wrong" if i else password) for i in range(40)))
    codes = [r.get("error", {}).get("code", "ok") for r in replies]
    checked = len([c for c in codes if c in ("ok", "unauthenticated")])
    assert checked <= 5 + 1 and set(codes) <= {"ok", "unauthenticated", "rate_limited"}, (
        codes
    )  # five failures, a success clears them
    failures = (await client.admin("login_activity", user_id=org.user_id, token=org.admin_key))["items"]
    assert len([a for a in failures if a["outcome"] == "failed"]) <= 5 + (1 if "ok" in codes else 0)
    assert store_position(instance) > before


async def test_concurrent_logins_never_answer_conflict(client, org):
    password = "the right password"
    await client.command("change_password", user_id=org.user_id, password=password)
    replies = await asyncio.gather(*(login_reply(client, org.tenant_id, "user-1", password) for _ in range(12)))
    assert all("access_token" in r for r in replies), [r.get("error") for r in replies]


async def test_a_flood_of_far_future_min_positions_is_answered_at_once_and_holds_up_nothing(client, org, instance):
    """~700/s unauthenticated ``verify {"token": "x", "min_position": 2^62}`` made a normal
    verify take 6.3 s: each waited out the consistency wait, holding a slot."""
    far = {"token": "x", "min_position": 2**62}
    readings = instance.node.head.readings

    async def flood() -> list[str]:
        replies = await asyncio.gather(*(client.call("verify", far, token="") for _ in range(300)), return_exceptions=True)
        return [getattr(r, "code", "answered") for r in replies]

    started = time.monotonic()
    flooding = asyncio.ensure_future(flood())
    normal = await client.verify(org.user_key, min_position=0)
    codes = await flooding
    took = time.monotonic() - started
    assert normal.valid and codes == ["stale"] * 300
    assert took < instance.node.consistency_wait  # not one of them waited it out
    # The store's head was read a few times for all of them, not once each.
    assert instance.node.head.readings - readings < 100


async def test_a_flood_of_unknown_usernames_costs_no_password_checks_and_takes_its_turns(client, org, instance, nats_server):
    """100 concurrent unknown-user logins took a legitimate login from 119 ms to 8 s: each
    ran argon2 against a decoy hash, on two shared threads, first come first served."""
    password = "the right password"
    await client.command("change_password", user_id=org.user_id, password=password)
    gate = instance.node.gate
    checks = gate.done
    legitimate = await AuthbusClient.connect(nats_server.url, instance.prefix)  # another caller
    try:
        flood = [login_reply(client, org.tenant_id, f"ghost-{i}", "guess") for i in range(30)]
        replies = asyncio.gather(*flood)
        await asyncio.sleep(0)  # the flood is ahead in line
        mine = await login_reply(legitimate, org.tenant_id, "user-1", password)
        assert "access_token" in mine
        assert not replies.done()  # served before the flood was, not after it
        codes = [r["error"]["code"] for r in await replies]
        # A caller has 16 logins under way at most; the rest of its flood is refused at once.
        assert codes.count("unauthenticated") == IN_FLIGHT_PER_CALLER and set(codes) == {"unauthenticated", "rate_limited"}
    finally:
        await legitimate.close()
    assert gate.done - checks == 1  # the legitimate one: made-up names cost no argon2 at all
    assert gate.most_running <= gate.workers


async def test_one_tenants_password_commands_do_not_hold_up_anothers(client, org, instance):
    """Tenant A's 30 concurrent register_user with passwords took tenant B's create_pat from
    2 ms to 3.1 s: argon2 ran on the one command worker.  Twelve show it as well, and leave
    the hashing well inside the client's timeout when other test processes share the cores."""
    other = await make_org(client)
    loop = asyncio.get_running_loop()
    finished: dict[str, float] = {}

    async def timed(name: str, call) -> None:
        await call
        finished[name] = loop.time()

    registrations = [
        timed(
            f"a{i}",
            client.command(
                "register_user", tenant_id=org.tenant_id, username=f"new-{i}", password="a long password", token=org.admin_key
            ),
        )
        for i in range(12)
    ]

    async def b_after_a_started() -> None:
        await asyncio.sleep(0)  # queued behind A's requests, as the complaint had it
        await timed("b", client.command("create_pat", user_id=other.user_id, name="b", token=other.admin_key))

    await asyncio.gather(*registrations, b_after_a_started())
    # B's command did not wait for A's hashing: it was answered while A's were still going.
    assert finished["b"] < max(v for k, v in finished.items() if k.startswith("a"))
    assert instance.node.gate.most_running <= instance.node.gate.workers


async def test_a_refused_password_command_costs_no_hashing(client, org, instance):
    """Any bearer could make authbus hash: a password is hashed only once the command's
    rules have passed."""
    gate = instance.node.gate
    done = gate.done
    for _ in range(5):
        with pytest.raises(AuthbusError) as refused:
            await client.command(
                "register_user", tenant_id=org.tenant_id, username="x", password="a long password", token=org.user_key
            )
        assert refused.value.code == "forbidden"
    assert gate.done == done
    await client.command("register_user", tenant_id=org.tenant_id, username="x", password="a long password", token=org.admin_key)
    assert gate.done == done + 1


async def test_a_reply_planted_in_a_clients_inbox_is_never_taken_for_authbus(client, instance, nats_server):
    """Whoever may publish to a client's inbox (a reply subject it saw, or one it predicted)
    could race authbus with ``{"valid": true}``: the client takes only the reply that echoes
    the fresh Correlation-Id it sent."""
    spy = await nats.connect(nats_server.url)
    planted = []

    async def plant(msg):
        planted.append(msg.reply)
        forged = {"ok": True, "result": {"tenant_id": "forged"}, "position": 1, "valid": True, "reason": None}
        await spy.publish(msg.reply, msgspec.json.encode(forged), headers={"Correlation-Id": "guess"})

    try:
        for subject in ("cmd.create_tenant", "verify"):
            await spy.subscribe(f"{instance.prefix}.v1.{subject}", cb=plant)
        await sync_with_server(spy)
        created = await client.command("create_tenant", name=f"planted-{uuid.uuid4().hex[:8]}")
        verdict = await client.verify("not a token")
        assert len(planted) == 2  # both requests were seen and answered by the plant first
        assert created["result"]["tenant_id"] != "forged" and (verdict.valid, verdict.reason) == (False, "malformed")
    finally:
        await spy.close()
