"""Who may do what: roles, escalation and tenant isolation, through real NATS."""

import uuid

import pytest

from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.infra.client import AuthbusError
from tests.helpers import make_org

AUTHBUS_PAT_DELETE = {"domain": "authbus", "entity_type": "pat", "operation": "delete", "entity_id": "*"}


async def refused(call, code: str, field: str | None = None) -> None:
    with pytest.raises(AuthbusError) as error:
        await call
    assert error.value.code == code, error.value
    if field is not None:
        assert error.value.details.get("field") == field


async def test_plain_users_cannot_administer(client, org):
    await refused(client.command("register_user", tenant_id=org.tenant_id, username="x", token=org.user_key), "forbidden")
    await refused(client.command("disable_user", user_id=org.admin_id, token=org.user_key), "forbidden")
    await refused(client.command("grant_role", user_id=org.user_id, role="admin", token=org.user_key), "forbidden")
    await refused(client.command("create_tenant", name="mine", token=org.admin_key), "forbidden")
    await refused(client.admin("list_users", tenant_id=org.tenant_id, token=org.user_key), "forbidden")
    await refused(client.admin("get_user", user_id=org.admin_id, token=org.user_key), "forbidden")


async def test_no_self_escalation(client, org):
    await refused(client.command("grant_role", user_id=org.admin_id, role="auditor", token=org.admin_key), "forbidden", "user_id")
    await refused(client.command("grant_role", user_id=org.user_id, role="root", token=org.admin_key), "forbidden", "role")
    await refused(
        client.command("register_user", tenant_id=org.tenant_id, username="r", roles=["root"], token=org.admin_key),
        "forbidden",
        "roles",
    )
    # An API key cannot mint credentials for its own principal: a leaked key cannot perpetuate itself.
    await refused(client.command("create_pat", user_id=org.user_id, name="mine", token=org.user_key), "forbidden")
    await refused(client.command("issue_key", user_id=org.admin_id, kind="api_key", token=org.admin_key), "forbidden")
    await client.command("grant_role", user_id=org.user_id, role="auditor", token=org.admin_key)


async def test_a_pat_never_mints_and_acts_only_within_its_scopes(client, org):
    admin_pat = (await client.command("create_pat", user_id=org.admin_id, name="admin pat", scopes=[AUTHBUS_PAT_DELETE]))[
        "result"
    ]["token"]
    user_pat = await client.command("create_pat", user_id=org.user_id, name="victim", token=org.admin_key)
    await refused(client.command("create_pat", user_id=org.user_id, name="more", token=admin_pat), "forbidden")
    await refused(client.command("issue_key", user_id=org.user_id, kind="api_key", token=admin_pat), "forbidden")
    await refused(client.command("register_user", tenant_id=org.tenant_id, username="y", token=admin_pat), "forbidden")
    # Its one scope (authbus/pat:delete:*) lets it revoke PATs its owner may revoke.
    await client.command("revoke_pat", pat_id=user_pat["result"]["pat_id"], token=admin_pat)


async def test_tenants_are_isolated(client, org):
    other = await make_org(client)
    other_pat = await client.command("create_pat", user_id=other.user_id, name="theirs", token=other.admin_key)
    other_pat_id = other_pat["result"]["pat_id"]
    other_key_id = (await client.admin("list_keys", user_id=other.user_id, token=other.admin_key))["items"][0]["id"]
    a = org.admin_key
    # Another tenant's resources answer exactly like ids that do not exist.
    for call, field in [
        (client.admin("get_user", user_id=other.user_id, token=a), "user_id"),
        (client.admin("list_users", tenant_id=other.tenant_id, token=a), "tenant_id"),
        (client.admin("get_pat", pat_id=other_pat_id, token=a), "pat_id"),
        (client.admin("list_pats", user_id=other.user_id, token=a), "user_id"),
        (client.admin("list_keys", user_id=other.user_id, token=a), "user_id"),
        (client.command("create_pat", user_id=other.user_id, name="x", token=a), "user_id"),
        (client.command("issue_key", user_id=other.user_id, kind="api_key", token=a), "user_id"),
        (client.command("disable_user", user_id=other.user_id, token=a), "user_id"),
        (client.command("grant_role", user_id=other.user_id, role="admin", token=a), "user_id"),
        (client.command("change_password", user_id=other.user_id, password="hijacked!!", token=a), "user_id"),
        (client.command("revoke_pat", pat_id=other_pat_id, token=a), "pat_id"),
        (
            client.command(
                "add_scope", pat_id=other_pat_id, scope={"entity_type": "a", "operation": "read", "entity_id": "*"}, token=a
            ),
            "pat_id",
        ),
        (client.command("reset_pat_secret", pat_id=other_pat_id, token=a), "pat_id"),
        (client.command("revoke_key", key_id=other_key_id, token=a), "key_id"),
    ]:
        await refused(call, "not_found", field)
    await refused(client.command("register_user", tenant_id=other.tenant_id, username="spy", token=a), "forbidden", "tenant_id")
    await refused(client.command("disable_tenant", tenant_id=other.tenant_id, token=a), "forbidden")
    assert (await client.verify(other_pat["result"]["token"])).valid is True


