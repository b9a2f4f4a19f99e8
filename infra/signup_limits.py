"""How many self-service sign-ups a node takes: per caller (the connection as the server
vouches for it, handlers.wire.caller_of) and per tenant (its policy's
``registrations_per_minute``), each over a sliding minute.

Kept in memory, per node: a sign-up is slow work (argon2) and a new user, and these bounds
are there to keep a flood from becoming either, not to be exact across instances.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar
from uuid import UUID

from authbus.domain.errors import RateLimited

WINDOW = 60.0  # seconds
PER_CALLER = 5  # sign-ups one connection makes per minute, whichever tenants they are for
CALLERS_KEPT = 10_000  # callers remembered, the oldest making room
K = TypeVar("K")


class SignupLimits:
    def __init__(self, per_caller: int = PER_CALLER, window: float = WINDOW) -> None:
        self.per_caller = per_caller
        self.window = window
        self._callers: dict[str, deque[float]] = {}
        self._tenants: dict[UUID, deque[float]] = {}

    def admit(self, tenant_id: UUID, caller: str, per_tenant: int, now: float) -> None:
        """Count one sign-up, or ``rate_limited`` (counting nothing) when either bound is reached."""
        by_caller = self._recent(self._callers, caller, now)
        by_tenant = self._recent(self._tenants, tenant_id, now)
        if len(by_caller) >= self.per_caller:
            raise RateLimited("too many sign-ups from this connection: try again in a minute")
        if len(by_tenant) >= per_tenant:
            raise RateLimited("this tenant takes no more sign-ups this minute: try again in a minute")
        by_caller.append(now)
        by_tenant.append(now)
        if len(self._callers) > CALLERS_KEPT:
            del self._callers[next(iter(self._callers))]

    def _recent(self, seen: dict[K, deque[float]], key: K, now: float) -> deque[float]:
        times = seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
