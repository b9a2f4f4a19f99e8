"""The Python client (infra/client/__init__.py) through real NATS: typed results, and read-your-writes
(the highest position seen is sent as min_position unless the caller gives one)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import nats
import pytest

from authbus.domain.errors import InvalidRequest, NotFound
from authbus.handlers.admin_reads import ADMIN_READS
from authbus.handlers.audit_reads import AUDIT_READS
from authbus.handlers.replies import (
    AsOf,
    AuditLogPage,
    CredentialDetail,
    KeyReply,
    LoginAttempt,
    ModelDigest,
    Page,
    PatReply,
    RoleDetail,
    RoleReply,
    SessionDetail,
    SigningKeyDetail,
    TenantDetail,
    TenantReply,
    UserDetail,
    UserReply,
)
from authbus.infra.client import (
    AuthbusClient,
    AuthbusError,
    CommandReply,
    Credential,
    Decision,
    Principal,
    Scope,
    Tokens,
    Verified,
)
from authbus.infra.nats.sync import sync_with_server
from tests.conftest import quick_to_stale
from tests.e2e.test_consistency import two_instances
from tests.helpers import PAT_SCOPE, make_tenant, store_position


class NewPat(msgspec.Struct):
    pat_id: str
    token: str
    expires_at: str | None


@contextlib.asynccontextmanager
async def wiretap(url: str, subject: str):
    """Every request body sent to ``subject`` while open, as seen by a plain subscriber on a
    connection of its own (it never answers; the service's queue group does)."""
    nc = await nats.connect(url)
    sub = await nc.subscribe(subject)
    await sync_with_server(nc)

    async def next_body() -> dict:
        return msgspec.json.decode((await sub.next_msg(timeout=5)).data)

    try:
        yield next_body
    finally:
        await nc.close()


async def test_verify_and_authorize_answer_typed(client):
    world = await make_tenant(client, "typed")
    verified = await client.verify(world.pat_token)
    assert isinstance(verified, Verified) and verified.valid and verified.reason is None
    assert verified.credential == Credential(id=world.pat_id, kind="pat", expires_at=verified.credential.expires_at)
    assert verified.principal == Principal(id=world.user_id, tenant_id=world.tenant_id, kind="user", roles=["user", "editors"])
    assert verified.scopes == [Scope(**PAT_SCOPE)] and verified.position == client.position

    unscoped = await client.verify(world.key_token)
    assert unscoped.valid and unscoped.credential.kind == "api_key" and unscoped.scopes is None
    refused = await client.verify("pat_not_a_token")
    assert (refused.valid, refused.reason, refused.credential, refused.principal) == (False, "malformed", None, None)

    allowed = await client.authorize(world.pat_token, domain="docs", entity_type="doc", operation="read", entity_id="42")
    assert isinstance(allowed, Decision)
    assert (allowed.allowed, allowed.reason, allowed.matched_scope) == (True, "scope", Scope(**PAT_SCOPE))
    assert allowed.principal == verified.principal
    denied = await client.authorize(world.pat_token, entity_type="doc", operation="write", entity_id="42")
    assert (denied.allowed, denied.reason, denied.matched_scope) == (False, "no_matching_scope", None)
    other = await client.authorize(
        world.key_token, tenant_id=str(uuid.uuid4()), entity_type="doc", operation="read", entity_id="1"
    )
    assert (other.allowed, other.reason) == (False, "other_tenant")
    nobody = await client.authorize("nope", entity_type="doc", operation="read", entity_id="1")
    assert (nobody.allowed, nobody.reason, nobody.principal) == (False, "malformed", None)
    ranked = await client.authorize(world.key_token, min_role="user")  # a rank, no scope
    assert (ranked.allowed, ranked.reason, ranked.matched_scope, ranked.principal) == (
        True,
        "role:user",
        None,
        verified.principal,
    )
    unranked = await client.authorize(world.key_token, min_role="editors")  # not in the default order
    assert (unranked.allowed, unranked.reason) == (False, "unranked_role")


async def test_login_and_refresh_answer_tokens(client):
    world = await make_tenant(client, "tokens")
    await client.command("change_password", user_id=world.user_id, password="a long enough password", token=world.admin_token)
    pair = await client.login(world.tenant_id, "user-1", "a long enough password", source="test_client")
    assert isinstance(pair, Tokens) and pair.token_type == "Bearer" and pair.expires_in == 900
    assert pair.refresh_token.startswith("rt_") and pair.position == client.position
    assert (await client.verify(pair.access_token)).principal.id == world.user_id

    rotated = await client.refresh(pair.refresh_token)
    assert rotated.session_id == pair.session_id and rotated.refresh_token != pair.refresh_token
    assert rotated.position > pair.position
    with pytest.raises(AuthbusError) as error:
        await client.login(world.tenant_id, "user-1", "not the password")
    assert (error.value.code, error.value.details["field"]) == ("unauthenticated", "password")


async def test_commands_answer_dicts_or_a_type_of_the_callers(client, org):
    created = await client.command("create_pat", user_id=org.user_id, name="dict", token=org.admin_key)
    assert set(created) == {"ok", "result", "position"} and created["result"]["token"].startswith("pat_")

    typed = await client.command_as(NewPat, "create_pat", user_id=org.user_id, name="typed", token=org.admin_key)
    assert isinstance(typed, CommandReply) and isinstance(typed.result, NewPat) and typed.ok
    assert typed.result.token.startswith("pat_") and typed.position == client.position > created["position"]
    assert (await client.verify(typed.result.token)).credential.id == typed.result.pat_id
    empty = await client.command_as(dict, "revoke_pat", pat_id=typed.result.pat_id, token=org.admin_key)
    assert empty.result == {} and empty.position == client.position
    with pytest.raises(msgspec.ValidationError):  # a type that does not fit the result
        await client.command_as(NewPat, "create_tenant", name=f"t-{uuid.uuid4().hex}")


async def test_every_admin_and_audit_read_decodes_into_its_struct(client, instance):
    before = store_position(instance)  # the audit log is read from here: one page, all of this tenant's
    world = await make_tenant(client, "reads", login=True, keys=True)
    with pytest.raises(AuthbusError):
        await client.login(world.tenant_id, "user-1", "not the password")
    await client.command("revoke_pat", pat_id=world.pat_id, reason="leaked")
    user, tenant = {"user_id": world.user_id}, {"tenant_id": world.tenant_id}
    reads = {
        "get_tenant": (TenantReply, tenant),
        "list_tenants": (Page[TenantDetail], {}),
        "get_user": (UserReply, user),
        "list_users": (Page[UserDetail], tenant),
        "search_users": (Page[UserDetail], {**tenant, "username_prefix": "user"}),
        "get_pat": (PatReply, {"pat_id": world.pat_id}),
        "get_key": (KeyReply, {"key_id": world.key_id}),
        "list_pats": (Page[CredentialDetail], user),
        "list_keys": (Page[CredentialDetail], user),
        "list_signing_keys": (Page[SigningKeyDetail], tenant),
        "list_sessions": (Page[SessionDetail], user),
        "login_activity": (Page[LoginAttempt], user),
        "get_role": (RoleReply, {"role_id": world.role_id}),
        "list_roles": (Page[RoleDetail], tenant),
        "audit_log": (AuditLogPage, {**tenant, "limit": 500, "since_position": before + 1}),
        "audit_as_of": (AsOf, {"credential_id": world.pat_id, "at_position": client.position}),
        "rebuild_check": (ModelDigest, {}),
    }
    assert set(reads) == set(ADMIN_READS) | set(AUDIT_READS)
    typed = {}
    for name, (reply_type, fields) in reads.items():
        raw = await client.admin(name, **fields)  # nothing is stored meanwhile: the same position
        typed[name] = await client.admin_as(reply_type, name, **fields)
        assert isinstance(typed[name], msgspec.Struct)
        assert msgspec.to_builtins(typed[name]) == raw, name  # every key the server sent has its field, and no more

    pat = typed["get_pat"].pat
    assert (pat.status, pat.revoked_reason, pat.description, pat.scopes) == ("revoked", "leaked", "", [Scope(**PAT_SCOPE)])
    assert {(k.kind, k.description, k.revoked_reason) for k in typed["list_keys"].items} == {
        ("api_key", msgspec.UNSET, msgspec.UNSET),
        ("recovery", msgspec.UNSET, msgspec.UNSET),
    }
    failed, succeeded = typed["login_activity"].items
    assert (failed.reason, succeeded.reason) == ("bad_password", msgspec.UNSET)
    assert typed["list_sessions"].items[0].id == world.session_id
    assert typed["audit_log"].items[0].type == "TenantCreated" and typed["audit_log"].next is None
    as_of = typed["audit_as_of"]
    assert (as_of.valid, as_of.reason, as_of.scopes) == (False, "revoked", [Scope(**PAT_SCOPE)])
    assert as_of.principal.id == world.user_id and as_of.events[-1].type == "PATRevoked"


async def test_the_highest_position_seen_is_sent_as_min_position(client, org, nats_server):
    revoked = await client.command("revoke_key", key_id=org.user_key_id, token=org.admin_key)
    assert client.position == revoked["position"]
    prefix = client.prefix
    async with wiretap(nats_server.url, f"{prefix}.v1.verify") as sent:
        verdict = await client.verify(org.user_key)
        assert await sent() == {"token": org.user_key, "min_position": revoked["position"]}
        assert (verdict.valid, verdict.reason) == (False, "revoked")
        await client.verify(org.user_key, min_position=1)  # the caller's min_position wins
        assert await sent() == {"token": org.user_key, "min_position": 1}
        await client.verify(org.user_key, min_position=0)  # 0: no wait for this one
        assert await sent() == {"token": org.user_key, "min_position": 0}
        await client.call("verify", {"token": org.user_key}, token="")  # call sends the body as given
        assert await sent() == {"token": org.user_key}
    async with wiretap(nats_server.url, f"{prefix}.v1.authorize") as sent:
        seen = client.position
        await client.authorize(org.admin_key, entity_type="doc", operation="read", entity_id="1")
        assert await sent() == {
            "token": org.admin_key,
            "entity_type": "doc",
            "operation": "read",
            "entity_id": "1",
            "min_position": seen,
        }
    async with wiretap(nats_server.url, f"{prefix}.v1.admin.get_user") as sent:
        seen = client.position
        await client.admin("get_user", user_id=org.user_id, token=org.admin_key)
        assert await sent() == {"user_id": org.user_id, "min_position": seen}
    async with wiretap(nats_server.url, f"{prefix}.v1.jwks") as sent:
        seen = client.position
        assert "keys" in await client.jwks()
        assert await sent() == {"min_position": seen}

    quiet = AuthbusClient(client.nc, prefix, client.token, read_your_writes=False)
    async with wiretap(nats_server.url, f"{prefix}.v1.verify") as sent:
        await quiet.command("create_pat", user_id=org.user_id, name="seen", token=org.admin_key)
        assert quiet.position > revoked["position"]  # it still keeps count
        await quiet.verify(org.admin_key)
        assert await sent() == {"token": org.admin_key}
        await quiet.verify(org.admin_key, min_position=3)
        assert await sent() == {"token": org.admin_key, "min_position": 3}


async def test_a_new_client_sends_no_min_position_until_a_reply_came(client, org, nats_server):
    fresh = AuthbusClient(client.nc, client.prefix, client.token)
    assert fresh.position == 0
    async with wiretap(nats_server.url, f"{client.prefix}.v1.verify") as sent:
        answer = await fresh.verify(org.user_key)
        assert await sent() == {"token": org.user_key}
        assert fresh.position == answer.position > 0


async def test_an_error_reply_raises_and_still_advances_the_position(client, instance):
    fresh = AuthbusClient(client.nc, client.prefix, client.token)
    with pytest.raises(NotFound) as error:  # the server's own class: one hierarchy across the wire
        await fresh.command("revoke_pat", pat_id=str(uuid.uuid4()))
    assert (error.value.code, error.value.details["field"]) == ("not_found", "pat_id")
    assert error.value.position == fresh.position == instance.node.model.position > 0
    with pytest.raises(InvalidRequest) as error:  # a query's error too
        await fresh.verify("x" * 9000)
    assert error.value.code == "invalid_request" and error.value.position == fresh.position


async def test_a_verify_after_a_revocation_is_never_answered_by_a_lagging_instance(fresh_store, nats_server, monkeypatch):
    """A revokes; the client's next verify lands on B, whose read model lags: B waits for the
    client's position and answers stale, never the old valid answer."""
    async with two_instances(fresh_store, nats_server, "ryw") as (a, b, via_a, _):
        client = AuthbusClient(via_a.nc, a.prefix, a.root_token)
        tenant = (await client.command("create_tenant", name="ryw"))["result"]["tenant_id"]
        user = (await client.command("register_user", tenant_id=tenant, username="ann"))["result"]["user_id"]
        created = await client.command_as(NewPat, "create_pat", user_id=user, name="doomed")
        assert await b.node.reached(created.position, 10)
        b.node._follower.stop()  # B's read model now lags the store
        quick_to_stale(monkeypatch, b)
        revoked = await client.command("revoke_pat", pat_id=created.result.pat_id)
        assert client.position == revoked["position"]

        client.prefix = b.prefix  # the next request lands on B, as a queue group may route it
        with pytest.raises(AuthbusError) as error:
            await client.verify(created.result.token)
        assert (error.value.code, error.value.details["field"]) == ("stale", "min_position")
        assert error.value.position < revoked["position"] == client.position  # a lower position never lowers it
        # What B would have said to a client that does not carry its position forward:
        assert (await client.verify(created.result.token, min_position=0)).valid is True
        lagging = AuthbusClient(via_a.nc, b.prefix, read_your_writes=False)
        assert (await lagging.verify(created.result.token)).valid is True


def test_the_verify_cache_uses_the_clients_types():
    from authbus.infra import client
    from authbus.infra.client import verify_cache

    assert (verify_cache.Verified, verify_cache.Credential, verify_cache.Principal) == (
        client.Verified,
        client.Credential,
        client.Principal,
    )


UNKNOWN = b'{"valid": false, "reason": "unknown", "credential": null, "principal": null, "scopes": null, "position": 1}'


@contextlib.asynccontextmanager
async def responder(url: str, subject: str, answer):
    """A stand-in instance on a connection of its own, in authbus's queue group: for the n-th
    request it receives (from 1), ``answer(n, reply, sub)`` is awaited, where ``reply()``
    answers that request as authbus would (``{"valid": false, "reason": "unknown"}``)."""
    nc = await nats.connect(url)
    seen = {"n": 0}

    async def handle(msg) -> None:
        seen["n"] += 1
        headers = {"Correlation-Id": msg.headers["Correlation-Id"]}
        await answer(seen["n"], lambda: nc.publish(msg.reply, UNKNOWN, headers=headers), sub)

    sub = await nc.subscribe(subject, queue="authbus", cb=handle)
    await sync_with_server(nc)
    try:
        yield seen
    finally:
        await nc.close()


async def through(url: str, prefix: str, call, **options):
    client = await AuthbusClient.connect(url, prefix, timeout=3.0, repeat_after=0.1, **options)
    try:
        return await call(client), client
    finally:
        await client.close()


async def test_a_safe_request_lost_with_its_instance_is_sent_once_more(nats_server):
    """The first send reaches an instance that never answers (it died): the client sends the
    verify once more after repeat_after, and the answer to that is the call's answer."""
    prefix = f"rp{uuid.uuid4().hex[:6]}"

    async def second_only(n, reply, _sub) -> None:
        if n > 1:
            await reply()

    async with responder(nats_server.url, f"{prefix}.v1.verify", second_only) as seen:
        verified, client = await through(nats_server.url, prefix, lambda c: c.verify("pat_x"))
    assert verified.reason == "unknown" and client.repeated == 1 and seen["n"] == 2


async def test_no_responders_to_the_repeat_does_not_drop_the_first_send(nats_server):
    """The instance that took the first send leaves the queue group (draining) and answers
    late: the repeat finds no responders, and the client still takes the late answer."""
    prefix = f"rp{uuid.uuid4().hex[:6]}"

    leaving: list[asyncio.Task] = []

    async def leave_then_answer(n, reply, sub) -> None:
        async def leave() -> None:  # a task of its own: unsubscribing cancels the callback's
            await sub.unsubscribe()
            await asyncio.sleep(0.4)  # past the repeat, which finds nobody
            await reply()

        leaving.append(asyncio.ensure_future(leave()))

    async with responder(nats_server.url, f"{prefix}.v1.verify", leave_then_answer) as seen:
        verified, client = await through(nats_server.url, prefix, lambda c: c.verify("pat_x"))
    assert verified.reason == "unknown" and client.repeated == 1 and seen["n"] == 1


async def test_commands_without_a_command_id_and_log_replays_are_never_repeated(nats_server):
    """A command without a command_id, and the audit reads that replay the whole log, are sent
    once: the first would append twice, the second would double a long read's cost.  A
    command with a command_id is repeated: the repeat is a replay."""
    prefix = f"rp{uuid.uuid4().hex[:6]}"

    async def silent(n, reply, sub) -> None:
        return None

    client = await AuthbusClient.connect(nats_server.url, prefix, timeout=0.5, repeat_after=0.05, command_repeat_after=0.05)
    try:
        for subject, call, sent in (
            ("cmd.create_pat", lambda: client.command("create_pat", user_id="u", name="n"), 1),
            ("admin.audit_as_of", lambda: client.admin("audit_as_of", credential_id="c"), 1),
            ("cmd.create_pat", lambda: client.command("create_pat", user_id="u", name="n", command_id="again"), 2),
        ):
            async with responder(nats_server.url, f"{prefix}.v1.{subject}", silent) as seen:
                with pytest.raises(nats.errors.TimeoutError):
                    await call()
            assert seen["n"] == sent, subject
        assert client.repeated == 1
    finally:
        await client.close()


async def test_no_responders_fails_at_once_when_no_repeat_could_go_out(nats_server):
    """A command with a command_id to no instance at all: with a repeat due before the
    deadline the client waits for it (an instance may come up); with none that could go
    out before the deadline it says so at once, no_responders, instead of timing out."""
    prefix = f"rp{uuid.uuid4().hex[:6]}"
    hasty = await AuthbusClient.connect(nats_server.url, prefix, timeout=30.0, command_repeat_after=60.0)
    patient = await AuthbusClient.connect(nats_server.url, prefix, timeout=0.5, command_repeat_after=0.1)
    try:
        with pytest.raises(nats.errors.NoRespondersError):  # long before the 30 s deadline
            await asyncio.wait_for(hasty.command("create_pat", user_id="u", name="n", command_id="c"), 25)
        with pytest.raises(nats.errors.NoRespondersError):  # the repeat went out, and found nobody too
            await patient.command("create_pat", user_id="u", name="n", command_id="c")
        assert (hasty.repeated, patient.repeated) == (0, 1)
    finally:
        await hasty.close()
        await patient.close()
