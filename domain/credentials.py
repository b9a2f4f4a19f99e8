"""Secret-bearing credentials: personal access tokens and typed keys.

Both hold only the SHA-256 of their secret.  A PAT is limited to its scopes; an API key
acts as its owner (limited to its scopes when it was issued with some); recovery and
invitation keys are single-use and short-lived.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict

KEY_KINDS = ("api_key", "recovery", "invitation")


class _Credential(Aggregate):
    """What PATs and keys share: an owner, a secret digest, an expiry, scopes, a status.

    Subclasses set ``revoked`` and ``expires_at`` in their created event and define
    ``_revoke`` as their own named revocation event.
    """

    if TYPE_CHECKING:  # set by each subclass's created event (eventsourcing reads real annotations)
        user_id: UUID
        revoked: bool
        expires_at: datetime | None
        scopes: list[dict[str, str | None]] | None  # None: a key that acts as its owner

    def require_active(self, now: datetime) -> None:
        if self.revoked:
            raise Conflict("credential is revoked")
        if self.expires_at is not None and self.expires_at <= now:
            raise Conflict("credential has expired")

    def revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        if self.revoked:
            raise Conflict("credential is already revoked")
        self._revoke(actor=actor, correlation_id=correlation_id, reason=reason)  # type: ignore[attr-defined]


class PersonalAccessToken(_Credential):
    if TYPE_CHECKING:
        scopes: list[dict[str, str | None]]  # a PAT always has its list

    @event("PATCreated")
    def __init__(
        self,
        id: UUID,
        user_id: UUID,
        tenant_id: UUID,
        name: str,
        description: str,
        secret_hash: str,
        expires_at: datetime | None,
        scopes: list[dict[str, str | None]],
        actor: str,
        correlation_id: str,
    ) -> None:
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.name = name
        self.description = description
        self.secret_hash = secret_hash
        self.expires_at = expires_at
        self.scopes = list(scopes)
        self.revoked = False

    def add_scope(self, scope: dict[str, str | None], actor: str, correlation_id: str) -> None:
        if scope in self.scopes:
            raise Conflict("the PAT already holds this scope", field="scope")
        self._add_scope(scope=scope, actor=actor, correlation_id=correlation_id)

    def remove_scope(self, scope: dict[str, str | None], actor: str, correlation_id: str) -> None:
        if scope not in self.scopes:
            raise Conflict("the PAT does not hold this scope", field="scope")
        self._remove_scope(scope=scope, actor=actor, correlation_id=correlation_id)

    @event("ScopeAdded")
    def _add_scope(self, scope: dict[str, str | None], actor: str, correlation_id: str) -> None:
        self.scopes.append(scope)

    @event("ScopeRemoved")
    def _remove_scope(self, scope: dict[str, str | None], actor: str, correlation_id: str) -> None:
        self.scopes.remove(scope)

    @event("PATSecretReset")
    def reset_secret(self, secret_hash: str, expires_at: datetime | None, actor: str, correlation_id: str) -> None:
        self.secret_hash = secret_hash
        self.expires_at = expires_at

    @event("PATRevoked")
    def _revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        self.revoked = True


class Key(_Credential):
    @event("KeyIssued")
    def __init__(
        self,
        id: UUID,
        user_id: UUID,
        tenant_id: UUID,
        kind: str,
        name: str,
        secret_hash: str,
        expires_at: datetime | None,
        scopes: list[dict[str, str | None]] | None,
        actor: str,
        correlation_id: str,
    ) -> None:
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.kind = kind
        self.name = name
        self.secret_hash = secret_hash
        self.expires_at = expires_at
        self.scopes = None if scopes is None else list(scopes)
        self.revoked = False
        self.redeemed = False

    @property
    def single_use(self) -> bool:
        return self.kind != "api_key"

    def require_active(self, now: datetime) -> None:
        super().require_active(now)
        if self.redeemed:
            raise Conflict("key was already redeemed")

    def revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        if self.redeemed:
            raise Conflict("key was already redeemed")
        super().revoke(actor=actor, correlation_id=correlation_id, reason=reason)

    def redeem(self, now: datetime, actor: str, correlation_id: str) -> None:
        self.require_active(now)
        if not self.single_use:
            raise Conflict("only recovery and invitation keys are redeemed")
        self._redeem(actor=actor, correlation_id=correlation_id)

    @event("KeyRedeemed")
    def _redeem(self, actor: str, correlation_id: str) -> None:
        self.redeemed = True

    @event("KeyRevoked")
    def _revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        self.revoked = True
