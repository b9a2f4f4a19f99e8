"""PATs, scopes and keys through the real NATS interface, on SQLite and PostgreSQL."""

import time
from datetime import datetime, timedelta

import pytest

from authbus.handlers.replies import Page, UserDetail, UserReply
from authbus.infra.client import AuthbusError, Credential, Scope
from tests.helpers import PASSWORD, grant_scopes

DOC_READ_ANY = {"domain": "docs", "entity_type": "document", "operation": "read", "entity_id": "*"}
DOC_UPDATE_42 = {"domain": "docs", "entity_type": "document", "operation": "update", "entity_id": "42"}
IMG_LIST_EVERYWHERE = {"domain": None, "entity_type": "image", "operation": "list", "entity_id": "*"}
DOC_DELETE_1 = {"domain": "docs", "entity_type": "document", "operation": "delete", "entity_id": "1"}


async def allowed(client, token, domain, entity_type, operation, entity_id, **extra):
    reply = await client.authorize(
        token, domain=domain, entity_type=entity_type, operation=operation, entity_id=entity_id, **extra
    )
    return reply.allowed


async def test_pat_lifecycle(client, org):
    await grant_scopes(client, org.tenant_id, org.user_id, [DOC_READ_ANY, DOC_UPDATE_42, IMG_LIST_EVERYWHERE, DOC_DELETE_1])
    created = await client.command(
        "create_pat",
        user_id=org.user_id,
        name="laptop",
        description="dev box",
        expires_in=3600,
        scopes=[DOC_READ_ANY, DOC_UPDATE_42, IMG_LIST_EVERYWHERE],
        token=org.admin_key,
    )
    pat_id, token = created["result"]["pat_id"], created["result"]["token"]
    assert token.startswith("pat_") and created["result"]["expires_at"].endswith("Z")

    verified = await client.verify(token)
    assert verified.valid is True
    assert verified.credential == Credential(id=pat_id, kind="pat", expires_at=created["result"]["expires_at"])
    assert verified.principal.id == org.user_id and verified.principal.roles[0] == "user" and len(verified.principal.roles) == 2
    assert sorted(map(repr, verified.scopes)) == sorted(
        repr(Scope(**s)) for s in [DOC_READ_ANY, DOC_UPDATE_42, IMG_LIST_EVERYWHERE]
    )

    assert await allowed(client, token, "docs", "document", "read", "7")  # wildcard
    assert await allowed(client, token, "docs", "document", "update", "42")  # exact
    assert not await allowed(client, token, "docs", "document", "update", "43")
    assert not await allowed(client, token, "wiki", "document", "read", "7")  # other domain
    assert await allowed(client, token, "anything", "image", "list", "9")  # domain null
    reply = await client.authorize(token, domain="docs", entity_type="document", operation="update", entity_id="42")
    assert reply.reason == "scope" and reply.matched_scope == Scope(**DOC_UPDATE_42)
    assert reply.principal.id == org.user_id

    added = await client.command("add_scope", pat_id=pat_id, scope=DOC_DELETE_1, token=org.admin_key)
    assert await allowed(client, token, "docs", "document", "delete", "1", min_position=added["position"])
    removed = await client.command("remove_scope", pat_id=pat_id, scope=DOC_READ_ANY, token=org.admin_key)
    assert not await allowed(client, token, "docs", "document", "read", "7", min_position=removed["position"])

    reset = await client.command("reset_pat_secret", pat_id=pat_id, token=org.admin_key)
    new_token = reset["result"]["token"]
    assert (await client.verify(token)).reason == "unknown"  # the old secret no longer matches
    assert (await client.verify(new_token)).valid is True

    revoked = await client.command("revoke_pat", pat_id=pat_id, reason="laptop lost", token=org.user_key)
    assert (await client.verify(new_token, min_position=revoked["position"])).reason == "revoked"
    detail = (await client.admin("get_pat", pat_id=pat_id, token=org.admin_key))["pat"]
    assert detail["status"] == "revoked" and detail["revoked_reason"] == "laptop lost"
    assert "token" not in detail and "secret_hash" not in detail

    with pytest.raises(AuthbusError) as error:
        await client.command("revoke_pat", pat_id=pat_id, token=org.admin_key)
    assert error.value.code == "conflict"


