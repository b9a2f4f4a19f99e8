"""Signing keys, JWKS, password login, refresh rotation, challenge login and tenant-minted
JWTs, through real NATS on both backends.  Tokens are also minted by independent code
(PyJWT, cryptography), not only by authbus."""

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import datetime, timedelta

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.infra.client import AuthbusClient, AuthbusError, Principal
from tests.conftest import start_instance
from tests.helpers import grant_scopes, make_org

PASSWORD = "correct horse battery staple"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def with_password(client, org) -> str:
    await client.command("change_password", user_id=org.user_id, password=PASSWORD, token=org.admin_key)
    return "user-1"


async def login(client, org, password=PASSWORD, **extra):
    return await client.call("login", {"tenant_id": org.tenant_id, "username": "user-1", "password": password, **extra}, token="")


async def refused(call, code, field=None):
    with pytest.raises(AuthbusError) as error:
        await call
    assert error.value.code == code, error.value
    if field:
        assert error.value.details.get("field") == field
    return error.value


async def test_login_gives_a_verifiable_access_token_that_can_act_as_the_user(client, org):
    await with_password(client, org)
    pair = await login(client, org, source="laptop")
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900 and pair["refresh_token"].startswith("rt_")
    verified = await client.verify(pair["access_token"])
    assert verified.valid and verified.credential.kind == "access_token"
    assert verified.principal.id == org.user_id and verified.scopes is None
    # Self-service: a logged-in user creates its own PAT (API keys and PATs cannot).
    created = await client.command("create_pat", user_id=org.user_id, name="mine", token=pair["access_token"])
    assert (await client.verify(created["result"]["token"])).valid
    activity = (await client.admin("login_activity", user_id=org.user_id, token=org.admin_key))["items"]
    assert activity[0]["outcome"] == "succeeded" and activity[0]["source"] == "laptop"
    # The token is checked by any JWT library against the JWKS.
    header = jwt.get_unverified_header(pair["access_token"])
    keys = (await client.call("jwks", {}, token=""))["keys"]
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    assert "d" not in jwk and jwk["alg"] == "EdDSA"
    claims = jwt.decode(pair["access_token"], jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience="authbus")
    assert (claims["sub"], claims["tnd"]) == (org.user_id, org.tenant_id)
    # RFC 9068's shape, with the default terms: what a service's JWT middleware looks for.
    assert header["typ"] == "at+jwt" and claims["exp"] - claims["iat"] == pair["expires_in"] == 900
    assert (claims["iss"], claims["client_id"], claims["preferred_username"]) == ("authbus", "laptop", "user-1")


async def test_a_login_may_ask_for_less_than_the_user_holds(client, org):
    """A down-scoped access token: its scp is what it may do (as a PAT's scopes), while the
    owner still holds it; it mints no credentials."""
    read = {"domain": "docs", "entity_type": "doc", "operation": "read", "entity_id": "*"}
    update = {**read, "operation": "update"}
    await grant_scopes(client, org.tenant_id, org.user_id, [read, update])
    await with_password(client, org)
    pair = await login(client, org, scopes=[read, read])
    assert jwt.decode(pair["access_token"], options={"verify_signature": False})["scp"] == ["docs/doc:read:*"]
    verified = await client.verify(pair["access_token"])
    assert [(s.domain, s.operation) for s in verified.scopes] == [("docs", "read")]

    async def allowed(token, operation):
        target = {"domain": "docs", "entity_type": "doc", "entity_id": "7"}
        return (await client.authorize(token, operation=operation, **target)).allowed

    assert await allowed(pair["access_token"], "read") and not await allowed(pair["access_token"], "update")
    whole = await login(client, org)  # no scopes: the whole user, as before
    assert (await client.verify(whole["access_token"])).scopes is None and await allowed(whole["access_token"], "update")
    creating = client.command("create_pat", name="from a narrow token", token=pair["access_token"])
    await refused(creating, "forbidden")
    await refused(login(client, org, scopes=[{**read, "operation": "delete"}]), "forbidden", "scopes[0]")
    await refused(login(client, org, scopes=[{**read, "entity_type": "doc/x"}]), "invalid_request", "scopes[0]")  # no string form
    # The session keeps to what its login asked for: a refresh may not widen it.
    widening = client.call("refresh", {"refresh_token": pair["refresh_token"], "scopes": [update]}, token="")
    await refused(widening, "forbidden", "scopes[0]")
    again = await client.call("refresh", {"refresh_token": pair["refresh_token"]}, token="")
    assert [s.operation for s in (await client.verify(again["access_token"])).scopes] == ["read"]


