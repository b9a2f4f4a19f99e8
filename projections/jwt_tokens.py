"""JWT verification: authbus access tokens and tenant-minted (Hivekit-style) tokens.

The key named by ``kid`` decides the algorithm, never the header; ``none`` and every
algorithm but the key's are refused; ``exp`` is required, with 30 s leeway; a key only
vouches for its own tenant (the system key vouches for all).  HS256 keys belong to tenants
that mint their own tokens with ``per`` claims; asymmetric keys sign authbus's own access
tokens, which name their session so that revoking it ends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import jwt

from authbus.domain.scopes import Scope, ScopeKey
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.domain.times import rfc3339_epoch
from authbus.projections.memos import FORGETFUL, Bearers
from authbus.projections.read_model import PrincipalView, ReadModel, SigningKeyView

LEEWAY_SECONDS = 30
TIME_CLAIMS = ("exp", "iat", "nbf")
MAX_EPOCH = 253402300800  # 10000-01-01: beyond it a time has no RFC 3339 form
PER_OPERATIONS = {"C": "create", "R": "read", "U": "update", "D": "delete"}


class VerificationKeys(Protocol):
    def verification_key(self, key: SigningKeyView) -> Any: ...


@dataclass(frozen=True, slots=True)
class TokenCredential:
    """What a verified JWT stands for, shaped like a stored credential."""

    id: str
    kind: str  # access_token | tenant_token
    expires_at: str | None
    tenant_id: UUID
    session_id: UUID | None
    scopes: dict[ScopeKey, Scope] | None
    kid: str  # the signing key: revoking it ends the token


@dataclass(frozen=True, slots=True)
class ExternalPrincipal:
    """The subject of a tenant-minted token: known to the tenant, not registered here.

    Its ``id`` is authbus's, derived from the tenant and ``sub``, and never equal to a
    registered principal's (a version 5 UUID; principals get version 4): a tenant that puts
    an authbus user's id in ``sub`` names an outsider, not that user.  The tenant's own
    name for it is ``subject``.
    """

    id: str
    tenant_id: UUID
    subject: str
    kind: str = "external"
    roles: tuple[str, ...] = ()

    @classmethod
    def named(cls, tenant_id: UUID, subject: str) -> ExternalPrincipal:
        return cls(str(uuid5(NAMESPACE_URL, f"authbus:external:{tenant_id}:{subject}")), tenant_id, subject)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def per_scopes(per: Any) -> dict[ScopeKey, Scope] | None:
    """``{realm: {"type/id": "CRUD"}}`` as scopes with ``domain = realm``; None if malformed."""
    if not isinstance(per, dict):
        return None
    scopes: dict[ScopeKey, Scope] = {}
    for realm, grants in per.items():
        if not isinstance(realm, str) or not isinstance(grants, dict):
            return None
        for target, letters in grants.items():
            entity_type, slash, entity_id = str(target).partition("/")
            if not slash or not entity_type or not entity_id or not isinstance(letters, str):
                return None
            for letter in letters:
                operation = PER_OPERATIONS.get(letter)
                if operation is None:
                    return None
                scope = Scope(entity_type=entity_type, operation=operation, entity_id=entity_id, domain=realm)
                scopes[scope.key] = scope
    return scopes


def verify_jwt(
    model: ReadModel, token: str, now: float, keys: VerificationKeys, bearers: Bearers = FORGETFUL
) -> tuple[str | None, Any, Any]:
    """(reason or None, credential, principal) for a JWT."""
    seen = bearers.get(token)
    if seen is not None:  # signed by this key: only the clock and the read model can have changed
        remembered: SignedToken = seen[0]
        if remembered.exp <= now - LEEWAY_SECONDS:
            return "expired", None, None
        return _standing(model, remembered)
    reason, signed = _signed(model, token, keys)
    if signed is None:
        return reason, None, None
    bearers.remember(token, signed, None)
    return _standing(model, signed)


@dataclass(frozen=True, slots=True)
class SignedToken:
    """A JWT whose signature checked out, its claims read once."""

    key: SigningKeyView
    exp: float
    tenant_id: UUID | None
    subject: Any
    expires_at: str | None
    jti: str | None
    scopes: dict[ScopeKey, Scope] | None  # from ``per``; None if malformed or not HS256
    session_id: UUID | None
    user_id: UUID | None


def _signed(model: ReadModel, token: str, keys: VerificationKeys) -> tuple[str | None, SignedToken | None]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return "malformed", None
    if not isinstance(kid, str):
        return "malformed", None
    key = model.signing_keys.get(kid)
    if key is None:
        return "unknown", None
    try:
        claims = jwt.decode(
            token,
            keys.verification_key(key),
            algorithms=[key.alg],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "tnd"], "verify_aud": False, "verify_iat": False},
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        return "bad_signature", None
    except jwt.ExpiredSignatureError:
        return "expired", None
    except jwt.PyJWTError:
        return "malformed", None
    # PyJWT reads these with int(), so "1796212704" passes its checks; every later use
    # compares numbers, so anything but a JSON number is malformed here, once.
    if not all(_is_time(claims[name]) for name in TIME_CLAIMS if name in claims):
        return "malformed", None
    jti = claims.get("jti")
    return None, SignedToken(
        key=key,
        exp=claims["exp"],
        tenant_id=_uuid(claims.get("tnd")),
        subject=claims["sub"],
        expires_at=rfc3339_epoch(claims["exp"]),
        jti=str(jti) if jti else None,
        scopes=per_scopes(claims.get("per", {})) if key.alg == "HS256" else None,
        session_id=_uuid(claims.get("sid")),
        user_id=_uuid(claims["sub"]),
    )


def _standing(model: ReadModel, signed: SignedToken) -> tuple[str | None, Any, Any]:
    """Whether a signed token's key, tenant and session (or ``per`` scopes) let it act now."""
    key, tenant_id = signed.key, signed.tenant_id
    if key.status == "revoked":
        return "revoked", None, None
    if tenant_id is None or not isinstance(signed.subject, str):
        return "malformed", None, None
    if key.tenant_id != tenant_id and key.tenant_id != SYSTEM_TENANT_ID:
        return "unknown", None, None  # a key vouches only for its own tenant
    if key.tenant_id == SYSTEM_TENANT_ID and key.alg == "HS256":
        return "unknown", None, None
    tenant = model.tenants.get(tenant_id)
    if tenant is None:
        return "unknown", None, None
    if key.alg == "HS256":
        if signed.scopes is None:
            return "malformed", None, None
        if tenant.disabled:
            return "disabled", None, None
        credential = TokenCredential(
            signed.jti or key.kid, "tenant_token", signed.expires_at, tenant_id, None, signed.scopes, key.kid
        )
        return None, credential, ExternalPrincipal.named(tenant_id, signed.subject)
    return _access_token(model, signed, tenant_id, tenant.disabled)


def _access_token(model: ReadModel, signed: SignedToken, tenant_id: UUID, tenant_disabled: bool) -> tuple[str | None, Any, Any]:
    session_id, user_id = signed.session_id, signed.user_id
    if session_id is None or user_id is None:
        return "malformed", None, None
    session = model.sessions.get(session_id)
    principal: PrincipalView | None = model.principals.get(user_id)
    if session is None or principal is None or session.user_id != user_id or principal.tenant_id != tenant_id:
        return "unknown", None, None
    if session.revoked:
        return "revoked", None, None
    if principal.disabled or tenant_disabled:
        return "disabled", None, None
    credential = TokenCredential(
        signed.jti or str(session_id), "access_token", signed.expires_at, tenant_id, session_id, None, signed.key.kid
    )
    return None, credential, principal


def _is_time(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and abs(value) < MAX_EPOCH


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None
