"""NATS JWTs, after nats-io/jwt v2 (claims.go, header.go, decoder.go): encoded and signed by an
nkey, decoded and checked."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from authbus.handlers.natsauth.nkeys import PREFIX_ACCOUNT, PREFIX_SERVER, NKey, b32encode, is_public_key, verify

# --- JWT ----------------------------------------------------------------------------------


class JWTError(ValueError):
    """A JWT that is malformed, wrongly signed, of the wrong kind or outside its validity."""


JWT_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
LIB_VERSION = 2
MAX_TOKEN_SIZE = 1024 * 1024

# nats-io/jwt ExpectedPrefixes(): who may sign which kind, checked on encode and decode.
_ISSUER_PREFIXES: dict[str, frozenset[int]] = {
    "user": frozenset({PREFIX_ACCOUNT}),
    "authorization_request": frozenset({PREFIX_SERVER}),
    "authorization_response": frozenset({PREFIX_ACCOUNT}),
}
# ClaimsData field order in claims.go; jti is the hash of exactly these, so order matters.
_CLAIMS_DATA_FIELDS = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")


def _go_json(value: Any) -> bytes:
    # Compact, UTF-8, with Go's encoding/json HTML-safe escapes, so a jti we compute
    # matches what nats-io/jwt would compute for the same claims.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64url_decode(text: str) -> bytes:
    # Go's RawURLEncoding: no padding allowed, URL alphabet only.
    if "=" in text:
        raise JWTError("jwt: padded base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JWTError("jwt: invalid base64url") from exc


def claims_hash(claims: Mapping[str, Any]) -> str:
    """The ``jti`` nats-io/jwt gives these claims: unpadded base32 of SHA-512/256 over the
    JSON of the standard fields only (aud, exp, iat, iss, name, nbf, sub; empty ones
    omitted, ``jti`` itself blank) -- the ``nats`` section is not part of it."""
    data = {k: claims[k] for k in _CLAIMS_DATA_FIELDS if k != "jti" and claims.get(k) not in (None, "", 0)}
    return b32encode(hashlib.new("sha512_256", _go_json(data)).digest())


def encode_jwt(claims: Mapping[str, Any], issuer: NKey, *, issued_at: int | None = None) -> str:
    """Sign ``claims`` (needs ``sub`` and a ``nats`` section with ``type``) as a v2 NATS JWT.

    Sets ``iss``, ``iat``, ``jti`` and ``nats.version``; other standard fields
    (``aud``, ``exp``, ``name``, ``nbf``) are taken from ``claims`` when present.
    """
    if not claims.get("sub"):
        raise JWTError("jwt: subject is not set")
    nats = dict(claims.get("nats") or {})
    kind = nats.get("type")
    if not kind:
        raise JWTError("jwt: nats.type is not set")
    allowed = _ISSUER_PREFIXES.get(kind)
    if allowed is not None and issuer.prefix not in allowed:
        raise JWTError(f"jwt: a {kind} JWT cannot be issued by {issuer.public_key}")
    out: dict[str, Any] = {k: claims[k] for k in _CLAIMS_DATA_FIELDS if claims.get(k) not in (None, "", 0)}
    out["iss"] = issuer.public_key
    out["iat"] = int(time.time()) if issued_at is None else issued_at
    out.pop("jti", None)
    out["jti"] = claims_hash(out)
    ordered = {k: out[k] for k in _CLAIMS_DATA_FIELDS if k in out}
    # Version 2 is what makes a verifier check the signature over "header.payload" (v1
    # signed the payload alone); the server decodes by this field.
    nats["version"] = LIB_VERSION
    ordered["nats"] = nats
    signing_input = f"{_b64url(_go_json(JWT_HEADER))}.{_b64url(_go_json(ordered))}"
    return f"{signing_input}.{_b64url(issuer.sign(signing_input.encode('ascii')))}"


def decode_jwt(
    token: str, *, issuer: str | None = None, expected_type: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """Verify a v2 NATS JWT and return its claims.

    The signature is checked against ``issuer`` when given (and ``iss`` must equal it),
    otherwise against the token's own ``iss`` -- which proves integrity, not trust.
    Rejects other algorithms, v1 tokens, issuers of the wrong kind for the claim type,
    expired or not-yet-valid tokens.
    """
    if len(token) > MAX_TOKEN_SIZE:
        raise JWTError("jwt: token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("jwt: expected 3 chunks")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JWTError("jwt: invalid JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("jwt: header and claims must be objects")
    if str(header.get("typ", "")).upper() != "JWT":
        raise JWTError("jwt: unsupported type")
    # Only the v2 algorithm: "ed25519" (v1) signed a different input.
    if str(header.get("alg", "")).lower() != JWT_HEADER["alg"]:
        raise JWTError("jwt: unexpected algorithm")
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("version") != LIB_VERSION:
        raise JWTError("jwt: not a version 2 NATS JWT")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise JWTError("jwt: no issuer")
    if issuer is not None and iss != issuer:
        raise JWTError(f"jwt: issued by {iss}, expected {issuer}")
    signature = _b64url_decode(parts[2])
    if not verify(iss, f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
        raise JWTError("jwt: signature verification failed")
    kind = nats.get("type")
    if expected_type is not None and kind != expected_type:
        raise JWTError(f"jwt: not a {expected_type} JWT")
    allowed = _ISSUER_PREFIXES.get(kind) if isinstance(kind, str) else None
    if allowed is not None and not any(is_public_key(iss, p) for p in allowed):
        raise JWTError(f"jwt: a {kind} JWT cannot be issued by that key")
    moment = int(time.time() if now is None else now)
    exp, nbf = claims.get("exp") or 0, claims.get("nbf") or 0
    if not isinstance(exp, int) or not isinstance(nbf, int):
        raise JWTError("jwt: exp and nbf must be integers")
    if exp and moment > exp:
        raise JWTError("jwt: claim is expired")
    if nbf and nbf > moment:
        raise JWTError("jwt: claim is not yet valid")
    return claims
