"""Secret-bearing credentials: personal access tokens and typed keys.

Both hold only the SHA-256 of their secret.  A PAT is limited to its scopes; an API key
acts as its owner (limited to its scopes when it was issued with some); recovery and
invitation keys are single-use and short-lived.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict, InvalidRequest

KEY_KINDS = ("api_key", "recovery", "invitation")
UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
MAX_SCOPES = 5000  # a PAT's or key's, at creation and after every add_scope
USE_INTERVAL = timedelta(minutes=1)  # a credential's use is recorded at most this often (DESIGN §6)
# (default, maximum) lifetime in seconds; None: never expires unless asked to.
LIFETIMES: dict[str, tuple[int | None, int]] = {
    "pat": (90 * 86400, 366 * 86400),
    "api_key": (None, 10 * 366 * 86400),
    "recovery": (3600, 86400),
    "invitation": (7 * 86400, 30 * 86400),
}


def expiry(kind: str, expires_in: int | str | None, now: datetime) -> datetime | None:
    """``expires_in`` (seconds, or a duration such as ``"720h"``) after ``now`` rounded up to
    a whole second: the instant every reader agrees on (the wire's RFC 3339, the bus's JWT
    ``exp``), never shorter than asked."""
    default, maximum = LIFETIMES[kind]
    seconds = default if expires_in is None else duration_seconds(expires_in)
    if seconds is None:
        return None
    if seconds > maximum:
        raise InvalidRequest(f"expires_in is at most {maximum} seconds for {kind}", field="expires_in")
    whole = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond else 0)
    return whole + timedelta(seconds=seconds)


def duration_seconds(lifetime: int | str) -> int:
    """Seconds, as given or as a duration of ``h``, ``m`` and ``s`` parts (``"1h30m"``)."""
    if isinstance(lifetime, int):
        return lifetime
    seconds = sum(int(amount) * UNIT_SECONDS[unit] for amount, unit in re.findall(r"(\d+)([hms])", lifetime))
    if seconds <= 0:
        raise InvalidRequest("expires_in must be longer than nothing", field="expires_in")
    return seconds


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

    def used(self, at: datetime, actor: str, correlation_id: str) -> bool:
        """Record a use made at ``at``, unless one within ``USE_INTERVAL`` before it is
        recorded already (another instance saw it too) or the credential is revoked:
        whether it was recorded."""
        last: datetime | None = getattr(self, "last_used_at", None)
        if self.revoked or (last is not None and at - last < USE_INTERVAL):
            return False
        self._used(at=at, actor=actor, correlation_id=correlation_id)  # type: ignore[attr-defined]
        return True


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

    def add_scope(
        self, scope: dict[str, str | None], now: datetime, actor: str, correlation_id: str, field: str = "scope"
    ) -> None:
        """``field``: where the scope was in the request (``scopes[2]`` for add_scopes)."""
        self.require_active(now)
        if len(self.scopes) >= MAX_SCOPES:
            raise Conflict(f"a PAT holds at most {MAX_SCOPES} scopes", field=field)
        if scope in self.scopes:
            raise Conflict("the PAT already holds this scope", field=field)
        self._add_scope(scope=scope, actor=actor, correlation_id=correlation_id)

    def remove_scope(
        self, scope: dict[str, str | None], now: datetime, actor: str, correlation_id: str, field: str = "scope"
    ) -> None:
        self.require_active(now)
        if scope not in self.scopes:
            raise Conflict("the PAT does not hold this scope", field=field)
        self._remove_scope(scope=scope, actor=actor, correlation_id=correlation_id)

    @event("ScopeAdded")
    def _add_scope(self, scope: dict[str, str | None], actor: str, correlation_id: str) -> None:
        self.scopes.append(scope)

    @event("ScopeRemoved")
    def _remove_scope(self, scope: dict[str, str | None], actor: str, correlation_id: str) -> None:
        self.scopes.remove(scope)

    def update(self, name: str | None, description: str | None, actor: str, correlation_id: str) -> None:
        """A new name, description, or both; one left out (None) stays.  A revoked PAT keeps its record."""
        if self.revoked:
            raise Conflict("a revoked PAT cannot be changed", field="pat_id")
        self._update(
            name=self.name if name is None else name,
            description=self.description if description is None else description,
            actor=actor,
            correlation_id=correlation_id,
        )

    @event("PATUpdated")
    def _update(self, name: str, description: str, actor: str, correlation_id: str) -> None:
        self.name, self.description = name, description

    def reset_secret(self, secret_hash: str, expires_at: datetime | None, actor: str, correlation_id: str) -> None:
        if self.revoked:
            raise Conflict("a revoked PAT cannot be reset", field="pat_id")
        self._reset_secret(secret_hash=secret_hash, expires_at=expires_at, actor=actor, correlation_id=correlation_id)

    @event("PATSecretReset")
    def _reset_secret(self, secret_hash: str, expires_at: datetime | None, actor: str, correlation_id: str) -> None:
        self.secret_hash = secret_hash
        self.expires_at = expires_at

    @event("PATRevoked")
    def _revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        self.revoked = True

    @event("PATUsed")
    def _used(self, at: datetime, actor: str, correlation_id: str) -> None:
        self.last_used_at = at


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

    @event("KeyUsed")
    def _used(self, at: datetime, actor: str, correlation_id: str) -> None:
        self.last_used_at = at
