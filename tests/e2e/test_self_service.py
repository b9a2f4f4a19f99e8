"""Self-service sign-up, where a tenant's policy turns it on (issue 18): open registration
with a username and password (blitz-js's signup), and a keypair that answers a challenge
becoming a user of its own (Textile Hub's), with no admin step first; both bounded per
caller and per tenant, on both stores."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.domain.decisions.signups import SIGNUP_ACTOR, keypair_username
from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.signup_limits import PER_CALLER
from tests.helpers import PASSWORD, make_org


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def refused(call, code: str, field: str | None = None) -> AuthbusError:
    with pytest.raises(AuthbusError) as error:
        await call
    assert (error.value.code, error.value.details.get("field")) == (code, field), error.value
    return error.value


async def test_open_registration_makes_a_logged_in_user_only_where_the_tenant_allows_it(client, instance):
    org = await make_org(client, "signup")
    await refused(client.register(org.tenant_id, "dave", PASSWORD), "forbidden", "tenant_id")  # off by default
    opened = await client.command("set_tenant_policy", tenant_id=org.tenant_id, open_registration=True, token=org.admin_key)

    pair = await client.register(org.tenant_id, "dave", PASSWORD, source="signup page")
    verified = await client.verify(pair.access_token)
    assert verified.valid and verified.principal.id == pair.user_id and verified.principal.roles == ["user"]
    user = (await client.admin("get_user", user_id=pair.user_id))["user"]
    assert (user["username"], user["has_password"], user["kind"]) == ("dave", True, "user")
    assert (await client.login(org.tenant_id, "dave", PASSWORD)).user_id == pair.user_id
    await refused(client.register(org.tenant_id, "DAVE", PASSWORD), "conflict", "username")

    logged = await client.admin(
        "audit_log", tenant_id=org.tenant_id, type="UserRegistered", since_position=opened["position"], limit=500
    )
    registered = [line for line in logged["items"] if line["aggregate_id"] == pair.user_id]
    assert [line["actor"] for line in registered] == [SIGNUP_ACTOR]
    assert "$argon2" not in str(registered)


async def test_sign_ups_are_bounded_per_connection_and_per_tenant(client, instance, nats_server):
    org = await make_org(client, "flood")
    await client.command("set_tenant_policy", tenant_id=org.tenant_id, open_registration=True)
    for n in range(PER_CALLER):
        await client.register(org.tenant_id, f"flood-{n}", PASSWORD)
    await refused(client.register(org.tenant_id, "one-too-many", PASSWORD), "rate_limited")
    # Another connection has its own bound; the tenant's (3 a minute here) binds them all.
    other = await make_org(client, "flood-tenant")
    await client.command("set_tenant_policy", tenant_id=other.tenant_id, open_registration=True, registrations_per_minute=3)
    fresh = await AuthbusClient.connect(nats_server.url, instance.prefix, "")
    try:
        for n in range(3):
            await fresh.register(other.tenant_id, f"member-{n}", PASSWORD)
        await refused(fresh.register(other.tenant_id, "fourth", PASSWORD), "rate_limited")
    finally:
        await fresh.close()


async def test_a_keypair_that_answers_becomes_a_user_bound_to_it(client, org):
    device = Ed25519PrivateKey.generate()
    public_key = b64(device.public_key().public_bytes_raw())

    async def answer(tenant_id: str) -> dict:
        challenge = await client.challenge(tenant_id, public_key)
        return {"challenge": challenge, "signature": b64(device.sign(challenge.encode()))}

    closed = await answer(org.tenant_id)
    await refused(client.call("challenge.answer", closed, token=""), "unauthenticated", "signature")  # off by default
    await client.command("set_tenant_policy", tenant_id=org.tenant_id, keypair_signup=True, token=org.admin_key)

    first = await answer(org.tenant_id)
    pair = await client.answer_challenge(first["challenge"], first["signature"], source="textile-like")
    user = (await client.admin("get_user", user_id=pair.user_id))["user"]
    assert (user["username"], user["roles"], user["has_password"]) == (keypair_username(public_key), ["user"], False)
    await refused(client.call("challenge.answer", first, token=""), "unauthenticated", "challenge")  # spent
    # The key now logs in as that user; it signs up no second one.
    again = await answer(org.tenant_id)
    assert (await client.answer_challenge(again["challenge"], again["signature"])).user_id == pair.user_id
    sessions = (await client.admin("list_sessions", user_id=pair.user_id))["items"]
    assert [s["method"] for s in sessions] == ["challenge", "challenge"]
    # Another tenant's policy is its own: the same key there is nobody.
    other = await make_org(client, "keypair-other")
    await refused(client.call("challenge.answer", await answer(other.tenant_id), token=""), "unauthenticated", "signature")
    assert str(uuid.UUID(pair.user_id)) == pair.user_id