async def test_a_pat_made_as_supermqs_clients_make_them(client, org):
    """No user_id: the caller's own user (signed in: a key may not mint for its own user);
    a lifetime as a Go duration; a name of up to 254 characters."""
    await client.command("change_password", user_id=org.user_id, password=PASSWORD, token=org.admin_key)
    session = await client.login(org.tenant_id, "user-1", PASSWORD)
    name = "n" * 254
    created = await client.command("create_pat", name=name, expires_in="720h", token=session.access_token)
    pat = (await client.admin("get_pat", pat_id=created["result"]["pat_id"], token=org.user_key))["pat"]
    assert (pat["user_id"], pat["name"]) == (org.user_id, name)
    lifetime = datetime.fromisoformat(pat["expires_at"]) - datetime.fromisoformat(pat["created_at"])
    assert timedelta(days=30) <= lifetime <= timedelta(days=30, seconds=2)
    refused = client.command("create_pat", name="ci", expires_in="30d", token=session.access_token)
    with pytest.raises(AuthbusError) as error:
        await refused
    assert (error.value.code, error.value.details["field"]) == ("invalid_request", "expires_in")


async def test_scopes_are_added_and_removed_as_a_list_all_or_none(client, org):
    held = [{"domain": "docs", "entity_type": "doc", "operation": op, "entity_id": "*"} for op in ("read", "update")]
    not_held = {"domain": "docs", "entity_type": "doc", "operation": "delete", "entity_id": "*"}
    await grant_scopes(client, org.tenant_id, org.user_id, held)
    pat = (await client.command("create_pat", user_id=org.user_id, name="list", token=org.admin_key))["result"]
    with pytest.raises(AuthbusError) as refused:
        await client.command("add_scopes", pat_id=pat["pat_id"], scopes=[held[0], not_held], token=org.admin_key)
    assert (refused.value.code, refused.value.details["field"]) == ("forbidden", "scopes[1]")
    assert (await client.verify(pat["token"])).scopes == []  # nothing of it was added
    await client.command("add_scopes", pat_id=pat["pat_id"], scopes=[held[0], held[1], held[0]], token=org.admin_key)
    assert {s.operation for s in (await client.verify(pat["token"])).scopes} == {"read", "update"}
    with pytest.raises(AuthbusError) as refused:
        await client.command("remove_scopes", pat_id=pat["pat_id"], scopes=[held[1], not_held], token=org.admin_key)
    assert (refused.value.code, refused.value.details["field"]) == ("conflict", "scopes[1]")
    await client.command("remove_scopes", pat_id=pat["pat_id"], scopes=held, token=org.admin_key)
    assert (await client.verify(pat["token"])).scopes == []
    key = (await client.admin("get_key", key_id=org.user_key_id, token=org.user_key))["key"]
    assert (key["id"], key["kind"], key["user_id"]) == (org.user_key_id, "api_key", org.user_id)
    with pytest.raises(AuthbusError) as refused:
        await client.admin("get_key", key_id=pat["pat_id"], token=org.admin_key)  # a PAT is no key
    assert (refused.value.code, refused.value.details["field"]) == ("not_found", "key_id")


async def test_api_keys_act_as_their_owner_unless_scoped(client, org):
    # The admin's unscoped key acts with the admin role; the user's with nothing but its own scopes (none).
    assert await allowed(client, org.admin_key, "docs", "document", "delete", "1")
    assert not await allowed(client, org.user_key, "docs", "document", "read", "1")

    await grant_scopes(client, org.tenant_id, org.user_id, [DOC_READ_ANY])
    scoped = await client.command("issue_key", user_id=org.user_id, kind="api_key", scopes=[DOC_READ_ANY], token=org.admin_key)
    key_id, token = scoped["result"]["key_id"], scoped["result"]["token"]
    assert token.startswith("key_") and scoped["result"]["expires_at"] is None
    assert await allowed(client, token, "docs", "document", "read", "5")
    assert not await allowed(client, token, "docs", "document", "update", "5")

    listed = await client.admin("list_keys", user_id=org.user_id, token=org.admin_key)
    assert key_id in [item["id"] for item in listed["items"]]

    revoked = await client.command("revoke_key", key_id=key_id, token=org.admin_key)
    assert (await client.verify(token, min_position=revoked["position"])).reason == "revoked"


async def test_recovery_and_invitation_keys_verify_but_are_no_bearer(client, org):
    for kind, prefix in (("recovery", "rec_"), ("invitation", "inv_")):
        issued = await client.command("issue_key", user_id=org.user_id, kind=kind, token=org.admin_key)
        token = issued["result"]["token"]
        assert token.startswith(prefix) and issued["result"]["expires_at"] is not None
        assert (await client.verify(token)).credential.kind == kind
        with pytest.raises(AuthbusError) as error:
            await client.admin("get_user", user_id=org.user_id, token=token)
        assert error.value.code == "unauthenticated"
    with pytest.raises(AuthbusError) as error:
        await client.command("issue_key", user_id=org.user_id, kind="recovery", expires_in=2 * 86400, token=org.admin_key)
    assert (error.value.code, error.value.details["field"]) == ("invalid_request", "expires_in")


