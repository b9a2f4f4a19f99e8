"""Ed25519 challenge–response: stateless challenges any instance can check.

A challenge is ``<base64url payload>.<HMAC>`` under a KEK-derived key, naming the tenant,
the public key, a nonce and an expiry; the client signs the whole string.  Redeeming once
is the store's job: the answer claims the nonce inside the login's transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from uuid import UUID

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authbus.domain.decisions.logins import CHALLENGE_SECONDS
from authbus.infra.crypto.keys import b64url, unb64url


class _Payload(msgspec.Struct, forbid_unknown_fields=True):
    t: UUID  # tenant
    k: str  # public key, base64url
    n: str  # nonce
    e: int  # expires, epoch seconds


@dataclass(frozen=True)
class Answered:
    tenant_id: UUID
    public_key: str
    nonce: str


class Challenges:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, body: str) -> str:
        return b64url(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, tenant_id: UUID, public_key: str, now: float) -> tuple[str, int]:
        expires = int(now) + CHALLENGE_SECONDS
        body = b64url(msgspec.json.encode(_Payload(tenant_id, public_key, b64url(os.urandom(16)), expires)))
        return f"{body}.{self._mac(body)}", expires

    def answer(self, challenge: str, signature: str, now: float) -> Answered | None:
        """The challenge's content if it is ours, unexpired, and signed by its public key."""
        body, _, mac = challenge.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):  # bytes: any text compares
            return None
        try:
            payload = msgspec.json.decode(unb64url(body), type=_Payload)
            Ed25519PublicKey.from_public_bytes(unb64url(payload.k)).verify(unb64url(signature), challenge.encode())
        except (msgspec.DecodeError, ValueError, InvalidSignature):
            return None
        if payload.e <= now:
            return None
        return Answered(payload.t, payload.k, payload.n)
