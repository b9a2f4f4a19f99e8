"""Scope matching and the read-model fold: pure, no I/O."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from authbus.domain.credentials import PersonalAccessToken
from authbus.domain.scopes import Scope, find_grant
from authbus.domain.tenant import Tenant
from authbus.domain.user import User
from authbus.projections.read_model import ReadModel

META = {"actor": "system", "correlation_id": "test"}


def held(*scopes: Scope) -> dict:
    return {s.key: s for s in scopes}


@pytest.mark.parametrize(
    ("scope", "request_", "granted"),
    [
        (Scope("doc", "read", "42", "docs"), ("docs", "doc", "read", "42"), True),
        (Scope("doc", "read", "42", "docs"), ("docs", "doc", "read", "43"), False),
        (Scope("doc", "read", "*", "docs"), ("docs", "doc", "read", "43"), True),
        (Scope("doc", "read", "*", "docs"), ("other", "doc", "read", "43"), False),
        (Scope("doc", "read", "*", None), ("other", "doc", "read", "43"), True),
        (Scope("doc", "read", "*", None), (None, "doc", "read", "43"), True),
        (Scope("doc", "read", "*", "docs"), (None, "doc", "read", "43"), False),
        (Scope("doc", "read", "*", None), ("docs", "doc", "update", "43"), False),
        (Scope("doc", "read", "*", None), ("docs", "img", "read", "43"), False),
    ],
)
def test_scope_matching(scope, request_, granted):
    assert (find_grant(held(scope), *request_) is not None) is granted


def test_a_thousand_scopes_cost_the_same_lookups_as_one():
    many = held(*(Scope("doc", "read", str(i), "docs") for i in range(1000)))
    assert find_grant(many, "docs", "doc", "read", "999") == Scope("doc", "read", "999", "docs")
    assert find_grant(many, "docs", "doc", "read", "1000") is None


def _events():
    tenant = Tenant(name="acme", **META)
    user = User(tenant_id=tenant.id, username="alice", kind="user", roles=["user"], password_hash=None, **META)
    pat = PersonalAccessToken(
        id=uuid4(),
        user_id=user.id,
        tenant_id=tenant.id,
        name="ci",
        description="",
        secret_hash="00" * 32,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        scopes=[],
        **META,
    )
    pat.add_scope(scope=Scope("doc", "read", "*").to_dict(), now=datetime(2029, 1, 1, tzinfo=UTC), **META)
    pat.revoke(reason="lost", **META)
    events = [*tenant.collect_events(), *user.collect_events(), *pat.collect_events()]
    return list(enumerate(events, start=1)), pat.id


def test_apply_is_idempotent_by_position():
    positioned, pat_id = _events()
    once, twice = ReadModel(), ReadModel()
    once.apply_all(positioned)
    twice.apply_all(positioned)
    twice.apply_all(positioned[1:])  # a replayed stretch changes nothing
    for model in (once, twice):
        credential = model.credentials[pat_id]
        assert (credential.status, credential.revoked_reason, len(credential.scopes)) == ("revoked", "lost", 1)
        assert model.position == len(positioned)