async def test_expired_credentials_stop_verifying(client, org, instance, monkeypatch):
    issued = await client.command("issue_key", user_id=org.user_id, kind="api_key", expires_in=60, token=org.admin_key)
    token = issued["result"]["token"]
    assert (await client.verify(token)).valid is True
    monkeypatch.setattr(instance.node, "now", lambda: time.time() + 61)  # a minute on, not waited for
    assert (await client.verify(token)).reason == "expired"


async def test_disabling_a_user_or_tenant_stops_its_credentials(client, org):
    disabled = await client.command("disable_user", user_id=org.user_id, reason="left", token=org.admin_key)
    assert (await client.verify(org.user_key, min_position=disabled["position"])).reason == "disabled"
    enabled = await client.command("enable_user", user_id=org.user_id, token=org.admin_key)
    assert (await client.verify(org.user_key, min_position=enabled["position"])).valid is True

    disabled = await client.command("disable_tenant", tenant_id=org.tenant_id, reason="unpaid")
    for key in (org.admin_key, org.user_key):
        assert (await client.verify(key, min_position=disabled["position"])).reason == "disabled"
    await client.command("enable_tenant", tenant_id=org.tenant_id)
    assert (await client.verify(org.admin_key)).valid is True


async def test_admin_reads_page_through_users(client, org):
    for n in range(3):
        await client.command("register_user", tenant_id=org.tenant_id, username=f"member-{n}", token=org.admin_key)
    seen, after = [], None
    while True:
        page = await client.admin_as(
            Page[UserDetail], "list_users", tenant_id=org.tenant_id, limit=2, token=org.admin_key, after=after
        )
        assert len(page.items) <= 2 and page.position == client.position
        seen += [item.username for item in page.items]
        after = page.next
        if after is None:
            break
    assert seen == ["admin-1", "user-1", "member-0", "member-1", "member-2"]
    user = (await client.admin_as(UserReply, "get_user", user_id=org.user_id, token=org.user_key)).user
    assert user.username == "user-1" and user.tenant_id == org.tenant_id
    with pytest.raises(AuthbusError) as error:
        await client.command("register_user", tenant_id=org.tenant_id, username="MEMBER-0", token=org.admin_key)
    assert (error.value.code, error.value.details["field"]) == ("conflict", "username")


async def test_passwords_are_changed_with_the_old_one(client, org):
    await client.command("change_password", user_id=org.user_id, password="correct horse battery", token=org.admin_key)
    login = {"tenant_id": org.tenant_id, "username": "user-1", "password": "correct horse battery"}
    access = (await client.call("login", login, token=""))["access_token"]
    with pytest.raises(AuthbusError) as error:
        await client.command(
            "change_password", user_id=org.user_id, password="new password 123", old_password="wrong one!", token=access
        )
    assert (error.value.code, error.value.details["field"]) == ("forbidden", "old_password")
    await client.command(
        "change_password", user_id=org.user_id, password="new password 123", old_password="correct horse battery", token=access
    )
    assert (await client.admin("get_user", user_id=org.user_id, token=org.user_key))["user"]["has_password"] is True


async def test_a_recovery_key_sets_a_password_once(client, org, instance):
    issued = await client.command("issue_key", user_id=org.user_id, kind="recovery", token=org.admin_key)
    key = issued["result"]["token"]
    redeemed = await client.call("redeem", {"token": key, "password": "a brand new secret"}, token="")
    assert redeemed["result"] == {"user_id": org.user_id}
    assert (await client.verify(key, min_position=redeemed["position"])).reason == "revoked"
    head = instance.node.store.recorder.max_notification_id()
    with pytest.raises(AuthbusError) as error:
        await client.call("redeem", {"token": key, "password": "a second new secret"}, token="")
    assert (error.value.code, error.value.details["field"]) == ("unauthenticated", "token")
    with pytest.raises(AuthbusError) as error:  # an API key is no recovery key
        await client.call("redeem", {"token": org.user_key, "password": "a third new secret"}, token="")
    assert error.value.code == "unauthenticated"
    assert instance.node.store.recorder.max_notification_id() == head
    assert (await client.admin("get_user", user_id=org.user_id, token=org.admin_key))["user"]["has_password"] is True


async def test_a_redeem_retried_with_its_command_id_returns_the_first_reply(client, org):
    key = (await client.command("issue_key", user_id=org.user_id, kind="invitation", token=org.admin_key))["result"]
    body = {"token": key["token"], "password": "welcome aboard!", "command_id": "accept-1"}
    first = await client.call("redeem", body, token="")
    assert (await client.call("redeem", body, token=""))["result"] == first["result"]
    with pytest.raises(AuthbusError) as error:
        await client.command("revoke_key", key_id=key["key_id"], token=org.admin_key)
    assert error.value.code == "conflict"
