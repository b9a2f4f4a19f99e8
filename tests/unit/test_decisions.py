"""Each area's decisions against an in-memory unit of work: who may do what, the rules the
aggregates keep, and that a refused command saves nothing.  The same decisions run through
NATS and both stores in tests/e2e; here each takes microseconds."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from authbus.domain import commands as c
from authbus.domain.credentials import MAX_SCOPES
from authbus.domain.decisions import DECISIONS
from authbus.domain.decisions.tenancy import bootstrap
from authbus.domain.errors import AuthbusError
from authbus.domain.scopes import Scope
from authbus.domain.tenant import SYSTEM_TENANT_ID
from tests.unit.memory_store import MemoryStore

DOC_READ = Scope("doc", "read", "*", "docs")


class Tenant:
    """A tenant with an admin (API key) and a user who holds ``doc:read`` through a role."""

    def __init__(self, store: MemoryStore, name: str = "acme") -> None:
        self.store = store
        root = store.root
        self.id = UUID(store.run(c.CreateTenant(name=name), root)["tenant_id"])
        self.admin_id = self.user("admin", ["admin"])
        self.admin = store.actor(UUID(store.run(c.IssueKey(user_id=self.admin_id, kind="api_key"), root)["key_id"]))
        self.role_id = UUID(store.run(c.CreateRole(tenant_id=self.id, name="readers", scopes=[DOC_READ]), self.admin)["role_id"])
        self.user_id = self.user("alice", ["user", "readers"])

    def user(self, username: str, roles: list[str]) -> UUID:
        registered = self.store.run(c.RegisterUser(tenant_id=self.id, username=username, roles=roles), self.store.root)
        return UUID(registered["user_id"])

    def pat(self, scopes: tuple[Scope, ...] = (DOC_READ,)) -> UUID:
        return UUID(self.store.run(c.CreatePAT(user_id=self.user_id, name="ci", scopes=list(scopes)), self.admin)["pat_id"])


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def acme(store: MemoryStore) -> Tenant:
    return Tenant(store)


def refused(store: MemoryStore, command: c.Command, actor, code: str, field: str | None) -> None:
    """``command`` by ``actor`` ends in ``code`` naming ``field``, and nothing is saved."""
    before = list(store.log)
    with pytest.raises(AuthbusError) as caught:
        store.run(command, actor)
    assert (caught.value.code, caught.value.details.get("field")) == (code, field), caught.value.message
    assert store.log == before


def test_every_command_has_one_decision():
    assert set(DECISIONS) == {*c.COMMANDS.values(), c.RedeemKey}


def test_bootstrap_makes_the_system_tenant_root_and_its_key_once(store: MemoryStore):
    assert store.root.tenant_id == SYSTEM_TENANT_ID and store.root.roles == {"root"}
    assert sorted(store.log) == [
        "KeyIssued",
        "NameClaimed",
        "NameClaimed",
        "SigningKeyCreated",
        "TenantCreated",
        "UserRegistered",
    ]
    refused_alike = list(store.log)
    with pytest.raises(AuthbusError, match="already bootstrapped"):
        store.save("system", bootstrap)
    assert store.log == refused_alike


def test_tenant_names_are_unique_and_only_root_creates_tenants(store: MemoryStore, acme: Tenant):
    refused(store, c.CreateTenant(name="acme"), store.root, "conflict", "name")
    refused(store, c.CreateTenant(name="other"), acme.admin, "forbidden", None)
    refused(store, c.DisableTenant(tenant_id=SYSTEM_TENANT_ID), store.root, "forbidden", "tenant_id")


def test_another_tenants_entities_are_not_found_for_an_admin(store: MemoryStore, acme: Tenant):
    other = Tenant(store, "globex")
    refused(store, c.DisableUser(user_id=other.user_id), acme.admin, "not_found", "user_id")
    refused(store, c.RevokePAT(pat_id=other.pat()), acme.admin, "not_found", "pat_id")
    refused(store, c.DeleteRole(role_id=other.role_id), acme.admin, "not_found", "role_id")
    refused(store, c.RegisterUser(tenant_id=other.id, username="mallory"), acme.admin, "forbidden", "tenant_id")


def test_root_is_granted_only_by_root_and_only_in_the_system_tenant(store: MemoryStore, acme: Tenant):
    refused(store, c.GrantRole(user_id=acme.user_id, role="root"), store.root, "forbidden", "role")
    refused(store, c.RegisterUser(tenant_id=acme.id, username="r", roles=["root"]), acme.admin, "forbidden", "roles")
    registered = store.run(c.RegisterUser(tenant_id=SYSTEM_TENANT_ID, username="ops", roles=["root"]), store.root)
    assert store.aggregates[UUID(registered["user_id"])].roles == ["root"]


def test_a_credential_carries_only_what_its_owner_holds(store: MemoryStore, acme: Tenant):
    write = Scope("doc", "update", "*", "docs")
    refused(store, c.CreatePAT(user_id=acme.user_id, name="ci", scopes=[DOC_READ, write]), acme.admin, "forbidden", "scopes[1]")
    refused(store, c.IssueKey(user_id=acme.user_id, kind="api_key", scopes=[write]), acme.admin, "forbidden", "scopes[0]")
    pat_id = acme.pat()
    refused(store, c.AddScope(pat_id=pat_id, scope=write), acme.admin, "forbidden", "scope")
    store.run(c.AddRoleScopes(role_id=acme.role_id, scopes=[write]), acme.admin)
    store.run(c.AddScope(pat_id=pat_id, scope=write), acme.admin)
    assert len(store.aggregates[pat_id].scopes) == 2


def test_a_pat_mints_nothing_and_never_widens_itself(store: MemoryStore, acme: Tenant):
    bare = acme.pat(())
    store.run(c.GrantRole(user_id=acme.user_id, role="admin"), acme.admin)  # its owner may now do a lot
    refused(store, c.CreatePAT(user_id=acme.user_id, name="more"), store.actor(bare), "forbidden", None)
    refused(store, c.AddScope(pat_id=bare, scope=DOC_READ), store.actor(bare), "forbidden", None)  # no authbus scope
    # Even holding the authbus scope to change PATs, it does not change its own.
    managing = acme.pat((Scope("pat", "update", "*", "authbus"),))
    refused(store, c.AddScope(pat_id=managing, scope=DOC_READ), store.actor(managing), "forbidden", "pat_id")
    store.run(c.AddScope(pat_id=bare, scope=DOC_READ), store.actor(managing))


def test_a_revoked_or_expired_credential_acts_no_more(store: MemoryStore, acme: Tenant):
    store.run(c.RevokeKey(key_id=acme.admin.credential_id, reason="left"), store.root)
    refused(store, c.DisableUser(user_id=acme.user_id), acme.admin, "unauthenticated", "Authorization")


def test_the_pat_keeps_its_own_rules_whoever_asks(store: MemoryStore, acme: Tenant):
    pat_id = acme.pat()
    refused(store, c.AddScope(pat_id=pat_id, scope=DOC_READ), acme.admin, "conflict", "scope")  # held already
    store.aggregates[pat_id].scopes = [Scope("doc", "read", str(i), "docs").to_dict() for i in range(MAX_SCOPES)]
    refused(store, c.AddScope(pat_id=pat_id, scope=Scope("doc", "read", "x", "docs")), acme.admin, "conflict", "scope")
    store.run(c.RevokePAT(pat_id=pat_id), acme.admin)
    refused(store, c.ResetPATSecret(pat_id=pat_id), acme.admin, "conflict", "pat_id")
    refused(store, c.RemoveScope(pat_id=pat_id, scope=DOC_READ), acme.admin, "conflict", None)
    refused(store, c.RevokePAT(pat_id=pat_id), acme.admin, "conflict", None)


def test_lifetimes_are_bounded_per_kind(store: MemoryStore, acme: Tenant):
    refused(
        store, c.CreatePAT(user_id=acme.user_id, name="ci", expires_in=367 * 86400), acme.admin, "invalid_request", "expires_in"
    )
    refused(
        store,
        c.IssueKey(user_id=acme.user_id, kind="recovery", expires_in=2 * 86400),
        acme.admin,
        "invalid_request",
        "expires_in",
    )
    refused(store, c.IssueKey(user_id=acme.user_id, kind="recovery", scopes=[]), acme.admin, "invalid_request", "scopes")


def test_an_admin_changes_others_but_not_itself(store: MemoryStore, acme: Tenant):
    refused(store, c.DisableUser(user_id=acme.admin_id), acme.admin, "forbidden", "user_id")
    store.run(c.DisableUser(user_id=acme.user_id), acme.admin)
    refused(store, c.DisableUser(user_id=acme.user_id), acme.admin, "conflict", "user_id")
    refused(store, c.CreatePAT(user_id=acme.user_id, name="ci"), acme.admin, "conflict", "user_id")


def test_a_role_name_is_free_again_once_its_role_is_deleted(store: MemoryStore, acme: Tenant):
    refused(store, c.CreateRole(tenant_id=acme.id, name="READERS"), acme.admin, "conflict", "name")
    refused(store, c.CreateRole(tenant_id=acme.id, name="Admin"), acme.admin, "conflict", "name")
    store.run(c.DeleteRole(role_id=acme.role_id), acme.admin)
    again = store.run(c.CreateRole(tenant_id=acme.id, name="readers"), acme.admin)
    assert UUID(again["role_id"]) != acme.role_id
    refused(store, c.GrantRole(user_id=acme.user_id, role="nobody"), acme.admin, "not_found", "role")


def test_a_public_key_has_one_owner_per_tenant(store: MemoryStore, acme: Tenant):
    key = "A" * 43
    store.run(c.RegisterPublicKey(user_id=acme.user_id, public_key=key), store.root)
    refused(store, c.RegisterPublicKey(user_id=acme.admin_id, public_key=key), store.root, "conflict", "public_key")
    store.run(c.RemovePublicKey(user_id=acme.user_id, public_key=key), store.root)
    store.run(c.RegisterPublicKey(user_id=acme.admin_id, public_key=key), store.root)


def test_a_recovery_key_is_redeemed_once_and_by_itself_only(store: MemoryStore, acme: Tenant):
    key_id = UUID(store.run(c.IssueKey(user_id=acme.user_id, kind="recovery"), acme.admin)["key_id"])
    as_key = store.actor(key_id)
    refused(store, c.RedeemKey(key_id=uuid4(), password="a new password"), as_key, "forbidden", "token")
    store.run(c.RedeemKey(key_id=key_id, password="a new password"), as_key)
    assert store.aggregates[acme.user_id].password_hash == "hashed:a new password"
    refused(store, c.RedeemKey(key_id=key_id, password="another one"), as_key, "unauthenticated", "token")


def test_signing_keys_are_a_tenants_and_hs256_is_never_the_systems(store: MemoryStore, acme: Tenant):
    refused(store, c.CreateSigningKey(tenant_id=SYSTEM_TENANT_ID, alg="HS256"), store.root, "invalid_request", "alg")
    made = store.run(c.CreateSigningKey(alg="HS256"), acme.admin)
    assert made["tenant_id"] == str(acme.id) and made["secret"]
    kid = UUID(made["kid"])
    store.run(c.RetireSigningKey(kid=kid), acme.admin)
    refused(store, c.RetireSigningKey(kid=kid), acme.admin, "conflict", "kid")