async def test_the_deployment_sets_issuer_audience_and_lifetimes(fresh_store, nats_server):
    backend, settings_for = fresh_store
    settings = dataclasses.replace(
        settings_for(f"terms{backend}"),
        issuer="https://auth.example.com",
        audience="orders-api",
        access_token_seconds=300,
        session_seconds=3600,
    )
    instance = await start_instance(settings, backend)
    client = await AuthbusClient.connect(nats_server.url, prefix=settings.subject_prefix, token=instance.root_token)
    try:
        org = await make_org(client)
        await with_password(client, org)
        pair = await login(client, org)
        claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
        assert (claims["iss"], claims["aud"], claims["client_id"]) == ("https://auth.example.com", "orders-api", "orders-api")
        assert claims["exp"] - claims["iat"] == pair["expires_in"] == 300  # login answers the lifetime it used
        session = (await client.admin("list_sessions", user_id=org.user_id, token=org.admin_key))["items"][0]
        started, ends = (datetime.fromisoformat(session[k]) for k in ("created_at", "expires_at"))
        assert timedelta(seconds=3599) <= ends - started <= timedelta(seconds=3601)
        assert (await client.verify(pair["access_token"])).valid
    finally:
        await client.close()
        await instance.node.stop()


async def test_wrong_password_and_unknown_user_look_alike_and_failures_are_limited(client, org, instance):
    await with_password(client, org)
    unknown = await refused(
        client.call("login", {"tenant_id": org.tenant_id, "username": "nobody", "password": "x"}, token=""), "unauthenticated"
    )
    for _ in range(5):
        wrong = await refused(login(client, org, password="wrong password"), "unauthenticated")
        assert wrong.message == unknown.message
    error = await refused(login(client, org), "rate_limited")  # even the right password, until the window passes
    assert "Traceback" not in error.message
    activity = (await client.admin("login_activity", user_id=org.user_id, token=org.admin_key))["items"]
    assert [a["outcome"] for a in activity[:5]] == ["failed"] * 5


async def test_disabled_users_cannot_log_in_and_their_tokens_stop(client, org):
    await with_password(client, org)
    pair = await login(client, org)
    disabled = await client.command("disable_user", user_id=org.user_id, token=org.admin_key)
    assert (await client.verify(pair["access_token"], min_position=disabled["position"])).reason == "disabled"
    await refused(login(client, org), "unauthenticated")
    await refused(client.call("refresh", {"refresh_token": pair["refresh_token"]}, token=""), "unauthenticated")


async def test_refresh_rotates_and_reuse_revokes_the_whole_session(client, org):
    await with_password(client, org)
    first = await login(client, org)
    second = await client.call("refresh", {"refresh_token": first["refresh_token"]}, token="")
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.verify(second["access_token"])).valid
    # The first refresh token again: it leaked.  The whole family ends.
    error = await refused(
        client.call("refresh", {"refresh_token": first["refresh_token"]}, token=""), "unauthenticated", "refresh_token"
    )
    assert "revoked" in error.message
    for token in (first["access_token"], second["access_token"]):
        assert (await client.verify(token)).reason == "revoked"
    await refused(client.call("refresh", {"refresh_token": second["refresh_token"]}, token=""), "unauthenticated")
    sessions = (await client.admin("list_sessions", user_id=org.user_id, token=org.admin_key))["items"]
    assert sessions[0]["status"] == "revoked" and sessions[0]["revoked_reason"] == "refresh token reuse detected"


