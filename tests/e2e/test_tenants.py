"""Tenants as an admin tool reads and changes them (issue 18): get, list, rename, tags and
metadata, policy, and who created and last changed each, on both stores."""

import uuid
from datetime import datetime

import jwt
import msgspec
import pytest

from authbus.domain.tenant import DEFAULT_POLICY, SYSTEM_TENANT_ID
from authbus.handlers.replies import TenantReply
from authbus.infra.client import AuthbusError
from tests.helpers import PASSWORD, make_org


async def refused(call, code: str, field: str | None = None) -> AuthbusError:
    with pytest.raises(AuthbusError) as error:
        await call
    assert (error.value.code, error.value.details.get("field")) == (code, field), error.value
    return error.value


async def test_a_rename_moves_the_name_and_says_who_did_it(client):
    org = await make_org(client, "alpha")
    old = (await client.admin_as(TenantReply, "get_tenant", tenant_id=org.tenant_id)).tenant
    new_name = f"beta-{uuid.uuid4().hex}"
    await client.command("rename_tenant", tenant_id=org.tenant_id, name=new_name, token=org.admin_key)
    renamed = (await client.admin_as(TenantReply, "get_tenant", token=org.admin_key)).tenant  # its own, by default
    assert (renamed.id, renamed.name, renamed.created_at, renamed.created_by) == (org.tenant_id, new_name, *old_creation(old))
    assert renamed.updated_by == org.admin_id and renamed.updated_at >= old.updated_at
    # The old name is free for a new tenant; the new one is taken, in any case.
    await client.command("create_tenant", name=old.name)
    await refused(client.command("create_tenant", name=new_name.upper()), "conflict", "name")
    # Another spelling of its own name is only that: no claim moves.
    await client.command("rename_tenant", tenant_id=org.tenant_id, name=new_name.upper(), token=org.admin_key)
    await refused(client.command("rename_tenant", tenant_id=org.tenant_id, name=new_name.upper()), "conflict", "name")
    await refused(client.command("rename_tenant", tenant_id=str(SYSTEM_TENANT_ID), name="sys"), "forbidden", "tenant_id")
    await refused(client.command("rename_tenant", tenant_id=org.tenant_id, name="x-y", token=org.user_key), "forbidden")


def old_creation(old) -> tuple[str, str]:
    return old.created_at, old.created_by


async def test_tags_and_metadata_replace_what_was_there(client):
    org = await make_org(client, "tags")
    first = await client.command("update_tenant", tenant_id=org.tenant_id, tags=["eu", "pro", "eu"], metadata={"plan": "pro"})
    tenant = (await client.admin("get_tenant", tenant_id=org.tenant_id))["tenant"]
    assert (tenant["tags"], tenant["metadata"]) == (["eu", "pro"], {"plan": "pro"})
    await client.command("update_tenant", tenant_id=org.tenant_id, tags=["us"], token=org.admin_key)
    tenant = (await client.admin("get_tenant", tenant_id=org.tenant_id))["tenant"]
    assert (tenant["tags"], tenant["metadata"]) == (["us"], {"plan": "pro"})  # metadata left out: kept
    await refused(client.command("update_tenant", tenant_id=org.tenant_id), "invalid_request", "tags")
    await refused(client.command("update_tenant", tenant_id=org.tenant_id, metadata={"plan": 1}), "invalid_request", "metadata")
    since = first["position"]  # a page scans a stretch of the log: from here, it holds both
    logged = await client.admin("audit_log", tenant_id=org.tenant_id, type="TenantUpdated", since_position=since, limit=500)
    assert [line["data"]["tags"] for line in logged["items"]] == [["eu", "pro"], ["us"]]


async def test_root_lists_every_tenant_an_admin_only_its_own(client):
    a, b = await make_org(client, "list-a"), await make_org(client, "list-b")
    every = []
    after = None
    while True:
        page = await client.admin("list_tenants", limit=500, **({"after": after} if after else {}))
        every += [t["id"] for t in page["items"]]
        if (after := page["next"]) is None:
            break
    assert {str(SYSTEM_TENANT_ID), a.tenant_id, b.tenant_id} <= set(every)
    for after in (None, b.tenant_id):  # another tenant's id as the cursor shows nothing of it
        mine = await client.admin("list_tenants", token=a.admin_key, **({"after": after} if after else {}))
        assert [t["id"] for t in mine["items"]] in ([a.tenant_id], [])
    await refused(client.admin("list_tenants", token=a.user_key), "forbidden")
    await refused(client.admin("get_tenant", tenant_id=b.tenant_id, token=a.admin_key), "not_found", "tenant_id")
    await refused(client.admin("get_tenant", token=a.user_key), "forbidden")


async def test_a_tenant_policy_sets_its_tokens_lifetimes_and_audience(client):
    org = await make_org(client, "policy")
    tenant = (await client.admin_as(TenantReply, "get_tenant", tenant_id=org.tenant_id)).tenant
    assert msgspec.structs.asdict(tenant.policy) == DEFAULT_POLICY  # self-service off, the deployment's terms
    await client.command("change_password", user_id=org.user_id, password=PASSWORD)
    policy = {"access_token_seconds": 300, "session_seconds": 3600, "audience": "https://api.example.com"}
    await client.command("set_tenant_policy", tenant_id=org.tenant_id, **policy, token=org.admin_key)
    tenant = (await client.admin_as(TenantReply, "get_tenant", tenant_id=org.tenant_id)).tenant
    assert msgspec.structs.asdict(tenant.policy) == {**DEFAULT_POLICY, **policy} and tenant.updated_by == org.admin_id

    pair = await client.login(org.tenant_id, "user-1", PASSWORD)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert (pair.expires_in, claims["exp"] - claims["iat"], claims["aud"]) == (300, 300, policy["audience"])
    (session,) = (await client.admin("list_sessions", user_id=org.user_id))["items"]
    assert rfc3339_seconds(session["expires_at"]) - rfc3339_seconds(session["created_at"]) in (3600, 3601)
    refreshed = jwt.decode((await client.refresh(pair.refresh_token)).access_token, options={"verify_signature": False})
    assert (refreshed["exp"] - refreshed["iat"], refreshed["aud"]) == (300, policy["audience"])

    # The whole policy each time: what is left out is the default again.
    await client.command("set_tenant_policy", tenant_id=org.tenant_id, open_registration=True)
    tenant = (await client.admin_as(TenantReply, "get_tenant", tenant_id=org.tenant_id)).tenant
    assert msgspec.structs.asdict(tenant.policy) == {**DEFAULT_POLICY, "open_registration": True}
    assert (await client.login(org.tenant_id, "user-1", PASSWORD)).expires_in == 15 * 60

    await refused(client.command("set_tenant_policy", tenant_id=org.tenant_id, token=org.user_key), "forbidden")
    other = await make_org(client, "policy-other")
    await refused(client.command("set_tenant_policy", tenant_id=org.tenant_id, token=other.admin_key), "not_found", "tenant_id")
    await refused(
        client.command("set_tenant_policy", tenant_id=org.tenant_id, access_token_seconds=3600, session_seconds=600),
        "invalid_request",
        "session_seconds",
    )


def rfc3339_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
