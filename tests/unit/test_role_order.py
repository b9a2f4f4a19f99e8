"""Roles with an order (wire.md §7.25, and §6.2's ``min_role``): the rules of an order, the
decision that sets one, and authorize's answer on the read model its events fold into."""

from __future__ import annotations

import pickle
from uuid import UUID

import pytest

from authbus.domain import commands as c
from authbus.domain import role_order
from authbus.domain.scopes import Scope
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.projections import queries
from tests.unit.memory_store import MemoryStore
from tests.unit.test_decisions import refused

DOC_READ = Scope("doc", "read", "*", "docs")
AUSTACK = ["user", "appAdmin", "admin", "root"]


def with_key(store: MemoryStore, tenant_id: UUID, username: str, roles: list[str]) -> tuple[UUID, UUID, str]:
    """A user of ``roles`` and its unscoped API key: (user id, key id, token)."""
    user_id = UUID(store.run(c.RegisterUser(tenant_id=tenant_id, username=username, roles=roles), store.root)["user_id"])
    issued = store.run(c.IssueKey(user_id=user_id, kind="api_key"), store.root)
    return user_id, UUID(issued["key_id"]), str(issued["token"])


class Austack:
    """A tenant ordered like austack's, ``user < appAdmin < admin < root``: an admin, alice
    (user and appAdmin, which carries doc:read), bob (user) and an auditor, each with an
    unscoped API key; a role ``readers`` left out of the order, held by bob."""

    def __init__(self, store: MemoryStore, name: str = "austack") -> None:
        self.store = store
        self.id = UUID(store.run(c.CreateTenant(name=name), store.root)["tenant_id"])
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, UUID] = {}
        self.register("admin", ["admin"])
        self.admin = store.actor(self.ids["admin-key"])
        self.app_admin = UUID(store.run(c.CreateRole(name="appAdmin", scopes=[DOC_READ]), self.admin)["role_id"])
        store.run(c.CreateRole(name="readers", scopes=[DOC_READ]), self.admin)
        self.register("alice", ["user", "appAdmin"])
        self.register("bob", ["user", "readers"])
        self.register("audrey", ["auditor"])
        store.run(c.SetRoleOrder(order=AUSTACK), self.admin)

    def register(self, username: str, roles: list[str]) -> None:
        user_id, key_id, self.tokens[username] = with_key(self.store, self.id, username, roles)
        self.ids[username], self.ids[f"{username}-key"] = user_id, key_id

    def pat(self, username: str, scopes: list[Scope]) -> str:
        made = self.store.run(c.CreatePAT(user_id=self.ids[username], name="ci", scopes=scopes), self.store.root)
        return str(made["token"])

    def order(self) -> list[str]:
        return queries.role_order_names(self.store.model, self.store.model.tenants[self.id])


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def austack(store: MemoryStore) -> Austack:
    return Austack(store)


def ask(store: MemoryStore, token: str, min_role: str | None, scope: tuple | None = None, tenant_id: UUID | None = None):
    """authorize's answer as (allowed, reason); ``scope`` is (domain, entity_type, operation, entity_id)."""
    domain, entity_type, operation, entity_id = scope or (None, None, None, None)
    decision = queries.authorize(
        store.model, token, 0.0, None, domain, entity_type, operation, entity_id, tenant_id, min_role=min_role
    )
    return decision.allowed, decision.reason


# ---------------------------------------------------------------- the rules of an order


@pytest.mark.parametrize(
    ("names", "misplaced"),
    [
        (["user", "appAdmin", "admin", "root"], None),
        (["appAdmin"], None),
        (["auditor", "user", "admin"], None),  # auditor goes anywhere
        (["user", "admin", "auditor"], None),
        (["admin", "user"], 1),
        (["user", "root", "admin"], 1),  # root is last or nowhere
        (["root", "user"], 0),
        (["admin", "appAdmin", "user", "root"], 2),
    ],
)
def test_the_built_ins_keep_user_below_admin_below_root(names, misplaced):
    assert role_order.misplaced(names) == misplaced


