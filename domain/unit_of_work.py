"""The port a decision reads and changes aggregates through.

A decision gets aggregates from it, changes them, and hands them back with ``add``; the
caller (infra/application.py) saves everything collected in one transaction, so a decision that
raises appends nothing.  Work a decision cannot do purely (minting a secret, hashing a
password, signing) is asked of the unit too, so ``domain/`` stays free of I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)


class Meta(TypedDict):
    actor: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class TokenTerms:
    """What the deployment sets for the tokens a login hands out (AUTHBUS_* settings)."""

    issuer: str = "authbus"  # ``iss``: an issuer URL, for RFC 9068
    audience: str = "authbus"  # ``aud``
    access_seconds: int = 15 * 60  # an access token's lifetime
    session_seconds: int = 30 * 86400  # a session's, and so its refresh tokens'

    def of_tenant(self, policy: dict[str, Any]) -> TokenTerms:
        """These terms as a tenant's policy (domain/tenant.py) sets them for its own tokens."""
        return dataclasses.replace(
            self,
            audience=policy.get("audience") or self.audience,
            access_seconds=policy.get("access_token_seconds") or self.access_seconds,
            session_seconds=policy.get("session_seconds") or self.session_seconds,
        )


DEFAULT_TERMS = TokenTerms()


class UnitOfWork(Protocol):
    now: datetime
    meta: Meta  # carried by every event
    terms: TokenTerms

    def get(self, cls: type[A], aggregate_id: UUID, field: str) -> A:
        """The aggregate, or raises ``not_found(field)``."""

    def exists(self, aggregate_id: UUID) -> bool: ...
    def add(self, *aggregates: Aggregate) -> None: ...
    def mint(self, kind: str, credential_id: UUID) -> str: ...
    def hash_password(self, password: str) -> str: ...
    def password_matches(self, password: str, password_hash: str) -> bool: ...
    def new_signing_key(
        self, alg: str, kid: str, private_key: str | None = None
    ) -> tuple[dict[str, str] | None, str, str | None]:
        """(public JWK, sealed private key, HS256 secret shown once or None): a new key, or
        ``private_key`` (PEM) taken in; InvalidRequest on ``private_key`` if it is not a sound
        key of ``alg``."""

    def sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        """A JWT over ``claims`` from the tenant's newest active asymmetric key, else the system's."""
