"""The admin and audit reads' reply structs (handlers/replies.py): each read answers the very
bytes the projections' dicts make (docs/wire.md §8, §9.2), and a field that does not apply
is absent, not null."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.policy import Actor
from authbus.domain.role import Role
from authbus.domain.session import Session
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import SYSTEM_TENANT_ID, Tenant
from authbus.domain.user import User
from authbus.handlers.admin_reads import ADMIN_READS
from authbus.handlers.audit_reads import AUDIT_READS
from authbus.handlers.replies import Scope
from authbus.projections import audit, queries
from authbus.projections.read_model import ReadModel

META = {"actor": "system", "correlation_id": "unit"}
SCOPE = {"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}
NOW = time.time()
LATER = datetime.now(UTC) + timedelta(days=1)
ROOT = Actor(uuid4(), SYSTEM_TENANT_ID, frozenset({"root"}), uuid4(), "api_key", None)
FACTS = {"id", "kind", "expires_at", "user_id", "tenant_id", "name", "status", "created_at"}
FACTS |= {"issued_by", "updated_at", "last_used_at"}  # SuperMQ's record of a key
RECORD = FACTS | {"scopes"}  # what every credential detail shows


class Log:
    """Events folded at consecutive positions, and kept: the audit reads read them back as
    a running instance's store (the part of handlers' Backend they use)."""

    def __init__(self) -> None:
        self.model = ReadModel()
        self.events: list[tuple[int, Any]] = []

    def add(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                self.events.append((len(self.events) + 1, event))
                self.model.apply(len(self.events), event)

    async def read_log(self, start: int, limit: int) -> list[tuple[int, Any]]:
        return self.events[start - 1 : start - 1 + limit]


@pytest.fixture(scope="module")
def log() -> Log:
    """A user with a live PAT and a revoked one, an API key revoked without a reason, a
    redeemed recovery key, a session ended by logout, a failed and a succeeded login; a
    tenant role placed in the tenant's role order and an HS256 signing key."""
    log = Log()
    tenant = Tenant(name="acme", **META)
    user = User(tenant_id=tenant.id, username="alice", kind="user", roles=["user"], password_hash=None, **META)
    log.add(tenant, user)
    owner = {"user_id": user.id, "tenant_id": tenant.id}
    secret = {**owner, "secret_hash": "00" * 32, "expires_at": LATER}
    live = PersonalAccessToken(id=uuid4(), name="live", description="d", scopes=[SCOPE], **secret, **META)
    gone = PersonalAccessToken(id=uuid4(), name="gone", description="", scopes=[SCOPE], **secret, **META)
    gone.revoke(reason="leaked", **META)
    api_key = Key(id=uuid4(), kind="api_key", name="k", scopes=None, **secret, **META)
    api_key.revoke(reason="", **META)
    recovery = Key(id=uuid4(), kind="recovery", name="r", scopes=None, **secret, **META)
    recovery.redeem(now=datetime.now(UTC), **META)
    session = Session(id=uuid4(), method="password", refresh_hash="00" * 32, expires_at=LATER, source="", **owner, **META)
    session.revoke(reason="logout", **META)
    user.login_succeeded(method="password", session_id=session.id, source="laptop", **META)
    user.login_failed(method="password", reason="bad_password", source="", **META)
    role = Role(id=uuid4(), tenant_id=tenant.id, name="editors", description="", scopes=[SCOPE], **META)
    key = SigningKey(id=uuid4(), tenant_id=tenant.id, alg="HS256", public_jwk=None, sealed_private="sealed", **META)
    tenant.set_role_order(order=["user", str(role.id), "admin"], names=["user", "editors", "admin"], **META)
    log.add(live, gone, api_key, recovery, session, user, role, key, tenant)
    return log


def ask(log: Log, name: str, **fields: Any) -> msgspec.Struct:
    cls, answer = ADMIN_READS[name]
    return answer(log.model, ROOT, msgspec.convert(fields, cls), NOW)


def encoded(reply: Any) -> bytes:
    return msgspec.json.encode(reply)


def keys(struct: msgspec.Struct) -> set[str]:
    return set(msgspec.json.decode(encoded(struct)))