def test_root_ranks_above_every_role_listed_or_not():
    assert role_order.ranks(["user", "appAdmin"]) == {"user": 0, "appAdmin": 1, "root": 2}
    assert role_order.ranks(["user", "admin", "root"]) == {"user": 0, "admin": 1, "root": 2}
    assert role_order.DEFAULT_RANKS == {"user": 0, "auditor": 1, "admin": 2, "root": 3}


# ---------------------------------------------------------------- set_role_order


def test_an_order_keeps_role_ids_and_shows_names(store: MemoryStore, austack: Austack):
    tenant = store.aggregates[austack.id]
    assert tenant.role_order == ["user", str(austack.app_admin), "admin", "root"]  # type: ignore[attr-defined]
    assert store.log[-1] == "RoleOrderSet"
    assert austack.order() == AUSTACK
    store.run(c.SetRoleOrder(tenant_id=austack.id, order=["USER", "APPADMIN"]), store.root)  # any spelling, root implied
    assert austack.order() == ["user", "appAdmin", "root"]
    system = store.model.tenants[SYSTEM_TENANT_ID]  # a tenant that never set one has the default
    assert queries.role_order_names(store.model, system) == list(role_order.DEFAULT_ORDER)


@pytest.mark.parametrize(
    ("order", "code", "field"),
    [
        (["user", "appAdmin", "AppAdmin"], "invalid_request", "order[2]"),  # twice, in another spelling
        (["user", "user"], "invalid_request", "order[1]"),
        (["user", "nobody"], "not_found", "order[1]"),
        (["admin", "appAdmin", "user"], "invalid_request", "order[2]"),
        (["user", "root", "appAdmin"], "invalid_request", "order[1]"),
    ],
)
def test_a_bad_order_is_refused_naming_its_place(store: MemoryStore, austack: Austack, order, code, field):
    refused(store, c.SetRoleOrder(order=order), austack.admin, code, field)


def test_only_the_tenants_admin_or_root_orders_its_roles(store: MemoryStore, austack: Austack):
    other = Austack(store, "other")
    refused(store, c.SetRoleOrder(tenant_id=other.id, order=["user"]), austack.admin, "forbidden", "tenant_id")
    refused(store, c.SetRoleOrder(order=["user"]), store.actor(austack.ids["alice-key"]), "forbidden", None)
    refused(store, c.SetRoleOrder(tenant_id=other.id, order=["appAdmin", "ghost"]), store.root, "not_found", "order[1]")
    store.run(c.DisableTenant(tenant_id=other.id), store.root)
    refused(store, c.SetRoleOrder(tenant_id=other.id, order=["user"]), store.root, "conflict", "tenant_id")


def test_a_scoped_credential_needs_role_update_on_the_tenant(store: MemoryStore, austack: Austack):
    pat_id = UUID(store.run(c.CreatePAT(user_id=austack.ids["admin"], name="ci", scopes=[]), store.root)["pat_id"])
    as_pat = store.actor(pat_id)
    refused(store, c.SetRoleOrder(order=["user"]), as_pat, "forbidden", None)
    wanted = Scope("role", "update", str(austack.id), "authbus")
    store.run(c.AddScope(pat_id=pat_id, scope=wanted), store.root)
    store.run(c.SetRoleOrder(order=["user"]), as_pat)


# ---------------------------------------------------------------- authorize's min_role


def test_min_role_compares_the_highest_role_held_with_the_order(store: MemoryStore, austack: Austack):
    alice, bob, admin = austack.tokens["alice"], austack.tokens["bob"], austack.tokens["admin"]
    assert ask(store, alice, "appAdmin") == (True, "role:appAdmin")
    assert ask(store, alice, "user") == (True, "role:appAdmin")  # the highest role held is named
    assert ask(store, alice, "admin") == (False, "role_too_low")
    assert ask(store, admin, "APPADMIN") == (True, "role:admin")  # any spelling
    assert ask(store, bob, "appAdmin") == (False, "role_too_low")
    assert ask(store, bob, "user") == (True, "role:user")  # readers has no rank: it lifts nobody
    assert ask(store, admin, "readers") == (False, "unranked_role")  # nobody but root is "at least" it
    assert ask(store, austack.tokens["audrey"], "user") == (False, "role_too_low")  # auditor left out of this order
    assert ask(store, alice, "superuser") == (False, "unknown_role")
    assert ask(store, alice, "appAdmin", tenant_id=austack.id) == (True, "role:appAdmin")
    assert ask(store, alice, "user", tenant_id=SYSTEM_TENANT_ID) == (False, "other_tenant")