async def test_root_and_its_credentials_are_out_of_reach_of_system_admins(client):
    system = str(SYSTEM_TENANT_ID)
    root_id = next(u["id"] for u in (await client.admin("list_users", tenant_id=system))["items"] if u["username"] == "root")
    admin = await client.command("register_user", tenant_id=system, username=f"ops-{uuid.uuid4().hex[:8]}", roles=["admin"])
    admin_key = (await client.command("issue_key", user_id=admin["result"]["user_id"], kind="api_key"))["result"]["token"]
    root_key_id = (await client.admin("list_keys", user_id=root_id))["items"][0]["id"]
    for call in (
        client.command("issue_key", user_id=root_id, kind="api_key", token=admin_key),
        client.command("create_pat", user_id=root_id, name="mine now", token=admin_key),
        client.command("change_password", user_id=root_id, password="taken over!", token=admin_key),
        client.command("revoke_key", key_id=root_key_id, token=admin_key),
        client.command("disable_user", user_id=root_id, token=admin_key),
    ):
        await refused(call, "forbidden")


async def test_recovery_keys_authorize_nothing_and_tenants_can_be_checked(client, org):
    recovery = (await client.command("issue_key", user_id=org.admin_id, kind="recovery"))["result"]["token"]
    reply = await client.authorize(recovery, entity_type="document", operation="read", entity_id="1")
    assert (reply.allowed, reply.reason) == (False, "not_a_bearer_credential")

    other = await make_org(client)
    reply = await client.authorize(
        org.admin_key, tenant_id=other.tenant_id, entity_type="document", operation="read", entity_id="1"
    )
    assert (reply.allowed, reply.reason) == (False, "other_tenant")
    reply = await client.authorize(
        org.admin_key, tenant_id=org.tenant_id, entity_type="document", operation="read", entity_id="1"
    )
    assert (reply.allowed, reply.reason) == (True, "role:admin")
    # An unscoped key says so (null: acts with its owner's roles); a key issued with [] holds nothing.
    assert (await client.verify(org.admin_key)).scopes is None
    empty = (await client.command("issue_key", user_id=org.user_id, kind="api_key", scopes=[], token=org.admin_key))["result"][
        "token"
    ]
    assert (await client.verify(empty)).scopes == []


async def test_no_credential_changes_its_own_owners_login_factors(client, org):
    """Else a scoped PAT or an API key could set a password, log in, and get an unscoped token."""
    scoped = await client.command(
        "create_pat",
        user_id=org.user_id,
        name="narrow",
        token=org.admin_key,
        scopes=[{"domain": "authbus", "entity_type": "user", "operation": "update", "entity_id": "*"}],
    )
    public_key = "A" * 42 + "A"
    for token in (scoped["result"]["token"], org.user_key):
        await refused(
            client.command("change_password", user_id=org.user_id, password="a fresh password", token=token), "forbidden"
        )
        await refused(client.command("register_public_key", user_id=org.user_id, public_key=public_key, token=token), "forbidden")
    await client.command("change_password", user_id=org.user_id, password="a fresh password", token=org.admin_key)