def test_admin_reads_answer_the_bytes_of_the_projections_details(log):
    model, position = log.model, log.model.position
    (user,) = model.principals.values()
    tenant, user_id = user.tenant_id, user.id
    (role,) = model.roles.values()
    (key,) = model.signing_keys.values()
    owned = [model.credentials[i] for i in model.credentials_by_owner[user_id]]
    pats, other_keys = [c for c in owned if c.kind == "pat"], [c for c in owned if c.kind != "pat"]
    (session,) = model.sessions.values()

    def page(items: list[Any]) -> dict[str, Any]:
        return {"items": items, "next": None, "position": position}

    def described(view: Any) -> dict[str, Any]:  # a tenant as wire.md §8 shows it
        names = ("name", "disabled", "tags", "metadata", "created_at", "created_by", "updated_at", "updated_by", "policy")
        return {"id": str(view.id), **{name: getattr(view, name) for name in names}, "role_order": order[view.id]}

    order = {view.id: ["user", "auditor", "admin", "root"] for view in model.tenants.values()}
    order[tenant] = ["user", "editors", "admin", "root"]  # the tenant's own: auditor left out, root always last

    expected = {
        ("get_tenant", "tenant_id", tenant): {"tenant": described(model.tenants[tenant]), "position": position},
        ("list_tenants", "limit", 500): page([described(view) for view in model.tenants.values()]),
        ("get_user", "user_id", user_id): {"user": queries.user_detail(user), "position": position},
        ("list_users", "tenant_id", tenant): page([queries.user_detail(user)]),
        ("search_users", "tenant_id", tenant): page([queries.user_detail(user)]),
        ("get_pat", "pat_id", pats[1].id): {"pat": queries.credential_detail(pats[1], NOW), "position": position},
        ("get_key", "key_id", other_keys[0].id): {"key": queries.credential_detail(other_keys[0], NOW), "position": position},
        ("list_pats", "user_id", user_id): page([queries.credential_detail(c, NOW) for c in pats]),
        ("list_keys", "user_id", user_id): page([queries.credential_detail(c, NOW) for c in other_keys]),
        ("list_signing_keys", "tenant_id", tenant): page(
            [{"kid": key.kid, "alg": "HS256", "status": "active", "tenant_id": str(tenant), "created_at": key.created_at}]
        ),
        ("list_sessions", "user_id", user_id): page([queries.session_detail(session, NOW)]),
        ("login_activity", "user_id", user_id): page(list(reversed(model.login_activity[user_id]))),
        ("get_role", "role_id", role.id): {"role": queries.role_detail(role), "position": position},
        ("list_roles", "tenant_id", tenant): page([queries.role_detail(role)]),
    }
    assert {name for name, _, _ in expected} == set(ADMIN_READS)
    for (name, field, value), reply in expected.items():
        assert encoded(ask(log, name, **{field: value})) == encoded(reply), name


def test_a_credential_shows_description_and_its_revocation_only_where_they_apply(log):
    user_id = next(iter(log.model.principals))
    live, gone = ask(log, "list_pats", user_id=user_id).items
    assert keys(live) == RECORD | {"description"} and live.description == "d"
    assert keys(gone) == RECORD | {"description", "revoked_reason", "revoked_at"} and gone.revoked_reason == "leaked"
    assert live.scopes == gone.scopes == [Scope(**SCOPE)]
    api_key, recovery = ask(log, "list_keys", user_id=user_id).items
    assert keys(api_key) == RECORD | {"revoked_reason", "revoked_at"} and api_key.revoked_reason == ""  # an empty reason is one
    assert keys(recovery) == RECORD and (recovery.status, recovery.scopes) == ("redeemed", None)
    assert keys(ask(log, "get_pat", pat_id=live.id)) == {"pat", "position"}


def test_a_login_attempt_has_a_reason_only_when_it_failed(log):
    failed, succeeded = ask(log, "login_activity", user_id=next(iter(log.model.principals))).items  # newest first
    assert keys(failed) == {"at", "outcome", "method", "source", "reason"} and failed.reason == "bad_password"
    assert keys(succeeded) == {"at", "outcome", "method", "source"} and succeeded.outcome == "succeeded"


def test_a_session_always_shows_its_revoked_reason(log):
    (session,) = ask(log, "list_sessions", user_id=next(iter(log.model.principals))).items
    assert "revoked_reason" in keys(session) and (session.status, session.revoked_reason) == ("revoked", "logout")


async def audit_read(log: Log, name: str, **fields: Any) -> msgspec.Struct:
    cls, answer = AUDIT_READS[name]
    return await answer(log, ROOT, msgspec.convert(fields, cls))


async def test_audit_reads_answer_the_bytes_of_the_projections_answers(log):
    model, position = log.model, log.model.position
    lines = audit.LogScan(audit.LogFilter(), model, fold=False).lines(log.events)
    page = await audit_read(log, "audit_log", limit=500)
    assert encoded(page) == encoded({"items": lines, "next": None, "position": position})
    signing_key, role_order = page.items[-2:]
    assert set(signing_key.data) == {"tenant_id", "alg", "public_jwk"}  # the sealed private half stays in the store
    assert (role_order.type, role_order.aggregate, role_order.data["names"]) == (
        "RoleOrderSet",
        "tenant",
        ["user", "editors", "admin"],
    )

    pat = next(c for c in model.credentials.values() if c.name == "gone")
    replay = audit.Replay(audit.Point(position=position))
    replay.feed(log.events)
    events = audit.history(log.events, audit.related(replay.model, pat.id), position)
    answer = await audit_read(log, "audit_as_of", at_position=position, credential_id=pat.id)
    assert encoded(answer) == encoded({**audit.as_of(replay, events, pat.id, None), "position": position})
    assert keys(answer) == {"at", "valid", "reason", "credential", "principal", "scopes", "events", "position"}
    assert keys(answer.credential) == FACTS | {"description", "revoked_reason", "revoked_at"}  # its scopes stand beside it
    assert (answer.valid, answer.reason, answer.scopes) == (False, "revoked", [Scope(**SCOPE)])

    digest = await audit_read(log, "rebuild_check")
    assert encoded(digest) == encoded({"digest": audit.digest(model), "position": position})


async def test_as_of_before_a_credential_existed_names_nothing(log):
    pat = next(iter(log.model.credentials))
    answer = await audit_read(log, "audit_as_of", at_position=1, credential_id=pat)
    assert (answer.valid, answer.reason, answer.at.position) == (False, "unknown", 1)
    assert answer.credential is answer.principal is answer.scopes is None and answer.events == []
