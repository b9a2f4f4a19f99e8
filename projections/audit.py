"""The auditor's answers, computed from the log alone: its lines (redacted as on the event
feed), filtered and paged; the standing of a credential at a past point, replayed into a
fresh read model and never read from current state; and a digest of a read model, to
compare a rebuild from position 0 with a running instance.  Pure: callers bring the
events, in log order, as ``(position, event)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from authbus.domain import tokens
from authbus.domain.errors import InvalidRequest
from authbus.domain.times import rfc3339_exact
from authbus.projections import queries
from authbus.projections.event_feed import aggregate_of, describe
from authbus.projections.jwt_tokens import looks_like_jwt
from authbus.projections.read_model import CredentialView, ReadModel

Positioned = tuple[int, Any]
# Login attempts say nothing about what a credential could do; as-of leaves them out.
OBSERVATIONS = frozenset({"LoginSucceeded", "LoginFailed"})
JWT_UNSUPPORTED = (
    "as-of answers for PATs and keys; a JWT access token is not supported "
    "(ask about the session's owner or the signing key instead)"
)


@dataclass(frozen=True, slots=True)
class Point:
    """A point of the log: a position, a time, or both (whichever the log meets first).  The
    log up to a time ends before the first event stamped later, so a time names a position."""

    position: int | None = None
    time: datetime | None = None

    def passed_by(self, position: int, event: Any) -> bool:
        """Whether this event lies beyond the point."""
        return (self.position is not None and position > self.position) or (self.time is not None and event.timestamp > self.time)

    def reached_by(self, position: int, event: Any) -> bool:
        """Whether this event lies at or beyond the point."""
        return (self.position is None or position >= self.position) and (self.time is None or event.timestamp >= self.time)


# ---------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class LogFilter:
    since: Point | None = None  # from the first event at or after it
    until: Point | None = None  # up to the last event before the first one past it
    tenant_id: str | None = None
    principal_id: str | None = None  # the actor, or the aggregate acted on
    types: frozenset[str] = frozenset()

    def shows(self, line: dict[str, Any]) -> bool:
        return (self.tenant_id is None or line["tenant_id"] == self.tenant_id) and (
            self.principal_id is None or self.principal_id in (line["actor"], line["aggregate_id"])
        )


class LogScan:
    """Walks stretches of the log in order and keeps the lines the filter shows.

    ``fold`` applies each event to ``model`` before describing it (a fresh model, streamed
    from position 0); without it ``model`` must already hold every event scanned (the live
    model of a running instance: an aggregate's tenant never changes).
    """

    def __init__(self, flt: LogFilter, model: ReadModel, fold: bool, position: int = 0) -> None:
        self.flt, self.model, self.fold = flt, model, fold
        self.position = position  # the last event considered, shown or not
        self.started = flt.since is None
        self.ended = False  # past ``until``: nothing further can show

    def lines(self, batch: Iterable[Positioned], limit: int | None = None) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = []
        flt = self.flt
        for position, event in batch:
            if position <= self.position:
                continue
            if flt.until is not None and flt.until.passed_by(position, event):
                self.ended = True
                break
            if self.fold:
                self.model.apply(position, event)
            self.position = position
            self.started = self.started or flt.since.reached_by(position, event)  # type: ignore[union-attr]
            if not self.started or (flt.types and type(event).__name__ not in flt.types):
                continue
            line = describe(self.model, position, event, "")[1]
            if flt.shows(line):
                shown.append(line)
                if limit is not None and len(shown) >= limit:
                    break
        return shown


# ---------------------------------------------------------------- as of a point


class Replay:
    """A fresh read model folded from position 0 up to a point of the log."""

    def __init__(self, point: Point) -> None:
        self.point = point
        self.model = ReadModel()
        self.ended = False
        self._last: datetime | None = None

    def feed(self, batch: Iterable[Positioned]) -> bool:
        """Fold a stretch of the log; False once past the point (the rest does not matter)."""
        for position, event in batch:
            if self.point.passed_by(position, event):
                self.ended = True
                return False
            self.model.apply(position, event)
            self._last = event.timestamp
        return True

    @property
    def now(self) -> datetime | None:
        """The time of the point: the one asked for, or that of the last event folded."""
        return self.point.time or self._last


def target(credential_id: UUID | None, token: str | None) -> UUID | None:
    """The credential an as-of question is about; None for a malformed token.  Given both, the
    token must be that credential's."""
    if token is None:
        return credential_id
    if looks_like_jwt(token):
        raise InvalidRequest(JWT_UNSUPPORTED, field="token")
    parsed = tokens.parse(token)
    named = None if parsed is None else parsed.credential_id
    if credential_id is not None and named != credential_id:
        raise InvalidRequest("the token is not the credential named by credential_id", field="token")
    return named


def related(model: ReadModel, credential_id: UUID | None) -> frozenset[UUID]:
    """The aggregates whose events decide a credential's standing: itself, its owner, its
    tenant, and the owner's tenant-defined roles (which bound what its scopes can do)."""
    credential = model.credentials.get(credential_id) if credential_id is not None else None
    if credential is None:
        return frozenset()
    owner = model.principals[credential.owner_id]
    return frozenset({credential.id, credential.owner_id, credential.tenant_id, *owner.role_ids})


def history(batch: Iterable[Positioned], ids: frozenset[UUID], upto: int) -> list[dict[str, Any]]:
    """The events of a stretch of the log, up to ``upto``, on the aggregates in ``ids``."""
    return [
        {
            "position": position,
            "type": type(event).__name__,
            "aggregate": aggregate_of(event),
            "aggregate_id": str(event.originator_id),
            "actor": getattr(event, "actor", None),
            "timestamp": rfc3339_exact(event.timestamp),
        }
        for position, event in batch
        if position <= upto and event.originator_id in ids and type(event).__name__ not in OBSERVATIONS
    ]


class _NoKeys:
    """JWTs are refused before verify runs, so no signing key is ever needed."""

    def verification_keys(self, key: Any) -> tuple[Any, ...]:  # pragma: no cover - unreachable by target()
        raise LookupError("as-of does not verify JWTs")


def as_of(replay: Replay, events: list[dict[str, Any]], credential_id: UUID | None, token: str | None) -> dict[str, Any]:
    """Was it valid at the point, whose was it, which scopes did it hold, and which events made
    it so.  A token is verified with its secret: a wrong one answers ``unknown`` and nothing more."""
    model, now = replay.model, replay.now
    now_ts = now.timestamp() if now is not None else 0.0
    wanted = target(credential_id, token)
    credential: CredentialView | None = model.credentials.get(wanted) if wanted is not None else None
    if token is not None:
        verdict = queries.verify(model, token, now_ts, _NoKeys())
        if verdict.reason in ("malformed", "unknown"):
            credential = None
    elif credential is not None:
        verdict = queries.standing(model, credential, now_ts)
    else:
        verdict = queries.Verdict("unknown")
    answer: dict[str, Any] = {
        "at": {"position": model.position, "time": rfc3339_exact(now)},
        "valid": verdict.valid,
        "reason": verdict.reason,
        "credential": None,
        "principal": None,
        "scopes": None,
        "events": [],
    }
    if credential is not None:
        detail = queries.credential_detail(credential, now_ts)
        answer |= {
            "credential": {k: v for k, v in detail.items() if k != "scopes"},
            "principal": queries.user_detail(model.principals[credential.owner_id]),
            "scopes": detail["scopes"],  # None: it acted with its owner's roles
            "events": events,
        }
    return answer


# ---------------------------------------------------------------- rebuild check


def digest(model: ReadModel) -> str:
    """SHA-256 over a canonical dump of everything the read model holds, at its position, as
    ``sha256:<base64url>`` (hex would look like a leaked secret digest to reply scanners).

    Private halves of signing keys never enter it; secret digests do (hashed once more), so
    a secret reset that one side missed shows.  Ordered indexes keep their order: it is what
    paging serves.  Personal data (usernames, profiles) stays out: it is sealed in the log
    (infra/personal_data.py) and an auditor may hold no KEK; which users have a name does not.
    """
    state = {
        "position": model.position,
        "tenants": {
            str(t.id): [t.name, t.disabled, t.created_at, [str(k) for k in t.role_order]] for t in model.tenants.values()
        },
        "principals": {
            str(p.id): [
                str(p.tenant_id),
                p.deleted,
                p.kind,
                sorted(p.roles),
                [str(r) for r in p.role_ids],
                p.disabled,
                p.has_password,
                p.created_at,
            ]
            for p in model.principals.values()
        },
        "credentials": {
            str(c.id): [
                c.kind,
                str(c.owner_id),
                str(c.tenant_id),
                c.name,
                c.description,
                c.status,
                c.revoked_reason,
                c.created_at,
                c.expires_ts,
                c.digest.hex(),
                None if c.scopes is None else _scope_list(c.scopes.values()),
            ]
            for c in model.credentials.values()
        },
        "signing_keys": {
            k.kid: [str(k.tenant_id), k.alg, k.status, k.public_jwk, k.created_at] for k in model.signing_keys.values()
        },
        "roles": {
            str(r.id): [str(r.tenant_id), r.name, r.description, r.deleted, r.created_at, _scope_list(r.scopes.values())]
            for r in model.roles.values()
        },
        "roles_by_tenant": _ordered(model.roles_by_tenant),
        "role_names": {f"{t}:{name}": str(r) for (t, name), r in model.role_names.items()},
        "sessions": {
            str(s.id): [
                str(s.user_id),
                str(s.tenant_id),
                s.method,
                s.revoked,
                s.revoked_reason,
                s.created_at,
                s.expires_ts,
                s.rotations,
            ]
            for s in model.sessions.values()
        },
        "users_by_tenant": _ordered(model.users_by_tenant),
        "credentials_by_owner": _ordered(model.credentials_by_owner),
        "signing_keys_by_tenant": _ordered(model.signing_keys_by_tenant),
        "sessions_by_user": _ordered(model.sessions_by_user),
        "named_users": sorted(str(u) for u in model.users_by_name.values()),
        "public_keys": {f"{t}:{key}": str(u) for (t, key), u in model.public_keys.items()},
        "login_activity": {str(u): list(entries) for u, entries in model.login_activity.items()},
    }
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = hashlib.sha256(canonical.encode()).digest()
    return "sha256:" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _scope_list(scopes: Iterable[Any]) -> list[str]:
    return sorted(json.dumps(s.to_dict(), sort_keys=True) for s in scopes)


def _ordered(index: dict[Any, dict[Any, None]]) -> dict[str, list[str]]:
    return {str(owner): [str(member) for member in members] for owner, members in index.items()}
