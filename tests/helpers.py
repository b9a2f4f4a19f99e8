"""Test set-up through the real wire protocol, shared by the suites.

Each test makes a tenant of its own (unique name), created by the caller (normally the
root ``client`` fixture), so a test never shares state with another one:
``make_org`` gives an admin and a user with an unscoped API key each; ``make_tenant``
adds the user's PAT and recovery key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from authbus.domain import tokens
from authbus.infra.client import AuthbusClient

# The one scope every TenantWorld PAT is created with.
PAT_SCOPE = {"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}


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
        ids |= {f"{role}_id": user["result"]["user_id"], f"{role}_key": key["result"]["token"], f"{role}_key_id": key["result"]["key_id"]}
    return Org(tenant_id=tenant_id, **ids)


@dataclass(frozen=True)
class TenantWorld:
    tenant_id: str
    admin_id: str
    admin_token: str  # an API key: the admin acts with its full role
    user_id: str  # a plain user (role "user"), no password
    pat_id: str
    pat_token: str  # scoped to PAT_SCOPE
    key_id: str
    key_token: str  # an unscoped API key
    recovery_id: str
    recovery_token: str  # single use: auth.v1.redeem sets the user's password with it

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.admin_token, self.pat_token, self.key_token, self.recovery_token)


async def make_tenant(client: AuthbusClient, label: str = "t") -> TenantWorld:
    """``make_org`` plus the user's PAT (scoped to PAT_SCOPE) and recovery key."""
    org = await make_org(client, label)
    pat = await client.command("create_pat", user_id=org.user_id, name="ci", scopes=[PAT_SCOPE])
    recovery = await client.command("issue_key", user_id=org.user_id, kind="recovery", name="recovery")
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
    )


def secret_of(token: str) -> str:
    """The secret part of a PAT or key: what no reply and no event may ever contain."""
    parsed = tokens.parse(token)
    assert parsed is not None, "not a well-formed token"
    return parsed.secret


def store_position(instance) -> int:
    """The event store's head: unchanged across a request means it appended nothing."""
    return instance.node.store.recorder.max_notification_id() or 0