async def test_logout_and_admin_revocation_end_sessions(client, org):
    await with_password(client, org)
    pair = await login(client, org)
    out = await client.call("logout", {"refresh_token": pair["refresh_token"]}, token="")
    assert out["ok"] is True
    assert (await client.verify(pair["access_token"], min_position=out["position"])).reason == "revoked"
    other = await login(client, org)
    sessions = (await client.admin("list_sessions", user_id=org.user_id, token=org.admin_key))["items"]
    active = [s for s in sessions if s["status"] == "active"]
    revoked = await client.command("revoke_session", session_id=active[0]["id"], token=org.admin_key)
    assert (await client.verify(other["access_token"], min_position=revoked["position"])).reason == "revoked"


async def test_a_key_sent_as_textile_sends_it_logs_in_by_any_spelling(client, org):
    """Textile's PublicKey.toString() is multibase base32 of the libp2p protobuf key; a
    did:key names the same key.  Registered in one spelling, it answers challenges issued
    to another, and is one key: registering it again in a third is a conflict."""
    device = Ed25519PrivateKey.generate()
    raw = device.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    textile = "b" + base64.b32encode(b"\x08\x01\x12\x20" + raw).decode().rstrip("=").lower()
    registered = await client.command("register_public_key", user_id=org.user_id, public_key=textile, token=org.admin_key)
    assert registered["result"]["public_key"] == b64(raw)  # stored and shown in the one canonical form
    did = "did:key:z" + base58(b"\xed\x01" + raw)
    issued = await client.call("challenge", {"tenant_id": org.tenant_id, "public_key": did}, token="")
    signature = b64(device.sign(issued["challenge"].encode()))
    tokens = await client.call("challenge.answer", {"challenge": issued["challenge"], "signature": signature}, token="")
    assert (await client.verify(tokens["access_token"])).principal.id == org.user_id
    again = client.command("register_public_key", user_id=org.user_id, public_key=b64(raw), token=org.admin_key)
    assert (await refused(again, "conflict", "public_key")).code == "conflict"
    await client.command("remove_public_key", user_id=org.user_id, public_key=did, token=org.admin_key)
    issued = await client.call("challenge", {"tenant_id": org.tenant_id, "public_key": textile}, token="")
    signature = b64(device.sign(issued["challenge"].encode()))
    answer = client.call("challenge.answer", {"challenge": issued["challenge"], "signature": signature}, token="")
    await refused(answer, "unauthenticated")  # removed by its DID: the key is gone in every spelling


def base58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number, digits = int.from_bytes(data, "big"), ""
    while number:
        number, rest = divmod(number, 58)
        digits = alphabet[rest] + digits
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + digits


async def test_ed25519_challenge_login_redeems_once(client, org):
    device = Ed25519PrivateKey.generate()
    public_key = b64(device.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    await client.command("register_public_key", user_id=org.user_id, public_key=public_key, token=org.admin_key)
    issued = await client.call("challenge", {"tenant_id": org.tenant_id, "public_key": public_key}, token="")
    signature = b64(device.sign(issued["challenge"].encode()))
    answer = {"challenge": issued["challenge"], "signature": signature}
    pair = await client.call("challenge.answer", answer, token="")
    assert (await client.verify(pair["access_token"])).principal.id == org.user_id
    await refused(client.call("challenge.answer", answer, token=""), "unauthenticated", "challenge")
    # A signature by another key, and a forged challenge, are refused alike.
    other = b64(Ed25519PrivateKey.generate().sign(issued["challenge"].encode()))
    await refused(client.call("challenge.answer", {**answer, "signature": other}, token=""), "unauthenticated", "signature")
    forged = issued["challenge"][:-3] + "AAA"
    await refused(
        client.call("challenge.answer", {"challenge": forged, "signature": b64(device.sign(forged.encode()))}, token=""),
        "unauthenticated",
    )
    # Removed keys answer nothing.
    await client.command("remove_public_key", user_id=org.user_id, public_key=public_key, token=org.admin_key)
    fresh = await client.call("challenge", {"tenant_id": org.tenant_id, "public_key": public_key}, token="")
    await refused(
        client.call(
            "challenge.answer",
            {"challenge": fresh["challenge"], "signature": b64(device.sign(fresh["challenge"].encode()))},
            token="",
        ),
        "unauthenticated",
    )


async def hs256_key(client, org):
    created = await client.command("create_signing_key", tenant_id=org.tenant_id, alg="HS256", token=org.admin_key)
    return created["result"]["kid"], created["result"]["secret"], created["position"]


def tenant_token(kid, secret, tenant_id, **overrides):
    now = int(time.time())
    claims = {
        "tnd": tenant_id,
        "iss": "acme-app",
        "sub": "device-7",
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "per": {"docs": {"document/*": "CR", "image/7": "D"}},
        "dpv": {"docs": ["document/1"]},
        **overrides,
    }
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, hmac_key(secret), algorithm="HS256", headers={"kid": kid}
    )


