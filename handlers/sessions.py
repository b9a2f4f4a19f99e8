"""Login, refresh, logout and Ed25519 challenge–response: the endpoints that start and end
sessions.  The caller proves itself in the body (password, refresh token, signature)."""

from __future__ import annotations

import functools
from typing import Annotated, Any
from uuid import UUID

import msgspec
from nats.micro.request import Request

from authbus.domain import public_keys, tokens
from authbus.domain.commands import Password, PublicKey, Scopes, Username
from authbus.domain.decisions import logins, signups
from authbus.domain.errors import Forbidden, RateLimited, Unauthenticated
from authbus.domain.times import rfc3339_epoch
from authbus.handlers.backend import Backend
from authbus.handlers.replies import Tokens
from authbus.handlers.wire import Body, Position, Token, caller_of, ensure_position

Source = Annotated[str, msgspec.Meta(max_length=256)]
WRONG_CREDENTIALS = "wrong username or password"
NOT_ANSWERED = "the challenge answer is not valid"


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: UUID
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    source: Source = ""
    min_position: Position | None = None  # read your writes: a user or key registered a moment ago
    scopes: Scopes | None = None  # a down-scoped access token: these, of what the user holds


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Open registration (§6.10): no bearer; the tenant's policy must allow it."""

    tenant_id: UUID
    username: Username
    password: Password
    source: Source = ""
    min_position: Position | None = None


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Token
    source: Source = ""
    min_position: Position | None = None


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Token
    source: Source = ""
    scopes: Scopes | None = None  # as login's: the new access token's, whatever the last one had
    min_position: Position | None = None


class ChallengeRequest(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: UUID
    public_key: PublicKey
    min_position: Position | None = None


# What auth.v1.challenge issues: <base64url payload>.<base64url MAC>.  Anything else is not
# a challenge (and never reaches the MAC check, which compares ASCII only).
Challenge = Annotated[str, msgspec.Meta(max_length=1024, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")]


class AnswerRequest(msgspec.Struct, forbid_unknown_fields=True):
    challenge: Challenge
    signature: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    source: Source = ""
    min_position: Position | None = None


REFUSALS = {
    "failed": WRONG_CREDENTIALS,
    "disabled": "this account is disabled",
    "reused": "this refresh token was already used: the session is revoked",
    "used": "this challenge was already answered",
}


def _tokens(outcome: logins.Outcome, position: int, field: str) -> Tokens:
    """The pair a started session hands over, or the refusal as the error it answers."""
    if isinstance(outcome, logins.Refused):
        if outcome.reason == "rate_limited":  # password logins alone are throttled, by username
            raise RateLimited("too many failed logins: try again in a few minutes", field="username")
        raise Unauthenticated(REFUSALS.get(outcome.reason, f"the {field.replace('_', ' ')} is not valid"), field=field)
    assert isinstance(outcome, logins.Started)
    return Tokens.of(outcome, position)


def login_endpoint(backend: Backend):
    body = Body(LoginRequest)

    async def handle(request: Request) -> Tokens:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        outcome, position = await backend.login(
            req.tenant_id, req.username, req.password, req.source, caller_of(request), req.scopes
        )
        return _tokens(outcome, position, "password")

    return handle


def register_endpoint(backend: Backend):
    body = Body(RegisterRequest)

    async def handle(request: Request) -> Tokens:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        started, position = await backend.register(req.tenant_id, req.username, req.password, req.source, caller_of(request))
        return Tokens.of(started, position)

    return handle


def _refresh_session(backend: Backend, token: str) -> tuple[UUID, str, str]:
    parsed = tokens.parse(token)
    if parsed is None or parsed.kind != "refresh":
        raise Unauthenticated("the refresh token is not valid", field="refresh_token")
    session = backend.model.sessions.get(parsed.credential_id)
    return parsed.credential_id, parsed.secret, str(session.user_id) if session else "anonymous"


def refresh_endpoint(backend: Backend):
    body = Body(RefreshRequest)

    async def handle(request: Request) -> Tokens:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        session_id, secret, actor = _refresh_session(backend, req.refresh_token)
        decide = functools.partial(logins.refresh, session_id=session_id, secret=secret, scopes=req.scopes)
        outcome, position = await backend.perform("refresh", actor, decide)
        return _tokens(outcome, position, "refresh_token")

    return handle


def logout_endpoint(backend: Backend):
    body = Body(LogoutRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        session_id, secret, actor = _refresh_session(backend, req.refresh_token)
        outcome, position = await backend.perform("logout", actor, lambda uow: logins.logout(uow, session_id, secret))
        if isinstance(outcome, logins.Refused):
            raise Unauthenticated("the refresh token is not valid", field="refresh_token")
        return {"ok": True, "position": position}

    return handle


def challenge_endpoint(backend: Backend):
    """Always issues a challenge, registered key or not: the answer is where it counts."""

    body = Body(ChallengeRequest)

    async def handle(request: Request) -> dict[str, Any]:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        public_key = public_keys.canonical(req.public_key)  # the form it was registered in
        challenge, expires = backend.challenges.issue(req.tenant_id, public_key, backend.now())
        return {"challenge": challenge, "expires_at": rfc3339_epoch(expires), "position": backend.model.position}

    return handle


def answer_endpoint(backend: Backend):
    body = Body(AnswerRequest)

    async def handle(request: Request) -> Tokens:
        req = body.decode(request.data)
        await ensure_position(backend, req.min_position)
        answered = backend.challenges.answer(req.challenge, req.signature, backend.now())
        if answered is None:
            raise Unauthenticated(NOT_ANSWERED, field="signature")
        user_id = backend.model.public_keys.get((answered.tenant_id, answered.public_key))
        if user_id is not None:
            outcome, position = await backend.perform(
                "challenge_login", str(user_id), lambda uow: logins.challenge_login(uow, user_id, answered.nonce, req.source)
            )
            return _tokens(outcome, position, "challenge")
        # A key no user holds: a user of its own where the tenant takes keypair sign-ups.
        try:
            backend.admit_signup(answered.tenant_id, caller_of(request), "keypair_signup")
        except Forbidden:
            raise Unauthenticated(NOT_ANSWERED, field="signature") from None
        decide = functools.partial(
            signups.keypair_signup,
            tenant_id=answered.tenant_id,
            public_key=answered.public_key,
            nonce=answered.nonce,
            source=req.source,
        )
        outcome, position = await backend.perform("keypair_signup", signups.SIGNUP_ACTOR, decide)
        return _tokens(outcome, position, "challenge")

    return handle
