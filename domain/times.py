"""How authbus writes a moment, in one place: RFC 3339 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime | None) -> str | None:
    """To the second, as every reply shows a time."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_epoch(seconds: float | None) -> str | None:
    """A POSIX time (a JWT's ``exp``, a kept creation time) to the second; None if it is no time."""
    if seconds is None:
        return None
    try:
        return rfc3339(datetime.fromtimestamp(float(seconds), UTC))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def rfc3339_exact(moment: datetime | None) -> str | None:
    """With microseconds: an event's time, exact enough to ask the audit as-of it again."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
