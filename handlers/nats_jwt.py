"""NATS nkeys, xkeys and JWTs: the wire pieces of a nats-server *auth callout* responder.

nats-server (non-operator mode, ``authorization { auth_callout { ... } }``) hands every
connecting client to a service: it publishes a JWT of type ``authorization_request``, signed
by its own server nkey, on ``$SYS.REQ.USER.AUTH`` and expects back a JWT of type
``authorization_response`` that either carries an error or embeds a ``user`` JWT signed by
the configured issuer account.  With ``xkey`` configured, both directions may be sealed
with curve25519 boxes.

Why this exists instead of the ``nkeys`` package: nkeys 0.2.1 for Python knows no curve
('X') keys and cannot verify with a bare public key, and there is no Python port of the Go
``nats-io/jwt`` library.  Everything here follows the Go reference implementations
(nats-io/nkeys strkey.go and xkeys.go, nats-io/jwt v2 claims.go, header.go, decoder.go,
user_claims.go and authorization_claims.go, nats-server server/auth_callout.go), with
PyNaCl for ed25519 and NaCl boxes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing

# --- nkeys ------------------------------------------------------------------------------

# Prefix bytes from nkeys strkey.go; each makes the first base32 letter of the encoding.
PREFIX_SEED = 18 << 3  # 'S'
PREFIX_PRIVATE = 15 << 3  # 'P'
PREFIX_SERVER = 13 << 3  # 'N'
PREFIX_CLUSTER = 2 << 3  # 'C'
PREFIX_OPERATOR = 14 << 3  # 'O'
PREFIX_ACCOUNT = 0  # 'A'
PREFIX_USER = 20 << 3  # 'U'
PREFIX_CURVE = 23 << 3  # 'X'

_PUBLIC_PREFIXES = frozenset({PREFIX_OPERATOR, PREFIX_SERVER, PREFIX_CLUSTER, PREFIX_ACCOUNT, PREFIX_USER, PREFIX_CURVE})
_KEY_LEN = 32


class NKeyError(ValueError):
    """A malformed, mistyped or corrupted nkey, seed or xkey."""


class JWTError(ValueError):
    """A JWT that is malformed, wrongly signed, of the wrong kind or outside its validity."""


def _crc16(data: bytes) -> int:
    # CRC-16/XMODEM (poly 0x1021, init 0), the checksum nkeys appends little-endian.
    return binascii.crc_hqx(data, 0)


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _b32decode_checked(text: str) -> bytes:
    """Base32 without padding, then strip and verify the trailing crc16."""
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise NKeyError("nkey: invalid base32 encoding") from exc
    if len(raw) < 3:
        raise NKeyError("nkey: too short")
    body, checksum = raw[:-2], int.from_bytes(raw[-2:], "little")
    if _crc16(body) != checksum:
        raise NKeyError("nkey: checksum mismatch")
    return body


def _encode(prefix: int, header: bytes, raw: bytes) -> str:
    if prefix not in _PUBLIC_PREFIXES:
        raise NKeyError(f"nkey: invalid public prefix byte {prefix}")
    if len(raw) != _KEY_LEN:
        raise NKeyError("nkey: a raw key or seed is 32 bytes")
    body = header + raw
    return _b32encode(body + _crc16(body).to_bytes(2, "little"))


def encode_public(prefix: int, raw: bytes) -> str:
    """Encode 32 raw key bytes as a public nkey ('A…', 'U…', 'N…', 'X…', …)."""
    return _encode(prefix, bytes([prefix]), raw)


def decode_public(key: str, prefix: int | None = None) -> bytes:
    """The 32 raw bytes of a public nkey, checking checksum and (if given) its kind."""
    body = _b32decode_checked(key)
    if len(body) != 1 + _KEY_LEN or body[0] not in _PUBLIC_PREFIXES:
        raise NKeyError("nkey: not a public key")
    if prefix is not None and body[0] != prefix:
        raise NKeyError(f"nkey: expected prefix byte {prefix}, got {body[0]}")
    return body[1:]


def is_public_key(key: str, prefix: int) -> bool:
    """Whether ``key`` is a well-formed public nkey of the given kind."""
    try:
        decode_public(key, prefix)
    except NKeyError:
        return False
    return True


def encode_seed(prefix: int, raw: bytes) -> str:
    """Encode 32 raw seed bytes as 'S' + kind letter, e.g. 'SA…' or 'SX…'."""
    # Two header bytes so that both the 'S' and the kind letter are printable in base32.
    return _encode(prefix, bytes([PREFIX_SEED | prefix >> 5, (prefix & 31) << 3]), raw)


def decode_seed(seed: str) -> tuple[int, bytes]:
    """(kind prefix byte, 32 raw bytes) of an encoded seed."""
    body = _b32decode_checked(seed)
    if len(body) != 2 + _KEY_LEN:
        raise NKeyError("nkey: invalid seed length")
    if body[0] & 248 != PREFIX_SEED:
        raise NKeyError("nkey: not a seed")
    prefix = (body[0] & 7) << 5 | (body[1] & 248) >> 3
    if prefix not in _PUBLIC_PREFIXES:
        raise NKeyError("nkey: invalid seed prefix")
    return prefix, body[2:]


class NKey:
    """An ed25519 nkey pair (account, user, operator, server) that can sign."""

    def __init__(self, prefix: int, raw_seed: bytes) -> None:
        if prefix == PREFIX_CURVE or prefix not in _PUBLIC_PREFIXES:
            raise NKeyError("nkey: not a signing key kind")
        self.prefix = prefix
        self._signing = nacl.signing.SigningKey(raw_seed)
        self.seed = encode_seed(prefix, raw_seed)
        self.public_key = encode_public(prefix, bytes(self._signing.verify_key))

    @classmethod
    def from_seed(cls, seed: str) -> NKey:
        prefix, raw = decode_seed(seed)
        return cls(prefix, raw)

    @classmethod
    def generate(cls, prefix: int) -> NKey:
        return cls(prefix, os.urandom(_KEY_LEN))

    def sign(self, data: bytes) -> bytes:
        return self._signing.sign(data).signature

    def __repr__(self) -> str:  # never the seed
        return f"NKey({self.public_key})"


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s ed25519 signature of ``data``."""
    try:
        raw = decode_public(public_key)
    except NKeyError:
        return False
    if is_public_key(public_key, PREFIX_CURVE):  # curve keys cannot sign
        return False
    try:
        nacl.signing.VerifyKey(raw).verify(data, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


# --- xkeys (curve25519) -----------------------------------------------------------------

XKEY_VERSION = b"xkv1"
_NONCE_LEN = nacl.public.Box.NONCE_SIZE  # 24


class XKey:
    """A curve25519 'xkey' pair; sealed messages are ``b"xkv1" + nonce(24) + box``, as in nkeys xkeys.go."""

    def __init__(self, raw_seed: bytes) -> None:
        # The raw seed is the X25519 private scalar itself (xkeys.go ScalarBaseMult on it).
        self._private = nacl.public.PrivateKey(raw_seed)
        self.seed = encode_seed(PREFIX_CURVE, raw_seed)
        self.public_key = encode_public(PREFIX_CURVE, bytes(self._private.public_key))

    @classmethod
    def from_seed(cls, seed: str) -> XKey:
        prefix, raw = decode_seed(seed)
        if prefix != PREFIX_CURVE:
            raise NKeyError("xkey: not a curve seed")
        return cls(raw)

    @classmethod
    def generate(cls) -> XKey:
        return cls(os.urandom(_KEY_LEN))

    def seal(self, plaintext: bytes, recipient: str) -> bytes:
        """Encrypt and authenticate ``plaintext`` for the holder of xkey ``recipient``."""
        box = nacl.public.Box(self._private, nacl.public.PublicKey(decode_public(recipient, PREFIX_CURVE)))
        nonce = os.urandom(_NONCE_LEN)
        return XKEY_VERSION + nonce + box.encrypt(plaintext, nonce).ciphertext

    def open(self, sealed: bytes, sender: str) -> bytes:
        """Decrypt a message sealed for us by the holder of xkey ``sender``; raises NKeyError."""
        head = len(XKEY_VERSION) + _NONCE_LEN
        if len(sealed) <= head:
            raise NKeyError("xkey: sealed message too short")
        if not sealed.startswith(XKEY_VERSION):
            raise NKeyError("xkey: unknown sealed message version")
        box = nacl.public.Box(self._private, nacl.public.PublicKey(decode_public(sender, PREFIX_CURVE)))
        try:
            return box.decrypt(sealed[head:], sealed[len(XKEY_VERSION) : head])
        except nacl.exceptions.CryptoError as exc:
            raise NKeyError("xkey: could not decrypt") from exc

    def __repr__(self) -> str:  # never the seed
        return f"XKey({self.public_key})"


def new_account_seed() -> str:
    """A fresh account nkey seed ('SA…'): the auth callout issuer."""
    return NKey.generate(PREFIX_ACCOUNT).seed


def new_user_seed() -> str:
    """A fresh user nkey seed ('SU…')."""
    return NKey.generate(PREFIX_USER).seed


def new_xkey_seed() -> str:
    """A fresh curve xkey seed ('SX…')."""
    return XKey.generate().seed


# --- JWT ----------------------------------------------------------------------------------

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
    return _b32encode(hashlib.new("sha512_256", _go_json(data)).digest())


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


# --- auth callout claims ------------------------------------------------------------------

AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
AUTH_REQUEST_AUDIENCE = "nats-authorization-request"
XKEY_HEADER = "Nats-Server-Xkey"
GLOBAL_ACCOUNT = "$G"


@dataclass(frozen=True)
class ResponsePermission:
    """``allow_responses``: the user may publish to reply subjects of requests it received,
    up to ``max_msgs`` replies within ``ttl_seconds`` (0 means the server defaults: 1, 2 min)."""

    max_msgs: int = 0
    ttl_seconds: float = 0

    def to_claim(self) -> dict[str, int]:
        # jwt.ResponsePermission.Expires is a Go time.Duration: nanoseconds on the wire.
        return {"max": self.max_msgs, "ttl": int(self.ttl_seconds * 1_000_000_000)}


def _check_subjects(subjects: Sequence[str], queue_ok: bool) -> list[str]:
    # The server runs jwt's Permission.Validate on the user JWT and rejects the whole
    # connection over one bad subject; failing here names the culprit instead.
    if isinstance(subjects, str):
        raise TypeError("subjects must be a sequence of strings, not a string")
    for subject in subjects:
        tokens = subject.split(" ")
        if len(tokens) > (2 if queue_ok else 1):
            raise ValueError(f"invalid permission subject {subject!r}")
        for tok in tokens:
            if not tok or tok.startswith(".") or tok.endswith(".") or ".." in tok:
                raise ValueError(f"invalid permission subject {subject!r}")
    return list(subjects)


def user_claims(
    user_nkey: str,
    account: str,
    *,
    name: str | None = None,
    pub_allow: Sequence[str] = (),
    sub_allow: Sequence[str] = (),
    pub_deny: Sequence[str] = (),
    sub_deny: Sequence[str] = (),
    allow_responses: ResponsePermission | None = None,
    expires: int | None = None,
) -> dict[str, Any]:
    """Claims for the user JWT an auth callout grants (sign with ``encode_jwt`` and the issuer).

    ``user_nkey`` must be the request's ``user_nkey``.  ``account`` goes in ``aud``: in
    non-operator mode the server places the client in the account *named* by the
    audience (``$G`` for the global account).  ``expires`` is a Unix time; the server
    disconnects the client when it passes.  With no allow/deny lists at all the user
    gets the account's default permissions (usually everything).
    """
    if not is_public_key(user_nkey, PREFIX_USER):
        raise ValueError("user_nkey must be a public user nkey ('U…')")
    if not account:
        raise ValueError("account is required: the server places the user by the audience")
    nats: dict[str, Any] = {}
    pub = {k: _check_subjects(v, False) for k, v in (("allow", pub_allow), ("deny", pub_deny)) if v}
    sub = {k: _check_subjects(v, True) for k, v in (("allow", sub_allow), ("deny", sub_deny)) if v}
    if pub:
        nats["pub"] = pub
    if sub:
        nats["sub"] = sub
    if allow_responses is not None:
        nats["resp"] = allow_responses.to_claim()
    # NewUserClaims' defaults; the server does not apply them to callout users, but
    # other tools reading the JWT expect them.
    nats.update({"subs": -1, "data": -1, "payload": -1, "type": "user", "version": LIB_VERSION})
    claims: dict[str, Any] = {"aud": account, "sub": user_nkey}
    if expires:
        claims["exp"] = int(expires)
    if name:
        claims["name"] = name
    claims["nats"] = nats
    return claims


def authorization_response(
    user_nkey: str, server_id: str, issuer: NKey, *, jwt: str | None = None, error: str | None = None
) -> str:
    """The signed ``authorization_response`` JWT: ``sub`` the request's user nkey, ``aud``
    the request's ``server_id.id``, and exactly one of a user ``jwt`` or an ``error``."""
    if (jwt is None) == (error is None) or not (jwt or error):
        raise ValueError("exactly one of jwt or error is required")
    if not is_public_key(user_nkey, PREFIX_USER):
        raise ValueError("user_nkey must be a public user nkey ('U…')")
    if not is_public_key(server_id, PREFIX_SERVER):
        raise ValueError("server_id must be the server's public nkey ('N…')")
    nats: dict[str, Any] = {"jwt": jwt} if jwt else {"error": error}
    nats["type"] = "authorization_response"
    return encode_jwt({"aud": server_id, "sub": user_nkey, "nats": nats}, issuer)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A verified ``authorization_request`` from a nats-server."""

    claims: dict[str, Any]
    user_nkey: str  # the response and the user JWT must both have this as their subject
    server_id: str  # the server's public nkey: the response's audience
    server_xkey: str | None  # set when the request came sealed; seal the response to it

    @property
    def connect_opts(self) -> dict[str, Any]:
        """What the client sent in CONNECT: ``auth_token``, ``user``, ``pass``, ``jwt``, ``nkey``, ``sig``, ``name``…"""
        return dict(self.claims["nats"].get("connect_opts") or {})

    @property
    def client_info(self) -> dict[str, Any]:
        """Server-observed client facts: ``host``, ``id``, ``kind``, ``type``, ``name``…"""
        return dict(self.claims["nats"].get("client_info") or {})


def decode_authorization_request(
    payload: bytes, headers: Mapping[str, str] | None, xkey: XKey | None = None, *, now: float | None = None
) -> AuthorizationRequest:
    """Open (if sealed) and verify a request received on ``$SYS.REQ.USER.AUTH``.

    With ``xkey`` set the request must be sealed (``Nats-Server-Xkey`` header naming the
    server's xkey): a plaintext one would mean the server is not configured as we are.
    The signing server key is random per server start, so the signature is checked
    against the token's own ``iss``, which must equal ``server_id.id``.
    """
    server_xkey = (headers or {}).get(XKEY_HEADER)
    if xkey is not None:
        if not server_xkey:
            raise JWTError(f"auth request is not encrypted but an xkey is configured (no {XKEY_HEADER} header)")
        try:
            payload = xkey.open(payload, server_xkey)
        except NKeyError as exc:
            raise JWTError(f"auth request could not be opened: {exc}") from exc
    elif server_xkey:
        raise JWTError("auth request is encrypted but no xkey is configured")
    try:
        token = payload.decode("ascii")
    except UnicodeDecodeError as exc:
        raise JWTError("auth request is not a JWT") from exc
    claims = decode_jwt(token, expected_type="authorization_request", now=now)
    nats = claims["nats"]
    server = nats.get("server_id")
    user_nkey = nats.get("user_nkey")
    if not isinstance(server, dict) or not isinstance(user_nkey, str):
        raise JWTError("auth request has no server_id or user_nkey")
    if claims.get("aud") != AUTH_REQUEST_AUDIENCE:
        raise JWTError("auth request has the wrong audience")
    if not is_public_key(user_nkey, PREFIX_USER):
        raise JWTError("auth request has no valid user_nkey")
    if server.get("id") != claims["iss"]:
        raise JWTError("auth request was not signed by the server it names")
    # The header is outside the signature; the signed server_id.xkey must agree with it.
    if server_xkey and server.get("xkey") != server_xkey:
        raise JWTError("auth request xkey header does not match its signed server xkey")
    return AuthorizationRequest(claims=claims, user_nkey=user_nkey, server_id=server["id"], server_xkey=server_xkey or None)


def response_payload(token: str, request: AuthorizationRequest, xkey: XKey | None) -> bytes:
    """The bytes to reply with: the response JWT, sealed to the server's xkey when the
    request came sealed (the server accepts plaintext too, telling them apart by 'eyJ')."""
    if request.server_xkey is None:
        return token.encode("ascii")
    if xkey is None:
        raise ValueError("request was sealed: an xkey is needed to seal the response")
    return xkey.seal(token.encode("ascii"), request.server_xkey)