def hmac_key(secret: str) -> bytes:
    """The bytes an HS256 secret encodes: the HMAC key, as Hivekit's Buffer.from(secret, 'base64')."""
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


async def test_tenant_minted_tokens_verify_and_map_per_onto_scopes(client, org):
    kid, secret, position = await hs256_key(client, org)
    token = tenant_token(kid, secret, org.tenant_id)
    verified = await client.verify(token, min_position=position)
    assert verified.valid and verified.credential.kind == "tenant_token"
    external = str(uuid.uuid5(uuid.NAMESPACE_URL, f"authbus:external:{org.tenant_id}:device-7"))
    assert verified.principal == Principal(id=external, tenant_id=org.tenant_id, kind="external", roles=[], subject="device-7")

    async def allowed(entity_type, operation, entity_id, domain="docs"):
        reply = await client.authorize(token, domain=domain, entity_type=entity_type, operation=operation, entity_id=entity_id)
        return reply.allowed

    assert await allowed("document", "read", "5") and await allowed("document", "create", "9")
    assert not await allowed("document", "update", "5")
    assert await allowed("image", "delete", "7") and not await allowed("image", "delete", "8")
    assert not await allowed("document", "read", "5", domain="wiki")
    keys = (await client.call("jwks", {"tenant_id": org.tenant_id}, token=""))["keys"]
    assert kid not in [k["kid"] for k in keys]  # HS256 secrets are never published
    revoked = await client.command("revoke_signing_key", kid=kid, token=org.admin_key)
    assert (await client.verify(token, min_position=revoked["position"])).reason == "revoked"


async def test_a_token_minted_as_hivekits_client_does_verifies(client, org):
    """Hivekit's Node client: the key is Buffer.from(secret, 'base64'), and jsonwebtoken signs
    with issuer, keyid, jwtid and expiresIn; its smallest token is tnd and iss, nothing more."""
    kid, secret, position = await hs256_key(client, org)
    now = int(time.time())
    documented = jwt.encode(
        {"tnd": org.tenant_id, "iss": "platform.hivekit.io", "iat": now, "exp": now + 7 * 86400, "jti": "hk-1",
         "per": {"docs": {"document/*": "R"}}, "dpv": {"docs": ["document/4", "folder/2"]}},
        hmac_key(secret), algorithm="HS256", headers={"kid": kid, "typ": "JWT"},
    )  # fmt: skip
    verified = await client.verify(documented, min_position=position)
    assert verified.valid and verified.credential.id == "hk-1"
    assert verified.credential.dpv == {"docs": ["document/4", "folder/2"]}  # handed to the service as written
    minimal = jwt.encode({"tnd": org.tenant_id, "iss": "platform.hivekit.io"}, hmac_key(secret), algorithm="HS256",
                         headers={"kid": kid})  # fmt: skip
    bare = await client.verify(minimal)
    assert bare.valid and bare.credential.expires_at is None and bare.credential.dpv is msgspec.UNSET
    assert bare.scopes == [] and bare.principal.subject is None  # no sub: the token is its own principal
    assert bare.principal.id != verified.principal.id == (await client.verify(documented)).principal.id
    earlier = jwt.encode({"tnd": org.tenant_id}, secret, algorithm="HS256", headers={"kid": kid})
    assert (await client.verify(earlier)).valid  # keyed with the secret's text, as wire.md first had it

    retired = await client.command("retire_signing_key", kid=kid, token=org.admin_key)
    assert (await client.verify(minimal, min_position=retired["position"])).reason == "expired"  # lived as long as its key
    assert (await client.verify(documented)).valid  # one with exp runs to it


