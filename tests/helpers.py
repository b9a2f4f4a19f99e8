"""Test set-up through the real wire protocol, shared by the suites.

Each test makes a tenant of its own (unique name), created by the caller (normally the
root ``client`` fixture), so a test never shares state with another one:
``make_org`` gives an admin and a user with an unscoped API key each; ``make_tenant``
adds a role ``editors`` (EDITOR_SCOPES) granted to the user, the user's PAT and recovery
key, and on request a session and signing material.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.domain import tokens
from authbus.domain.policy import Actor
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.infra.client import AuthbusClient

# The one scope every TenantWorld PAT is created with.
PAT_SCOPE = {"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}
# What a TenantWorld's user holds through its tenant's role "editors": a credential never
# carries more than its owner, so its PAT's scope, and any a test adds, come from here.
EDITOR_SCOPES = [PAT_SCOPE, {"domain": None, "entity_type": "doc", "operation": "update", "entity_id": "*"}]
# The password ``make_tenant(login=True)`` gives the user.
PASSWORD = "correct horse battery staple"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def device(seed: str) -> Ed25519PrivateKey:
    """The Ed25519 key behind a TenantWorld's ``device_seed``."""
    return Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(seed + "="))


@dataclass
class Org:
    tenant_id: str
    admin_id: str
    admin_key: str  # unscoped API key: acts with the admin role
    admin_key_id: str
    user_id: str  # role "user", no password (hashing one is deliberately slow)
    user_key: str  # unscoped API key
    user_key_id: str


async def make_org(client: AuthbusClient, label: str = "org") -> Org:
    tenant_id = (await client.command("create_tenant", name=f"{label}-{uuid.uuid4().hex}"))["result"]["tenant_id"]
    ids: dict[str, str] = {}
    for role in ("admin", "user"):
        user = await client.command("register_user", tenant_id=tenant_id, username=f"{role}-1", roles=[role])
        key = await client.command("issue_key", user_id=user["result"]["user_id"], kind="api_key", name=f"{role} key")
        ids |= {
            f"{role}_id": user["result"]["user_id"],
            f"{role}_key": key["result"]["token"],
            f"{role}_key_id": key["result"]["key_id"],
        }
    return Org(tenant_id=tenant_id, **ids)


async def grant_scopes(client: AuthbusClient, tenant_id: str, user_id: str, scopes: list[dict], **options) -> str:
    """Make the user hold ``scopes``: a role of the tenant's own carrying them, granted to it."""
    name = f"r-{uuid.uuid4().hex[:12]}"
    role = await client.command("create_role", tenant_id=tenant_id, name=name, scopes=scopes, **options)
    await client.command("grant_role", user_id=user_id, role=name, **options)
    return role["result"]["role_id"]


@dataclass(frozen=True)
class TenantWorld:
    tenant_id: str
    admin_id: str
    admin_token: str  # an API key: the admin acts with its full role
    user_id: str  # roles "user" and "editors" (EDITOR_SCOPES), username "user-1", no password unless login=True
    pat_id: str
    pat_token: str  # scoped to PAT_SCOPE
    key_id: str
    key_token: str  # an unscoped API key
    recovery_id: str
    recovery_token: str  # single use: auth.v1.redeem sets the user's password with it
    role_id: str  # the tenant's role "editors", granted to the user
    # login=True (argon2 is slow: ask only when needed): the user's PASSWORD and one login.
    password: str | None = None
    session_id: str | None = None
    access_token: str | None = None  # a JWT: its signature is the secret part
    refresh_token: str | None = None
    # keys=True: the tenant's HS256 signing key, and the user's registered Ed25519 key
    # (``device_seed`` is its private half) with a fresh challenge for it (valid 60 s).
    signing_kid: str | None = None
    hs256_secret: str | None = None
    public_key: str | None = None
    device_seed: str | None = None
    challenge: str | None = None

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.admin_token, self.pat_token, self.key_token, self.recovery_token)


async def make_tenant(client: AuthbusClient, label: str = "t", *, login: bool = False, keys: bool = False) -> TenantWorld:
    """``make_org`` plus the user's PAT (scoped to PAT_SCOPE) and recovery key; with
    ``login`` a password and a session for the user, with ``keys`` signing material."""
    org = await make_org(client, label)
    role = await client.command("create_role", tenant_id=org.tenant_id, name="editors", scopes=EDITOR_SCOPES)
    await client.command("grant_role", user_id=org.user_id, role="editors")
    pat = await client.command("create_pat", user_id=org.user_id, name="ci", scopes=[PAT_SCOPE])
    recovery = await client.command("issue_key", user_id=org.user_id, kind="recovery", name="recovery")
    extra: dict[str, str] = {}
    if login:
        await client.command("change_password", user_id=org.user_id, password=PASSWORD)
        body = {"tenant_id": org.tenant_id, "username": "user-1", "password": PASSWORD}
        pair = await client.call("login", body, token="")
        extra |= {"password": PASSWORD, **{k: pair[k] for k in ("session_id", "access_token", "refresh_token")}}
    if keys:
        hs256 = (await client.command("create_signing_key", tenant_id=org.tenant_id, alg="HS256"))["result"]
        seed = Ed25519PrivateKey.generate()
        public_key = b64url(seed.public_key().public_bytes_raw())
        await client.command("register_public_key", user_id=org.user_id, public_key=public_key)
        issued = await client.call("challenge", {"tenant_id": org.tenant_id, "public_key": public_key}, token="")
        extra |= {
            "signing_kid": hs256["kid"],
            "hs256_secret": hs256["secret"],
            "public_key": public_key,
            "device_seed": b64url(seed.private_bytes_raw()),
            "challenge": issued["challenge"],
        }
    return TenantWorld(
        tenant_id=org.tenant_id,
        admin_id=org.admin_id,
        admin_token=org.admin_key,
        user_id=org.user_id,
        pat_id=pat["result"]["pat_id"],
        pat_token=pat["result"]["token"],
        key_id=org.user_key_id,
        key_token=org.user_key,
        recovery_id=recovery["result"]["key_id"],
        recovery_token=recovery["result"]["token"],
        role_id=role["result"]["role_id"],
        **extra,
    )


def secret_of(token: str) -> str:
    """The secret part of a PAT or key: what no reply and no event may ever contain."""
    parsed = tokens.parse(token)
    assert parsed is not None, "not a well-formed token"
    return parsed.secret


def store_position(instance) -> int:
    """The event store's head: unchanged across a request means it appended nothing."""
    return instance.node.store.recorder.max_notification_id() or 0


async def eventually(condition: Callable[[], bool], seconds: float, every: float = 0.05) -> bool:
    """Whether ``condition`` comes true within ``seconds``, asked every ``every`` seconds:
    for what a background task or another process does in its own time."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


def root_actor(root: dict) -> Actor:
    """Root as the application sees it, from what ``bootstrap()`` returned."""
    return Actor(
        principal_id=uuid.UUID(root["user_id"]),
        tenant_id=SYSTEM_TENANT_ID,
        roles=frozenset({"root"}),
        credential_id=uuid.UUID(root["key_id"]),
        credential_kind="api_key",
        scopes=None,
    )


async def health_once_up(nats_url: str, prefix: str, process: subprocess.Popen, seconds: float = 60) -> dict:
    """``auth.v1.health``'s answer from a ``serve`` started in ``process``, as soon as one answers."""
    nc = await nats.connect(nats_url)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return json.loads((await nc.request(f"{prefix}.v1.health", b"", timeout=1)).data)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                assert time.monotonic() < deadline and process.poll() is None, "serve did not come up"
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
