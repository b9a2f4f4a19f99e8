"""JWT verification: authbus access tokens and tenant-minted (Hivekit-style) tokens.

The key named by ``kid`` decides the algorithm, never the header; ``none`` and every
algorithm but the key's are refused; ``exp`` is honoured with 30 s leeway; a key only
vouches for its own tenant (the system key vouches for all).  HS256 keys belong to tenants
that mint their own tokens, as Hivekit's clients do: only ``tnd`` is required, and the
permissions come from ``per``, austack's ``scopes`` or an ``scp`` list.  Asymmetric keys
sign authbus's own access tokens, which must carry ``sub``, ``iat`` and ``exp`` and name
their session, so that revoking it ends them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import jwt

from authbus.domain.scopes import Scope, ScopeKey, checked_scope, parse_scope
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.domain.times import rfc3339_epoch
from authbus.projections.memos import FORGETFUL, Bearers
from authbus.projections.read_model import PrincipalView, ReadModel, SigningKeyView

LEEWAY_SECONDS = 30
TIME_CLAIMS = ("exp", "iat", "nbf")
MAX_EPOCH = 253402300800  # 10000-01-01: beyond it a time has no RFC 3339 form
PER_OPERATIONS = {"C": "create", "R": "read", "U": "update", "D": "delete"}


ACCESS_TOKEN_CLAIMS = ("exp", "iat", "sub")  # required of a token an asymmetric key signed


class VerificationKeys(Protocol):
    def verification_keys(self, key: SigningKeyView) -> tuple[Any, ...]:
        """The key's verification keys, tried in turn (an HS256 key has two forms, §3.5)."""
        ...


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
    dpv: dict[str, list[str]] | None = None  # a tenant token's data providers, handed on as written


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
    subject: str | None  # None: the token has no ``sub``, and is its own principal
    kind: str = "external"
    roles: tuple[str, ...] = ()

    @classmethod
    def named(cls, tenant_id: UUID, subject: str) -> ExternalPrincipal:
        return cls(str(uuid5(NAMESPACE_URL, f"authbus:external:{tenant_id}:{subject}")), tenant_id, subject)

    @classmethod
    def of_token(cls, tenant_id: UUID, digest: str) -> ExternalPrincipal:
        """The principal of a token without ``sub``: the token itself, by its SHA-256."""
        return cls(str(uuid5(NAMESPACE_URL, f"authbus:external-token:{tenant_id}:{digest}")), tenant_id, None)


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
                fields = {"entity_type": entity_type, "operation": operation, "entity_id": entity_id, "domain": realm}
                scope = checked_scope(fields) if operation is not None else None
                if scope is None:
                    return None
                scopes[scope.key] = scope
    return scopes


def austack_scopes(granted: Any) -> dict[ScopeKey, Scope] | None:
    """austack's ``{"<resource>": {"actions": ["create", …]}}``: each action on every entity
    of the resource, in every domain of the tenant; None if malformed."""
    if not isinstance(granted, dict):
        return None
    found: list[Scope | None] = []
    for resource, grant in granted.items():
        actions = grant.get("actions") if isinstance(grant, dict) else None
        if not isinstance(actions, list):
            return None
        found += (checked_scope({"entity_type": resource, "operation": action, "entity_id": "*"}) for action in actions)
    return _keyed(found)


def listed_scopes(listed: Any) -> dict[ScopeKey, Scope] | None:
    """An ``scp`` list of scope strings, ``[domain/]entity_type:operation:entity_id`` (the
    CLI's form); None if malformed."""
    if not isinstance(listed, list):
        return None
    return _keyed([parse_scope(text) if isinstance(text, str) else None for text in listed])


def _keyed(scopes: Sequence[Scope | None]) -> dict[ScopeKey, Scope] | None:
    if any(scope is None for scope in scopes):
        return None
    return {scope.key: scope for scope in scopes if scope is not None}


@dataclass(frozen=True, slots=True)
class Grants:
    """What a tenant token's claims grant: its scopes, and the data providers it names."""

    scopes: dict[ScopeKey, Scope]
    dpv: dict[str, list[str]] | None


def granted(claims: dict[str, Any]) -> Grants | None:
    """A tenant token's scopes, the union of ``per``, ``scopes`` and ``scp``, and its ``dpv``
    (Hivekit's ``{realm: ["type/id", …]}``); None if any of them is malformed."""
    held: dict[ScopeKey, Scope] = {}
    for claim, read in (("per", per_scopes), ("scopes", austack_scopes), ("scp", listed_scopes)):
        if claim in claims:
            scopes = read(claims[claim])
            if scopes is None:
                return None
            held.update(scopes)
    dpv = claims.get("dpv")
    if dpv is None:
        return Grants(held, None)
    if not isinstance(dpv, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in dpv.values()
    ):
        return None
    return Grants(held, {realm: list(ids) for realm, ids in dpv.items()})


def verify_jwt(
    model: ReadModel, token: str, now: float, keys: VerificationKeys, bearers: Bearers = FORGETFUL
) -> tuple[str | None, Any, Any]:
    """(reason or None, credential, principal) for a JWT."""
    seen = bearers.get(token)
    if seen is not None:  # signed by this key: only the clock and the read model can have changed
        remembered: SignedToken = seen[0]
        if remembered.exp is not None and remembered.exp <= now - LEEWAY_SECONDS:
            return "expired", None, None
        return _standing(model, remembered, now)
    reason, signed = _signed(model, token, keys)
    if signed is None:
        return reason, None, None
    bearers.remember(token, signed, None)
    return _standing(model, signed, now)