async def test_austack_scopes_and_scp_claims_are_read_like_per(client, org):
    kid, secret, position = await hs256_key(client, org)
    token = jwt.encode(
        {"tnd": org.tenant_id, "sub": "svc", "scopes": {"invoice": {"actions": ["create", "read"]}},
         "scp": ["docs/document:update:42", "report:read:*"], "per": {"docs": {"folder/1": "D"}}},
        hmac_key(secret), algorithm="HS256", headers={"kid": kid},
    )  # fmt: skip
    verified = await client.verify(token, min_position=position)
    assert {(s.domain, s.entity_type, s.operation, s.entity_id) for s in verified.scopes} == {
        (None, "invoice", "create", "*"),
        (None, "invoice", "read", "*"),
        ("docs", "document", "update", "42"),
        (None, "report", "read", "*"),
        ("docs", "folder", "delete", "1"),
    }
    decision = await client.authorize(token, entity_type="invoice", operation="create", entity_id="9")
    assert decision.allowed and decision.matched_scope.entity_type == "invoice"
    assert (await client.authorize(token, domain="docs", entity_type="document", operation="update", entity_id="42")).allowed
    assert not (await client.authorize(token, entity_type="invoice", operation="delete", entity_id="9")).allowed


@pytest.mark.parametrize(
    ("alg", "make"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", Ed25519PrivateKey.generate),
    ],
)
async def test_a_tenant_brings_its_own_signing_key(client, org, instance, alg, make):
    """A PKCS#8 key the tenant made signs its access tokens, which verify with the tenant's
    own public half; the private half is stored only wrapped, never shown again."""
    private = make()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    created = await client.command("create_signing_key", alg=alg, private_key=pem.decode(), token=org.admin_key)
    kid = created["result"]["kid"]
    assert set(created["result"]) == {"kid", "alg", "tenant_id"}
    await with_password(client, org)
    access = (await login(client, org))["access_token"]
    assert jwt.get_unverified_header(access)["kid"] == kid
    assert jwt.decode(access, private.public_key(), algorithms=[alg], audience="authbus")["tnd"] == org.tenant_id
    assert (await client.verify(access)).valid
    body = pem.split(b"-----")[2].replace(b"\n", b"")  # the base64 of the key, as a file holds it
    # Read through the store (stored_bytes would open the live SQLite file in this process,
    # and closing it drops the locks the instance's own connection holds).
    stored = b"".join(n.state for n in instance.node.store.recorder.select_notifications(start=1, limit=1_000_000))
    assert body[-40:-2] not in stored.replace(b"\\n", b"")  # its last bytes are key


async def test_retired_keys_still_verify_revoked_keys_never(client, org):
    created = await client.command("create_signing_key", tenant_id=org.tenant_id, alg="ES256", token=org.admin_key)
    kid = created["result"]["kid"]
    assert "secret" not in created["result"]
    await with_password(client, org)
    pair = await login(client, org)
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == kid  # the tenant's own key signs
    retired = await client.command("retire_signing_key", kid=kid, token=org.admin_key)
    assert (await client.verify(pair["access_token"], min_position=retired["position"])).valid
    newer = await login(client, org)
    assert jwt.get_unverified_header(newer["access_token"])["kid"] != kid  # retired keys stop signing
    listed = (await client.admin("list_signing_keys", tenant_id=org.tenant_id, token=org.admin_key))["items"]
    assert [(k["kid"], k["status"]) for k in listed] == [(kid, "retired")]
    revoked = await client.command("revoke_signing_key", kid=kid, token=org.admin_key)
    assert (await client.verify(pair["access_token"], min_position=revoked["position"])).reason == "revoked"
    assert (await client.verify(newer["access_token"])).valid


def unsigned(header: dict, claims: dict) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


