"""Tenants as an admin tool reads and changes them (issue 18): get, list, rename, tags and
metadata, policy, the order of their roles and authorize's min_role, and who created
and last changed each, on both stores."""

import uuid
from datetime import datetime

import jwt
import msgspec
import pytest

from authbus.domain.tenant import DEFAULT_POLICY, SYSTEM_TENANT_ID
from authbus.handlers.replies import TenantReply
from authbus.infra.client import AuthbusError
from tests.e2e.test_bad_input import appended
from tests.helpers import PASSWORD, make_org, store_position


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


DOC_READ = {"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}
AUSTACK = ["user", "appAdmin", "admin", "root"]


async def test_roles_in_an_order_answer_min_role(client, instance):
    """austack's ``user < appAdmin < admin < root``: set by the tenant's admin, shown by
    get_tenant, asked through authorize's min_role; a deleted role drops out."""
    org = await make_org(client, "austack")
    app_admin = await client.command("create_role", name="appAdmin", scopes=[DOC_READ], token=org.admin_key)
    alice = await client.command("register_user", tenant_id=org.tenant_id, username="alice", roles=["user", "appAdmin"])
    alice_key = (await client.command("issue_key", user_id=alice["result"]["user_id"], kind="api_key"))["result"]["token"]
    before = store_position(instance)
    await client.command("set_role_order", order=["USER", "appadmin", "admin"], token=org.admin_key)  # root implied
    assert appended(instance, before) == ["RoleOrderSet"]
    tenant = (await client.admin_as(TenantReply, "get_tenant", token=org.admin_key)).tenant
    assert (tenant.role_order, tenant.updated_by) == (AUSTACK, org.admin_id)

    async def rank(token: str, min_role: str, **more) -> tuple[bool, str]:
        decision = await client.authorize(token, min_role=min_role, **more)
        return decision.allowed, decision.reason

    assert await rank(alice_key, "appAdmin") == (True, "role:appAdmin")
    assert await rank(alice_key, "admin") == (False, "role_too_low")
    assert await rank(org.user_key, "appAdmin") == (False, "role_too_low")
    assert await rank(org.admin_key, "appAdmin") == (True, "role:admin")
    assert await rank(org.admin_key, "nobody") == (False, "unknown_role")
    for wanted in AUSTACK:
        assert await rank(instance.root_token, wanted, tenant_id=org.tenant_id) == (True, "role:root"), wanted
    # A scope and a rank asked together: both must hold.
    doc = {"entity_type": "doc", "operation": "read", "entity_id": "7"}
    assert await rank(alice_key, "appAdmin", **doc) == (True, "role:appAdmin")
    assert await rank(alice_key, "appAdmin", **{**doc, "operation": "delete"}) == (False, "no_matching_scope")
    assert await rank(org.admin_key, "appAdmin", **doc, tenant_id=str(SYSTEM_TENANT_ID)) == (False, "other_tenant")
    # A PAT, however its owner ranks, is narrower than its owner: it has no rank.
    pat = await client.command("create_pat", user_id=org.admin_id, name="ci", scopes=[DOC_READ])
    assert await rank(pat["result"]["token"], "user") == (False, "scoped_credential")
    # A deleted role leaves the order; its name back is another role, not ranked.
    await client.command("delete_role", role_id=app_admin["result"]["role_id"], token=org.admin_key)
    tenant = (await client.admin_as(TenantReply, "get_tenant", tenant_id=org.tenant_id)).tenant
    assert tenant.role_order == ["user", "admin", "root"]
    assert await rank(alice_key, "appAdmin") == (False, "unknown_role")
    await client.command("create_role", name="appAdmin", token=org.admin_key)
    assert await rank(org.admin_key, "appAdmin") == (False, "unranked_role")
    logged = await client.admin("audit_log", tenant_id=org.tenant_id, type="RoleOrderSet", since_position=before, limit=500)
    assert [(line["aggregate"], line["data"]["names"]) for line in logged["items"]] == [("tenant", AUSTACK[:3])]


async def test_a_bad_role_order_appends_nothing_and_names_its_place(client, instance):
    org, other = await make_org(client, "order-a"), await make_org(client, "order-b")
    await client.command("create_role", name="appAdmin", token=org.admin_key)
    before = store_position(instance)
    for order, code, field in (
        (["user", "appAdmin", "APPADMIN"], "invalid_request", "order[2]"),
        (["user", "ghost"], "not_found", "order[1]"),
        (["admin", "user"], "invalid_request", "order[1]"),
        (["user", "root", "admin"], "invalid_request", "order[1]"),
        ([], "invalid_request", "order"),
    ):
        await refused(client.command("set_role_order", order=order, token=org.admin_key), code, field)
    await refused(client.command("set_role_order", order=["user"], token=org.user_key), "forbidden")
    await refused(
        client.command("set_role_order", tenant_id=org.tenant_id, order=["user"], token=other.admin_key), "forbidden", "tenant_id"
    )
    # another tenant's role is no role of this one
    await refused(client.command("set_role_order", order=["user", "appAdmin"], token=other.admin_key), "not_found", "order[1]")
    assert store_position(instance) == before
    # The question must be whole: a scope triple, min_role, or both.
    await refused(client.authorize(org.admin_key), "invalid_request", "entity_type")
    await refused(
        client.authorize(org.admin_key, entity_type="doc", entity_id="1", min_role="user"), "invalid_request", "operation"
    )
