"""Logging in: password, refresh rotation with reuse detection, logout, Ed25519 challenge.

These are decisions like commands, but with no bearer: the caller proves who it is with
a password, a refresh token or a signature.  Each returns an outcome, a tagged union:
``Started`` (a session began or turned over: the pair to hand the caller), ``Ended``
(logout) or ``Refused`` with its reason.  A refusal still appends what it must
(LoginFailed, or SessionRevoked on refresh reuse), so the caller saves first and answers
the refusal after.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from authbus.domain.decisions.access import claim_name, permissions_of, require_held
from authbus.domain.errors import Forbidden, InvalidRequest, NotFound
from authbus.domain.scopes import Scope, parse_scope, scope_text
from authbus.domain.session import Session
from authbus.domain.tenant import Tenant
from authbus.domain.throttle import LoginThrottle, locked
from authbus.domain.tokens import hash_for_storage, secret_digest
from authbus.domain.unit_of_work import TokenTerms, UnitOfWork
from authbus.domain.user import User

CHALLENGE_SECONDS = 60

Reason = Literal["failed", "rate_limited", "recheck", "disabled", "unknown", "revoked", "reused", "expired", "used"]


@dataclass(frozen=True, slots=True)
class Started:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds, of the access token
    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Ended:
    """A session logged out (or already ended: logout says the same either way)."""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason  # "recheck": the password changed while it was checked; check again


Outcome = Started | Ended | Refused


def access_claims(
    user: User, session: Session, issued_at: int, terms: TokenTerms, scp: list[str] | None = None
) -> dict[str, Any]:
    """An access token's claims, shaped as RFC 9068 asks (its header's ``typ`` is ``at+jwt``):
    ``client_id`` is what the login named as its ``source``, or authbus itself; ``scp``, when
    the login asked for less than the user holds."""
    claims = {
        "iss": terms.issuer,
        "sub": str(user.id),
        "aud": terms.audience,
        "client_id": session.source or terms.audience,
        "tnd": str(user.tenant_id),
        "iat": issued_at,
        "exp": issued_at + terms.access_seconds,
        "jti": str(uuid4()),
        "sid": str(session.id),
        "preferred_username": user.username,
        "roles": [*user.roles, *user.custom_roles.values()],
    }
    if user.display_name:
        claims["name"] = user.display_name
    if scp is not None:
        claims["scp"] = scp
    return claims


def down_scoped(uow: UnitOfWork, user: User, scopes: list[Scope] | None) -> list[str] | None:
    """The ``scp`` of a token asked for with ``scopes``: each one the user holds now (else
    ``forbidden`` naming it), as scope strings."""
    if scopes is None:
        return None
    for index, scope in enumerate(scopes):
        if parse_scope(scope_text(scope)) != scope:  # no string form: a "/" or ":" in its domain or type
            raise InvalidRequest("this scope has no string form for a token's scp", field=f"scopes[{index}]")
    require_held(permissions_of(uow, user), scopes, "scopes")
    return list(dict.fromkeys(scope_text(scope) for scope in scopes))


def _usable(uow: UnitOfWork, user: User) -> bool:
    return not user.disabled and not uow.get(Tenant, user.tenant_id, "tenant_id").disabled


def _terms(uow: UnitOfWork, user: User) -> TokenTerms:
    """The deployment's terms as the user's tenant sets them (set_tenant_policy)."""
    return uow.terms.of_tenant(uow.get(Tenant, user.tenant_id, "tenant_id").policy)


def start_session(uow: UnitOfWork, user: User, method: str, source: str, scopes: list[Scope] | None = None) -> Started:
    scp = down_scoped(uow, user, scopes)  # before anything changes: a refusal records nothing
    session_id = uuid4()
    refresh = uow.mint("refresh", session_id)
    session = Session(
        id=session_id,
        user_id=user.id,
        tenant_id=user.tenant_id,
        method=method,
        refresh_hash=hash_for_storage(refresh),
        expires_at=uow.now + timedelta(seconds=_terms(uow, user).session_seconds),
        source=source,
        **uow.meta,
    )
    if scp is not None:
        session.restrict(scp=scp, **uow.meta)
    user.login_succeeded(method=method, session_id=session_id, source=source, **uow.meta)
    uow.add(user, session)
    return _pair(uow, user, session, refresh, scp)


def _pair(uow: UnitOfWork, user: User, session: Session, refresh: str, scp: list[str] | None) -> Started:
    terms = _terms(uow, user)
    access = uow.sign(user.tenant_id, access_claims(user, session, int(uow.now.timestamp()), terms, scp))
    return Started(access, refresh, terms.access_seconds, str(session.id), str(user.id))


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """What a password login is checked against: the hash to check (None: nothing to
    check, the answer will be no), and whether the username is locked out."""

    password_hash: str | None
    locked: bool


def password_check(uow: UnitOfWork, user_id: UUID | None, throttle_id: UUID) -> PasswordCheck:
    """Read before the (slow) check, so a locked username costs no check at all."""
    if user_id is not None:
        user = uow.get(User, user_id, "username")
        return PasswordCheck(user.password_hash, locked(user.failures, uow.now))
    if not uow.exists(throttle_id):
        return PasswordCheck(None, False)
    return PasswordCheck(None, locked(uow.get(LoginThrottle, throttle_id, "username").failures, uow.now))


def password_login(
    uow: UnitOfWork,
    user_id: UUID | None,
    throttle_id: UUID,
    tenant_id: UUID,
    checked: str | None,
    matched: bool,
    source: str,
    scopes: list[Scope] | None = None,
) -> Outcome:
    """Conclude a password login whose check (of ``checked``) came out ``matched``.

    Decided again on the store as it is now: a failure that landed meanwhile may lock the
    username (``rate_limited``: this check's answer is never revealed), and a password
    changed meanwhile asks for another check (``recheck``).  Every failure in a tenant
    appends one event, known user or not; a tenant id that names no tenant appends none.
    """
    now = uow.now
    if user_id is None:
        if not uow.exists(tenant_id):  # made-up tenants are not written down (ids are unguessable)
            return Refused("failed")
        if not uow.exists(throttle_id):
            uow.add(LoginThrottle(id=throttle_id, tenant_id=tenant_id, method="password", source=source, at=now, **uow.meta))
            return Refused("failed")
        throttle = uow.get(LoginThrottle, throttle_id, "username")
        if locked(throttle.failures, now):
            return Refused("rate_limited")
        throttle.failed(tenant_id=tenant_id, method="password", source=source, at=now, **uow.meta)
        uow.add(throttle)
        return Refused("failed")
    user = uow.get(User, user_id, "username")
    if locked(user.failures, now):
        return Refused("rate_limited")
    if user.password_hash != checked:
        return Refused("recheck")
    if user.password_hash is None or not matched:
        reason = "no_password" if user.password_hash is None else "bad_password"
        user.login_failed(method="password", reason=reason, source=source, at=now, **uow.meta)
        uow.add(user)
        return Refused("failed")
    if not _usable(uow, user):
        user.login_failed(method="password", reason="disabled", source=source, at=now, **uow.meta)
        uow.add(user)
        return Refused("disabled")
    return start_session(uow, user, "password", source, scopes)


def _presented_session(uow: UnitOfWork, session_id: UUID) -> Session | None:
    try:
        return uow.get(Session, session_id, "refresh_token")
    except NotFound:
        return None


def refresh(uow: UnitOfWork, session_id: UUID, secret: str, scopes: list[Scope] | None = None) -> Outcome:
    session = _presented_session(uow, session_id)
    if session is None:
        return Refused("unknown")
    presented = secret_digest(secret).hex()
    if session.revoked:
        return Refused("revoked")
    if not hmac.compare_digest(presented, session.refresh_hash):
        if any(hmac.compare_digest(presented, used) for used in session.used_hashes):
            # A refresh token used twice leaked: end the whole family (RFC 9700 §4.14.2).
            session.revoke(reason="refresh token reuse detected", **uow.meta)
            uow.add(session)
            return Refused("reused")
        return Refused("unknown")
    if session.expires_at <= uow.now:
        return Refused("expired")
    user = uow.get(User, session.user_id, "refresh_token")
    if not _usable(uow, user):
        return Refused("disabled")
    scp = down_scoped(uow, user, scopes)
    if session.scp is not None:  # a down-scoped session's tokens may narrow, never widen
        if scp is None:
            scp = session.scp
        for index, text in enumerate(scp):
            if text not in session.scp:
                raise Forbidden("a down-scoped session's tokens hold only what its login asked for", field=f"scopes[{index}]")
    new_refresh = uow.mint("refresh", session.id)
    session.rotate(refresh_hash=hash_for_storage(new_refresh), **uow.meta)
    uow.add(session)
    return _pair(uow, user, session, new_refresh, scp)


def logout(uow: UnitOfWork, session_id: UUID, secret: str) -> Outcome:
    session = _presented_session(uow, session_id)
    if session is None or not hmac.compare_digest(secret_digest(secret).hex(), session.refresh_hash):
        return Refused("unknown")
    if not session.revoked:
        session.revoke(reason="logout", **uow.meta)
        uow.add(session)
    return Ended()


def challenge_login(uow: UnitOfWork, user_id: UUID, nonce: str, source: str) -> Outcome:
    """The signature was checked by the caller; the nonce is claimed so it redeems once,
    whatever the outcome, and a replayed answer appends nothing."""
    if uow.exists(challenge_claim_id(nonce)):
        return Refused("used")
    user = uow.get(User, user_id, "challenge")
    claim_name(uow, challenge_claim_id(nonce), "challenge", nonce, user.id, "challenge")
    if not _usable(uow, user):
        user.login_failed(method="challenge", reason="disabled", source=source, at=uow.now, **uow.meta)
        uow.add(user)
        return Refused("disabled")
    return start_session(uow, user, "challenge", source)


def challenge_claim_id(nonce: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"authbus:challenge:{nonce}")
