"""The auth callout's claims, after nats-io/jwt v2 user_claims.go and authorization_claims.go and
nats-server server/auth_callout.go: the user JWT authbus grants, and the request and response
it is wrapped in (sealed with an xkey when configured)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authbus.handlers.natsauth.jwt import LIB_VERSION, JWTError, decode_jwt, encode_jwt
from authbus.handlers.natsauth.nkeys import PREFIX_SERVER, PREFIX_USER, NKey, NKeyError, XKey, is_public_key

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
