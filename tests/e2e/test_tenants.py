"""Tenants as an admin tool reads and changes them (issue 18): get, list, rename, tags and
metadata, and who created and last changed each, on both stores."""

import uuid

import pytest

from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.handlers.replies import TenantReply
from authbus.infra.client import AuthbusError
from tests.helpers import make_org


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