@dataclass(frozen=True, slots=True)
class SignedToken:
    """A JWT whose signature checked out, its claims read once."""

    key: SigningKeyView
    exp: float | None  # None: no ``exp`` (a tenant token), valid while its key is active
    tenant_id: UUID | None
    subject: Any  # ``sub`` as written; None when absent
    digest: str  # the token's SHA-256: the principal of a tenant token without ``sub``
    expires_at: str | None
    jti: str | None
    grants: Grants | None  # a tenant token's; None if malformed, or not HS256
    scp: dict[ScopeKey, Scope] | None  # an access token's, asked for at login; None: unscoped
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
    candidates = keys.verification_keys(key)
    for attempt, candidate in enumerate(candidates, 1):
        try:
            claims = jwt.decode(
                token,
                candidate,
                algorithms=[key.alg],
                leeway=LEEWAY_SECONDS,
                options={"require": ["tnd"], "verify_aud": False, "verify_iat": False},
            )
            break
        except jwt.InvalidSignatureError:
            if attempt == len(candidates):
                return "bad_signature", None
        except jwt.InvalidAlgorithmError:
            return "bad_signature", None
        except jwt.ExpiredSignatureError:
            return "expired", None
        except jwt.PyJWTError:
            return "malformed", None
    tenant_token = key.alg == "HS256"
    if not tenant_token and not all(name in claims for name in ACCESS_TOKEN_CLAIMS):
        return "malformed", None
    # PyJWT reads these with int(), so "1796212704" passes its checks; every later use
    # compares numbers, so anything but a JSON number is malformed here, once.
    if not all(_is_time(claims[name]) for name in TIME_CLAIMS if name in claims):
        return "malformed", None
    scp = listed_scopes(claims["scp"]) if not tenant_token and "scp" in claims else None
    if scp is None and not tenant_token and "scp" in claims:
        return "malformed", None
    jti, exp = claims.get("jti"), claims.get("exp")
    return None, SignedToken(
        key=key,
        exp=exp,
        tenant_id=_uuid(claims.get("tnd")),
        subject=claims.get("sub"),
        digest=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=None if exp is None else rfc3339_epoch(exp),
        jti=str(jti) if jti else None,
        grants=granted(claims) if tenant_token else None,
        scp=scp,
        session_id=_uuid(claims.get("sid")),
        user_id=_uuid(claims.get("sub")),
    )


def _standing(model: ReadModel, signed: SignedToken, now: float) -> tuple[str | None, Any, Any]:
    """Whether a signed token's key, tenant and session (or ``per`` scopes) let it act now."""
    key, tenant_id = signed.key, signed.tenant_id
    if key.status == "revoked":
        return "revoked", None, None
    if key.status == "retired" and signed.exp is None:  # a token without exp lives as long as its key signs
        return "expired", None, None
    tenant_token = key.alg == "HS256"
    if tenant_id is None or not (isinstance(signed.subject, str) or (tenant_token and signed.subject is None)):
        return "malformed", None, None
    if key.tenant_id != tenant_id and key.tenant_id != SYSTEM_TENANT_ID:
        return "unknown", None, None  # a key vouches only for its own tenant
    if key.tenant_id == SYSTEM_TENANT_ID and key.alg == "HS256":
        return "unknown", None, None
    tenant = model.tenants.get(tenant_id)
    if tenant is None:
        return "unknown", None, None
    if tenant_token:
        return _tenant_token(signed, tenant_id, tenant.disabled)
    return _access_token(model, signed, tenant_id, tenant.disabled, now)


def _tenant_token(signed: SignedToken, tenant_id: UUID, tenant_disabled: bool) -> tuple[str | None, Any, Any]:
    grants = signed.grants
    if grants is None:
        return "malformed", None, None
    if tenant_disabled:
        return "disabled", None, None
    kid = signed.key.kid
    credential = TokenCredential(
        signed.jti or kid, "tenant_token", signed.expires_at, tenant_id, None, grants.scopes, kid, grants.dpv
    )
    if signed.subject is None:
        return None, credential, ExternalPrincipal.of_token(tenant_id, signed.digest)
    return None, credential, ExternalPrincipal.named(tenant_id, signed.subject)


def _access_token(
    model: ReadModel, signed: SignedToken, tenant_id: UUID, tenant_disabled: bool, now: float
) -> tuple[str | None, Any, Any]:
    session_id, user_id = signed.session_id, signed.user_id
    if session_id is None or user_id is None:
        return "malformed", None, None
    session = model.sessions.get(session_id)
    principal: PrincipalView | None = model.principals.get(user_id)
    if session is None or principal is None or session.user_id != user_id or principal.tenant_id != tenant_id:
        return "unknown", None, None
    if session.revoked:
        return "revoked", None, None
    if session.expires_ts <= now:  # whatever its exp says: a token outlives no session
        return "expired", None, None
    if principal.disabled or tenant_disabled:
        return "disabled", None, None
    credential = TokenCredential(
        signed.jti or str(session_id), "access_token", signed.expires_at, tenant_id, session_id, signed.scp, signed.key.kid
    )
    return None, credential, principal


def _is_time(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and abs(value) < MAX_EPOCH


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None
