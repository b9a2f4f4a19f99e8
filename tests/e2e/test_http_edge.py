"""The HTTP edge (issue 19): a stock JWT library verifies a login's access token through
OIDC discovery, RFC 7662 introspection answers for every credential kind, and a gateway's
forward-auth request gets each outcome with the header that says why; both stores."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import jwt
import pytest

from authbus.infra.http_server import HttpEdge
from tests.helpers import PASSWORD, TenantWorld, make_tenant, secret_of


@pytest.fixture
async def edge(instance):
    served = await HttpEdge(instance.node, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{served.port}"
    finally:
        await served.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def assert_no_secret(world: TenantWorld, *texts: str) -> None:
    for secret in (
        *(secret_of(t) for t in world.tokens),
        *([world.access_token.rsplit(".", 1)[1]] if world.access_token else []),
    ):
        assert not any(secret in text for text in texts)


async def test_a_jwt_library_verifies_an_access_token_through_discovery(client, edge, http):
    world = await make_tenant(client, "oidc", login=True)
    async with http.get(f"{edge}/.well-known/openid-configuration") as reply:
        assert reply.status == 200 and "max-age" in reply.headers["Cache-Control"]
        discovered = await reply.json()
    assert discovered["issuer"] == "authbus" and discovered["introspection_endpoint"] == f"{edge}/oauth2/introspect"

    # PyJWT's own client fetches the keys (urllib, blocking: off the loop that serves them).
    keys = jwt.PyJWKClient(discovered["jwks_uri"])
    signing = await asyncio.to_thread(keys.get_signing_key_from_jwt, world.access_token)
    claims = jwt.decode(world.access_token, signing, algorithms=["EdDSA", "ES256", "RS256"], audience="authbus", issuer="authbus")
    assert claims["sub"] == world.user_id

    # A tenant with a key of its own: its tokens verify through its own discovery document.
    await client.command("create_signing_key", tenant_id=world.tenant_id, alg="ES256")
    fresh = await client.login(world.tenant_id, "user-1", PASSWORD)
    async with http.get(f"{edge}/tenants/{world.tenant_id}/.well-known/openid-configuration") as reply:
        per_tenant = await reply.json()
    signing = await asyncio.to_thread(jwt.PyJWKClient(per_tenant["jwks_uri"]).get_signing_key_from_jwt, fresh.access_token)
    assert jwt.decode(fresh.access_token, signing, algorithms=["ES256"], audience="authbus")["tnd"] == world.tenant_id
    with pytest.raises(jwt.PyJWKClientError):  # the all-tenants set holds the system's keys only
        await asyncio.to_thread(jwt.PyJWKClient(discovered["jwks_uri"]).get_signing_key_from_jwt, fresh.access_token)

    # Asked again with its ETag, the key set answers 304: cheap to keep fresh.
    async with http.get(per_tenant["jwks_uri"]) as reply:
        etag = reply.headers["ETag"]
        assert reply.content_type == "application/jwk-set+json" and "must-revalidate" in reply.headers["Cache-Control"]
    async with http.get(per_tenant["jwks_uri"], headers={"If-None-Match": etag}) as reply:
        assert reply.status == 304
    async with http.get(f"{edge}/tenants/00000000-0000-4000-8000-000000000000/.well-known/jwks.json") as reply:
        assert reply.status == 404 and reply.content_type == "application/problem+json"


async def introspect(http, edge: str, token: str, caller: str | None, **more) -> tuple[int, dict, dict]:
    headers = {"Authorization": f"Bearer {caller}"} if caller else {}
    async with http.post(f"{edge}/oauth2/introspect", data={"token": token, **more}, headers=headers) as reply:
        return reply.status, await reply.json(content_type=None), dict(reply.headers)


async def test_introspection_answers_for_every_kind_and_only_within_the_callers_tenant(client, instance, edge, http):
    world = await make_tenant(client, "introspect", login=True)
    caller = world.admin_token
    status, pat, _ = await introspect(http, edge, world.pat_token, caller)
    assert (
        status == 200 and pat["active"] and (pat["token_type"], pat["sub"], pat["scope"]) == ("pat", world.user_id, "doc:read:*")
    )
    assert pat["username"] == "user-1" and pat["tnd"] == world.tenant_id and "exp" in pat
    _, access, _ = await introspect(http, edge, world.access_token, caller)
    assert access["active"] and access["token_type"] == "access_token" and access["sub"] == world.user_id
    _, key, _ = await introspect(http, edge, world.key_token, caller)
    assert key["active"] and "scope" not in key  # unscoped: it acts as its owner
    for inactive in (world.recovery_token, "nope", world.pat_token[:-2] + "AA"):
        assert (await introspect(http, edge, inactive, caller))[1] == {"active": False}
    # Another tenant's caller learns nothing; root learns about every tenant.
    other = await make_tenant(client, "introspect-other")
    assert (await introspect(http, edge, world.pat_token, other.admin_token))[1] == {"active": False}
    assert (await introspect(http, edge, world.pat_token, instance.root_token))[1]["active"]
    # HTTP Basic, as RFC 7662 clients send it: the credential is the password.
    basic = base64.b64encode(f"gateway:{caller}".encode()).decode()
    async with http.post(
        f"{edge}/oauth2/introspect", data={"token": world.key_token}, headers={"Authorization": f"Basic {basic}"}
    ) as reply:
        assert (await reply.json())["active"]
    await client.command("revoke_pat", pat_id=world.pat_id)
    assert (await introspect(http, edge, world.pat_token, caller))[1] == {"active": False}

    status, problem, headers = await introspect(http, edge, world.key_token, None)
    assert status == 401 and headers["WWW-Authenticate"].startswith('Bearer realm="authbus"') and problem["status"] == 401
    async with http.post(
        f"{edge}/oauth2/introspect", json={"token": world.key_token}, headers={"Authorization": f"Bearer {caller}"}
    ) as reply:
        assert reply.status == 400 and reply.content_type == "application/problem+json"
    async with http.post(
        f"{edge}/oauth2/introspect", data={"token": "x" * 20_000}, headers={"Authorization": f"Bearer {caller}"}
    ) as reply:
        assert reply.status == 413 and (await reply.json(content_type=None))["status"] == 413
    assert_no_secret(world, str(problem))


async def forward(http, edge: str, token: str | None, query: str = "", **headers) -> tuple[int, dict, str]:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    sent |= {f"X-Authbus-{name.replace('_', '-').title()}": value for name, value in headers.items()}
    async with http.get(f"{edge}/forward-auth{query}", headers=sent) as reply:
        return reply.status, dict(reply.headers), await reply.text()


async def test_forward_auth_answers_a_gateway_for_each_outcome(client, edge, http):
    world = await make_tenant(client, "gateway")
    status, headers, _ = await forward(http, edge, world.pat_token, "?scope=doc:read:42")
    assert status == 200 and headers["X-Authbus-Principal"] == world.user_id and headers["X-Authbus-Tenant"] == world.tenant_id
    assert headers["X-Authbus-Credential"] == world.pat_id and "editors" in headers["X-Authbus-Roles"].split(",")
    assert (await forward(http, edge, world.pat_token, scope="doc:read:42"))[0] == 200  # the scope in a header, as nginx sets it
    assert (await forward(http, edge, world.key_token))[0] == 200  # nothing wanted: any valid bearer

    status, headers, _ = await forward(http, edge, world.pat_token, "?scope=doc:update:42")
    assert (
        status == 403
        and 'error="insufficient_scope"' in headers["WWW-Authenticate"]
        and 'scope="doc:update:42"' in headers["WWW-Authenticate"]
    )
    status, headers, _ = await forward(http, edge, world.pat_token, "?min_role=admin")
    assert status == 403 and "scoped_credential" in headers["WWW-Authenticate"]
    assert (await forward(http, edge, world.admin_token, "?min_role=admin"))[0] == 200
    status, headers, _ = await forward(http, edge, None)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="authbus"'
    status, headers, _ = await forward(http, edge, "pat_garbage")
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, headers, _ = await forward(http, edge, world.recovery_token)
    assert status == 401 and "not_a_bearer_credential" in headers["WWW-Authenticate"]
    status, _, problem = await forward(http, edge, world.pat_token, "?scope=not-a-scope")
    assert status == 400 and "entity_type:operation:entity_id" in problem
    await client.command("revoke_pat", pat_id=world.pat_id)
    status, headers, problem = await forward(http, edge, world.pat_token, "?scope=doc:read:42")
    assert status == 401 and 'error_description="revoked"' in headers["WWW-Authenticate"]
    assert_no_secret(world, problem, str(headers))


async def test_health_readiness_and_unknown_paths(edge, http):
    async with http.get(f"{edge}/healthz") as reply:
        assert reply.status == 200 and (await reply.json())["status"] == "ok"
    async with http.get(f"{edge}/readyz") as reply:
        assert reply.status == 200 and (await reply.json())["store"]["reachable"]
    async with http.get(f"{edge}/nope") as reply:
        assert reply.status == 404 and (await reply.json(content_type=None))["title"] == "Not Found"
    async with http.delete(f"{edge}/healthz") as reply:
        assert reply.status == 405 and reply.content_type == "application/problem+json" and "GET" in reply.headers["Allow"]
