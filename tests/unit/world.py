"""A read model folded in memory from domain events, with a credential of every kind: the
fastest tier's stand-in for a running instance (no store, no NATS)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from authbus.domain import tokens
from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.decisions.logins import access_claims
from authbus.domain.session import Session
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import SYSTEM_TENANT_ID, Tenant
from authbus.domain.unit_of_work import DEFAULT_TERMS
from authbus.domain.user import User
from authbus.infra.crypto import keys
from authbus.projections.read_model import ReadModel

META = {"actor": "system", "correlation_id": "unit"}


def _token(kind: str, credential_id: UUID) -> str:
    return tokens.mint(kind, credential_id, os.urandom(tokens.SECRET_BYTES))


@dataclass
class World:
    model: ReadModel = field(default_factory=ReadModel)
    keyring: keys.Keyring = field(default_factory=lambda: keys.Keyring(keys.KeyWrap(os.urandom(32))))
    tokens: dict[str, str] = field(default_factory=dict)  # what each credential kind presents
    ids: dict[str, UUID] = field(default_factory=dict)

    @property
    def now(self) -> float:
        return time.time()

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                self.model.apply(self.model.position + 1, event)

    def signing_key(self, tenant_id: UUID, alg: str) -> tuple[SigningKey, str | None]:
        kid = uuid4()
        secret = tokens.base62(int.from_bytes(os.urandom(32), "big"), 43) if alg == "HS256" else None
        made = keys.generate(alg, str(kid), self.keyring._wrap, secret.encode() if secret else None)
        key = SigningKey(
            id=kid, tenant_id=tenant_id, alg=alg, public_jwk=made.public_jwk, sealed_private=made.sealed_private, **META
        )
        self.add(key)
        return key, secret


def make_world(scopes: list[dict[str, Any]] | None = None) -> World:
    """A system tenant with its EdDSA key; a tenant with an HS256 key; a user holding a PAT
    (``scopes``), an unscoped API key, a recovery key and a session with an access token."""
    w = World()
    now = datetime.now(UTC)
    system = Tenant(name="system", id=SYSTEM_TENANT_ID, **META)
    tenant = Tenant(name="acme", **META)
    user = User(tenant_id=tenant.id, username="alice", kind="user", roles=["user"], password_hash=None, **META)
    w.add(system, tenant, user)
    system_key, _ = w.signing_key(SYSTEM_TENANT_ID, "EdDSA")
    hs256, secret = w.signing_key(tenant.id, "HS256")
    w.ids.update(tenant=tenant.id, user=user.id, hs256=hs256.id)
    w.tokens["hs256_secret"] = secret or ""
    for kind, cls, extra in (
        ("pat", PersonalAccessToken, {"name": "ci", "description": "", "scopes": scopes or []}),
        ("api_key", Key, {"kind": "api_key", "name": "k", "scopes": None}),
        ("recovery", Key, {"kind": "recovery", "name": "r", "scopes": None}),
    ):
        cid = uuid4()
        token = _token(kind, cid)
        w.add(
            cls(
                id=cid,
                user_id=user.id,
                tenant_id=tenant.id,
                secret_hash=tokens.hash_for_storage(token),
                expires_at=now + timedelta(days=1),
                **extra,
                **META,
            )
        )
        w.tokens[kind], w.ids[kind] = token, cid
    session_id = uuid4()
    refresh = _token("refresh", session_id)
    session = Session(
        id=session_id,
        user_id=user.id,
        tenant_id=tenant.id,
        method="password",
        refresh_hash=tokens.hash_for_storage(refresh),
        expires_at=now + timedelta(days=1),
        source="",
        **META,
    )
    w.add(session)
    w.tokens["refresh"] = refresh
    view = w.model.signing_keys[system_key.kid]
    w.tokens["access_token"] = w.keyring.sign(view, access_claims(user, session, int(now.timestamp()), DEFAULT_TERMS))
    return w
