"""The password-login failure limit: five failures within fifteen minutes lock a username
until the oldest of them ages out.

A user counts its own failures (User.login_failed).  A username no user of the tenant holds
counts them on a LoginThrottle, so an unknown name is locked out exactly as a known one is,
and a failed login appends one event either way: nothing a caller can see tells the two
apart.  The throttle's id is keyed (the caller derives it with a secret key), and it keeps
no username: a password typed into the username field must not land in the log.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)


def locked(failures: list[datetime], now: datetime) -> bool:
    return len(failures) >= MAX_FAILURES and now - failures[-MAX_FAILURES] < FAILURE_WINDOW


def with_failure(failures: list[datetime], at: datetime | None) -> list[datetime]:
    """The failures that still matter, after one more at ``at`` (None: an event from before
    failures carried their time, which counts for nothing now)."""
    return failures if at is None else [*failures[-(MAX_FAILURES - 1) :], at]


class LoginThrottle(Aggregate):
    @event("FirstLoginFailed")
    def __init__(
        self, id: UUID, tenant_id: UUID, method: str, source: str, at: datetime, actor: str, correlation_id: str
    ) -> None:
        self.tenant_id = tenant_id
        self.failures = [at]

    @event("LoginFailed")
    def failed(self, tenant_id: UUID, method: str, source: str, at: datetime, actor: str, correlation_id: str) -> None:
        self.failures = with_failure(self.failures, at)
