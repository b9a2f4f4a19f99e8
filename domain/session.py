"""Session: one login and its family of refresh tokens (RFC 9700 §4.14.2).

Each refresh token is single-use: using it rotates to a new one.  Presenting one that was
already used means it leaked, so the whole session is revoked, and with it every access
token it issued (they carry the session id).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict


class Session(Aggregate):
    @event("SessionStarted")
    def __init__(
        self,
        id: UUID,
        user_id: UUID,
        tenant_id: UUID,
        method: str,
        refresh_hash: str,
        expires_at: datetime,
        source: str,
        actor: str,
        correlation_id: str,
    ) -> None:
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.method = method
        self.refresh_hash = refresh_hash
        self.used_hashes: list[str] = []
        self.expires_at = expires_at
        self.source = source
        self.revoked = False
        self.scp: list[str] | None = None  # set by SessionScoped: the session's tokens may do only these

    @event("SessionScoped")
    def restrict(self, scp: list[str], actor: str, correlation_id: str) -> None:
        """A login that asked for less than the user holds: every token of the session is held to it."""
        self.scp = scp

    def rotate(self, refresh_hash: str, actor: str, correlation_id: str) -> None:
        if self.revoked:
            raise Conflict("session is revoked", field="session_id")
        self._rotate(refresh_hash=refresh_hash, actor=actor, correlation_id=correlation_id)

    def revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        if self.revoked:
            raise Conflict("session is already revoked", field="session_id")
        self._revoke(actor=actor, correlation_id=correlation_id, reason=reason)

    @event("RefreshRotated")
    def _rotate(self, refresh_hash: str, actor: str, correlation_id: str) -> None:
        self.used_hashes.append(self.refresh_hash)
        self.refresh_hash = refresh_hash

    @event("SessionRevoked")
    def _revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        self.revoked = True
