"""The verified-bearer cache beside the read model: it saves the parse, the hash and the
signature check of a bearer seen before, and never vouches for more than a fresh check
would.  Pure, no I/O."""

import pickle
import secrets
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import pytest

from authbus.domain import tokens
from authbus.domain.credentials import PersonalAccessToken
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import Tenant
from authbus.domain.user import User
from authbus.projections import jwt_tokens, queries
from authbus.projections.memos import Bearers, Views
from authbus.projections.read_model import ReadModel

META = {"actor": "system", "correlation_id": "test"}
HS256_SECRET = secrets.token_bytes(32)


class Keys:
    """VerificationKeys for one HS256 key, without the KEK."""

    def verification_keys(self, key):
        return (HS256_SECRET,)


class World:
    def __init__(self) -> None:
        self.model = ReadModel()
        self.bearers = Bearers()
        self.position = 0
        self.tenant = Tenant(name="acme", **META)
        self.user = User(tenant_id=self.tenant.id, username="alice", kind="user", roles=["user"], password_hash=None, **META)
        self.fold(self.tenant, self.user)

    def fold(self, *aggregates) -> None:
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                self.position += 1
                self.model.apply(self.position, event)

    def pat(self) -> tuple[PersonalAccessToken, str]:
        pat_id = uuid4()
        token = tokens.mint("pat", pat_id, secrets.token_bytes(32))
        pat = PersonalAccessToken(
            id=pat_id,
            user_id=self.user.id,
            tenant_id=self.tenant.id,
            name="ci",
            description="",
            secret_hash=tokens.hash_for_storage(token),
            expires_at=None,
            scopes=[],
            **META,
        )
        self.fold(pat)
        return pat, token

    def verify(self, token: str, now: float | None = None) -> str | None:
        return queries.verify(self.model, token, time.time() if now is None else now, Keys(), self.bearers).reason


@pytest.fixture
def world() -> World:
    return World()


def test_a_reset_secret_ends_the_old_token_even_when_it_was_remembered(world):
    pat, old = world.pat()
    assert world.verify(old) is None and old in world.bearers
    new = tokens.mint("pat", pat.id, secrets.token_bytes(32))
    pat.reset_secret(secret_hash=tokens.hash_for_storage(new), expires_at=None, **META)
    world.fold(pat)
    assert world.verify(old) == "unknown"
    assert world.verify(new) is None


def test_a_remembered_token_still_answers_revoked_and_disabled(world):
    pat, token = world.pat()
    assert world.verify(token) is None
    world.user.disable(reason="left", **META)
    world.fold(world.user)
    assert world.verify(token) == "disabled"
    pat.revoke(reason="lost", **META)
    world.fold(pat)
    assert world.verify(token) == "revoked"


def test_a_wrong_secret_is_never_remembered(world):
    pat, _token = world.pat()
    wrong = tokens.mint("pat", pat.id, secrets.token_bytes(32))
    assert world.verify(wrong) == "unknown"
    assert wrong not in world.bearers


def test_the_cache_is_bounded_and_forgets_the_oldest_first(world):
    world.bearers = Bearers(kept=3)
    minted = [world.pat()[1] for _ in range(5)]
    for token in minted:
        assert world.verify(token) is None
    assert list(world.bearers) == minted[2:]
    assert world.verify(minted[0]) is None  # forgotten, so checked in full again


def test_a_remembered_jwt_expires_and_follows_its_key(world):
    key = SigningKey(id=uuid4(), tenant_id=world.tenant.id, alg="HS256", public_jwk=None, sealed_private="sealed", **META)
    world.fold(key)
    now = int(time.time())
    claims = {"tnd": str(world.tenant.id), "sub": "device-7", "iat": now, "exp": now + 60, "per": {"docs": {"doc/*": "R"}}}
    token = jwt.encode(claims, HS256_SECRET, algorithm="HS256", headers={"kid": key.kid})
    assert world.verify(token) is None and token in world.bearers
    assert world.verify(token, now=now + 60 + jwt_tokens.LEEWAY_SECONDS + 1) == "expired"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert world.verify(forged) == "bad_signature"
    key.revoke(reason="leaked", **META)
    world.fold(key)
    assert world.verify(token) == "revoked"


def test_views_follow_role_changes_and_a_reset_secret(world):
    pat, token = world.pat()
    views = Views()

    def shown() -> tuple[dict, dict]:
        verdict = queries.verify(world.model, token, time.time(), Keys(), world.bearers)
        return views.credential(verdict.credential), views.principal(verdict.principal)

    credential, principal = shown()
    assert principal["roles"] == ["user"] and credential["expires_at"] is None
    assert shown() == (credential, principal) and shown()[1] is principal  # built once
    world.user.grant_role(role="auditor", **META)
    world.fold(world.user)
    assert shown()[1]["roles"] == ["user", "auditor"]
    token = tokens.mint("pat", pat.id, secrets.token_bytes(32))
    pat.reset_secret(secret_hash=tokens.hash_for_storage(token), expires_at=datetime.now(UTC) + timedelta(days=1), **META)
    world.fold(pat)
    assert shown()[0]["expires_at"] is not None


def test_verifying_changes_nothing_in_the_fold(world):
    """The cache lives beside the model: a snapshot taken after verifies is the one before."""
    _, token = world.pat()
    before = pickle.dumps(world.model)
    assert world.verify(token) is None and token in world.bearers
    assert pickle.dumps(world.model) == before
    restored = pickle.loads(before)
    assert queries.verify(restored, token, time.time(), Keys()).valid


def test_a_use_is_noted_once_until_recorded_and_again_only_a_minute_after(world):
    world.bearers = Bearers(notes_uses=True)
    pat, token = world.pat()
    now = time.time()
    for later in (0.0, 1.0, 2.0):  # the first use of a burst is the one noted
        assert world.verify(token, now + later) is None
    assert world.bearers.take_uses(10) == {pat.id: ("pat", now)} and not world.bearers.uses
    at = datetime.fromtimestamp(now, UTC)
    assert pat.used(at=at, **META) and not pat.used(at=at + timedelta(seconds=59), **META)  # once a minute
    world.fold(pat)
    world.verify(token, now + 30)
    assert not world.bearers.uses  # recorded less than a minute ago
    world.verify(token, now + 61)
    assert world.bearers.uses == {pat.id: ("pat", now + 61)}


def test_no_use_is_noted_for_a_refused_bearer_or_by_a_node_that_records_none(world):
    pat, token = world.pat()
    world.verify(token)
    assert not world.bearers.uses  # Bearers() notes none: an audit's verify, a node with use_interval 0
    world.bearers = Bearers(notes_uses=True)
    pat.revoke(reason="lost", **META)
    world.fold(pat)
    assert world.verify(token) == "revoked" and not world.bearers.uses
    assert not pat.used(at=datetime.now(UTC), **META)  # nor is a use of a revoked credential recorded


def test_taken_uses_come_oldest_first_and_at_most_as_many_as_asked(world):
    world.bearers = Bearers(notes_uses=True)
    minted = [world.pat() for _ in range(3)]
    for n, (_, token) in enumerate(minted):
        world.verify(token, 1000.0 + n)
    assert list(world.bearers.take_uses(2)) == [pat.id for pat, _ in minted[:2]]
    assert list(world.bearers.uses) == [minted[2][0].id]