async def test_the_jwt_attack_set_is_refused_with_the_right_reason(client, org):
    kid, secret, position = await hs256_key(client, org)
    other = await client.command("create_tenant", name=f"other-{uuid.uuid4().hex[:8]}")
    now = int(time.time())
    await with_password(client, org)
    access = (await login(client, org))["access_token"]
    eddsa_kid = jwt.get_unverified_header(access)["kid"]
    eddsa_jwk = next(k for k in (await client.call("jwks", {}, token=""))["keys"] if k["kid"] == eddsa_kid)
    public_bytes = jwt.PyJWK(eddsa_jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    cases = {
        "alg none": (
            unsigned({"alg": "none", "kid": kid}, {"tnd": org.tenant_id, "sub": "x", "iat": now, "exp": now + 60}),
            "bad_signature",
        ),
        "alg confusion": (_hmac_token(claims, public_bytes, eddsa_kid), "bad_signature"),
        "unknown kid": (tenant_token(str(uuid.uuid4()), secret, org.tenant_id), "unknown"),
        "kid of another tenant": (tenant_token(kid, secret, other["result"]["tenant_id"]), "unknown"),
        "expired beyond leeway": (tenant_token(kid, secret, org.tenant_id, iat=now - 100, exp=now - 31), "expired"),
        "tampered payload": (
            f"{header}.{b64(json.dumps({**claims, 'sub': org.admin_id}).encode())}.{signature}",
            "bad_signature",
        ),
        "dpv not realm to ids": (tenant_token(kid, secret, org.tenant_id, dpv={"docs": "document/1"}), "malformed"),
        "scp not a scope": (tenant_token(kid, secret, org.tenant_id, scp=["docs/document"]), "malformed"),
        "sub not a string": (tenant_token(kid, secret, org.tenant_id, sub=7), "malformed"),
        "wrong secret": (tenant_token(kid, b64(os.urandom(32)), org.tenant_id), "bad_signature"),
    }
    for name, (token, reason) in cases.items():
        reply = await client.verify(token, min_position=position)
        assert (name, reply.valid, reply.reason) == (name, False, reason)
    now = int(time.time())  # anew: the logins above hash passwords, which a busy machine takes a while for
    within_leeway = tenant_token(kid, secret, org.tenant_id, iat=now - 100, exp=now - 10)
    assert (await client.verify(within_leeway)).valid
    oversized = tenant_token(kid, secret, org.tenant_id, pad="x" * 9000)
    await refused(client.verify(oversized), "invalid_request", "token")


def _hmac_token(claims: dict, key: bytes, kid: str) -> str:
    """An HS256 token keyed with a public key's bytes: the classic algorithm-confusion attack."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


async def test_no_secret_ever_reaches_the_store(client, org, instance):
    await with_password(client, org)
    pair = await login(client, org)
    rotated = await client.call("refresh", {"refresh_token": pair["refresh_token"]}, token="")
    _kid, hs_secret, _ = await hs256_key(client, org)
    pat = (
        await client.command("create_pat", user_id=org.user_id, name="scan", command_id=str(uuid.uuid4()), token=org.admin_key)
    )["result"]["token"]
    secrets = [PASSWORD, hs_secret, pat.split("_")[-2], org.admin_key, org.user_key]
    secrets += [t.rsplit("_", 2)[-2] for t in (pair["refresh_token"], rotated["refresh_token"])]
    recorder = instance.node.store.recorder
    stored = b"".join(n.state for n in recorder.select_notifications(start=1, limit=1_000_000))
    for secret in secrets:
        assert secret.encode() not in stored
    assert b"PRIVATE KEY" not in stored


async def test_the_system_tenant_gets_no_hs256_key(client):
    from authbus.domain.tenant import SYSTEM_TENANT_ID

    await refused(client.command("create_signing_key", tenant_id=str(SYSTEM_TENANT_ID), alg="HS256"), "invalid_request", "alg")


async def test_a_disabled_tenant_stops_logins_and_live_access_tokens(client, org):
    await with_password(client, org)
    pair = await login(client, org)
    disabled = await client.command("disable_tenant", tenant_id=org.tenant_id, reason="unpaid")
    assert (await client.verify(pair["access_token"], min_position=disabled["position"])).reason == "disabled"
    await refused(login(client, org), "unauthenticated")
    await client.command("enable_tenant", tenant_id=org.tenant_id)
    assert (await client.verify(pair["access_token"])).valid
