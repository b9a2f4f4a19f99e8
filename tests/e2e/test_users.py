"""Users as an admin tool changes and finds them (issue 18): rename with the username claim
moving, a profile (display name, email, metadata) that access tokens carry, and search by
username prefix, role and status, on both stores."""

from __future__ import annotations

import jwt
import pytest

from authbus.handlers.replies import Page, UserDetail, UserReply
from authbus.infra.client import AuthbusError
from tests.helpers import PASSWORD, make_org


async def refused(call, code: str, field: str | None = None) -> AuthbusError:
    with pytest.raises(AuthbusError) as error:
        await call
    assert (error.value.code, error.value.details.get("field")) == (code, field), error.value
    return error.value


async def user(client, user_id: str) -> UserDetail:
    return (await client.admin_as(UserReply, "get_user", user_id=user_id)).user


async def test_a_rename_moves_the_username_and_a_profile_reaches_the_access_token(client):
    org = await make_org(client, "people")
    await client.command("change_password", user_id=org.user_id, password=PASSWORD)
    await client.command("update_user", user_id=org.user_id, username="ada", token=org.admin_key)
    assert (await user(client, org.user_id)).username == "ada"
    await refused(client.login(org.tenant_id, "user-1", PASSWORD), "unauthenticated", "password")  # the old name is gone
    # ...and free: another user may take it; the new one is taken in any case.
    await client.command("register_user", tenant_id=org.tenant_id, username="user-1")
    await refused(client.command("update_user", user_id=org.admin_id, username="ADA"), "conflict", "username")

    # The user changes its own profile; what it leaves out stays.
    profile = {"display_name": "Ada Lovelace", "email": "ada@example.com", "metadata": {"team": "engines"}}
    await client.command("update_user", user_id=org.user_id, **profile, token=org.user_key)
    await client.command("update_user", user_id=org.user_id, email="", token=org.user_key)
    shown = await user(client, org.user_id)
    assert (shown.display_name, shown.email, shown.metadata) == ("Ada Lovelace", "", {"team": "engines"})
    claims = jwt.decode((await client.login(org.tenant_id, "ADA", PASSWORD)).access_token, options={"verify_signature": False})
    assert (claims["preferred_username"], claims["name"]) == ("ada", "Ada Lovelace")

    # Nobody else's: a plain user may not touch another user; another tenant's admin finds none.
    await refused(client.command("update_user", user_id=org.admin_id, display_name="x", token=org.user_key), "forbidden")
    other = await make_org(client, "people-other")
    await refused(
        client.command("update_user", user_id=org.user_id, display_name="x", token=other.admin_key), "not_found", "user_id"
    )


async def test_search_finds_users_by_prefix_role_and_status(client):
    org = await make_org(client, "search")
    for name in ("Ada", "adam", "bob"):
        await client.command("register_user", tenant_id=org.tenant_id, username=name)
    await client.command("create_role", tenant_id=org.tenant_id, name="appAdmin")
    ada = (await client.admin("search_users", tenant_id=org.tenant_id, username_prefix="ada"))["items"]
    assert [u["username"] for u in ada] == ["Ada", "adam"]
    await client.command("grant_role", user_id=ada[1]["id"], role="appAdmin")
    await client.command("disable_user", user_id=ada[0]["id"])

    async def search(**filters) -> list[str]:
        page = await client.admin_as(Page[UserDetail], "search_users", token=org.admin_key, **filters)
        return [u.username for u in page.items]

    assert await search(role="APPADMIN") == ["adam"]
    assert await search(status="disabled") == ["Ada"]
    assert await search(username_prefix="a", status="active") == ["admin-1", "adam"]
    assert await search(username_prefix="zz") == []
    # Paged like every listing: two at a time reaches every user once.
    first = await client.admin("search_users", tenant_id=org.tenant_id, limit=2)
    second = await client.admin("search_users", tenant_id=org.tenant_id, limit=2, after=first["next"])
    assert (
        len(first["items"]) == 2
        and first["next"]
        and {u["id"] for u in first["items"]}.isdisjoint({u["id"] for u in second["items"]})
    )
    await refused(client.admin("search_users", tenant_id=org.tenant_id, token=org.user_key), "forbidden")