def test_root_is_at_least_every_role_of_the_tenant_asked_about(store: MemoryStore, austack: Austack):
    root = with_key(store, SYSTEM_TENANT_ID, "root-2", ["root"])[2]
    for wanted in (*AUSTACK, "readers"):
        assert ask(store, root, wanted, tenant_id=austack.id) == (True, "role:root"), wanted
    assert ask(store, root, "admin") == (True, "role:root")
    assert ask(store, root, "appAdmin") == (False, "unknown_role")  # no such role in its own tenant


def test_a_credential_restricted_to_scopes_carries_no_rank(store: MemoryStore, austack: Austack):
    pat = austack.pat("admin", [DOC_READ])
    assert ask(store, pat, "user") == (False, "scoped_credential")
    scoped_key = store.run(c.IssueKey(user_id=austack.ids["alice"], kind="api_key", scopes=[DOC_READ]), store.root)
    assert ask(store, str(scoped_key["token"]), "user") == (False, "scoped_credential")


def test_with_a_scope_too_both_must_hold(store: MemoryStore, austack: Austack):
    alice = austack.tokens["alice"]
    read, write = ("docs", "doc", "read", "1"), ("docs", "doc", "delete", "1")
    decision = queries.authorize(store.model, alice, 0.0, None, *read, min_role="appAdmin")
    assert (decision.allowed, decision.reason, decision.matched_scope) == (True, "role:appAdmin", DOC_READ)
    assert ask(store, alice, "appAdmin", write) == (False, "no_matching_scope")
    assert ask(store, alice, "admin", read) == (False, "role_too_low")


def test_a_deleted_role_drops_out_and_its_name_back_is_another_role(store: MemoryStore, austack: Austack):
    alice = austack.tokens["alice"]
    store.run(c.DeleteRole(role_id=austack.app_admin), austack.admin)
    assert austack.order() == ["user", "admin", "root"]
    assert store.aggregates[austack.id].role_order == ["user", str(austack.app_admin), "admin", "root"]  # type: ignore[attr-defined]
    assert ask(store, alice, "appAdmin") == (False, "unknown_role")
    assert ask(store, alice, "user") == (True, "role:user")
    store.run(c.CreateRole(name="appAdmin"), austack.admin)  # a new role: not ranked, not alice's
    assert austack.order() == ["user", "admin", "root"]
    assert ask(store, austack.tokens["admin"], "appAdmin") == (False, "unranked_role")
    store.run(c.SetRoleOrder(order=AUSTACK), austack.admin)
    assert ask(store, alice, "appAdmin") == (False, "role_too_low")


def test_a_tenant_without_an_order_ranks_user_auditor_admin(store: MemoryStore):
    tenant_id = UUID(store.run(c.CreateTenant(name="plain"), store.root)["tenant_id"])
    user, auditor, admin = (with_key(store, tenant_id, name, [name])[2] for name in ("user", "auditor", "admin"))
    assert ask(store, auditor, "user") == (True, "role:auditor")
    assert ask(store, auditor, "admin") == (False, "role_too_low")
    assert ask(store, admin, "auditor") == (True, "role:admin")
    assert ask(store, user, "auditor") == (False, "role_too_low")


def test_the_ranks_survive_a_snapshot(store: MemoryStore, austack: Austack):
    store.model = pickle.loads(pickle.dumps(store.model))
    assert austack.order() == AUSTACK
    assert ask(store, austack.tokens["alice"], "appAdmin") == (True, "role:appAdmin")
