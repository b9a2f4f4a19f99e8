"""Signing-key material: generated here, wrapped under the KEK, unwrapped only in memory.

Wrapping is AES-256-GCM with a fresh 96-bit nonce and the key id as associated data, so a
wrapped private key cannot be swapped onto another key's record.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authbus.projections.read_model import SigningKeyView


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class GeneratedKey:
    public_jwk: dict[str, str] | None
    sealed_private: str


class KeyWrap:
    """Private keys wrapped under a KEK-derived key for the log.  (Their field is still named
    ``sealed_private``, as stored; in authbus "seal" now means the audit checkpoints alone.)"""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def wrap(self, kid: str, plaintext: bytes) -> str:
        nonce = os.urandom(12)
        return b64url(nonce + self._aead.encrypt(nonce, plaintext, kid.encode()))

    def unwrap(self, kid: str, wrapped: str) -> bytes:
        raw = unb64url(wrapped)
        return self._aead.decrypt(raw[:12], raw[12:], kid.encode())


def generate(alg: str, kid: str, wrap: KeyWrap, hs256_secret: bytes | None = None) -> GeneratedKey:
    """A new key for ``alg``; HS256 takes its secret from the caller (derived or random)."""
    if alg == "HS256":
        assert hs256_secret is not None
        return GeneratedKey(None, wrap.wrap(kid, hs256_secret))
    if alg == "EdDSA":
        private: Any = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:  # pragma: no cover - the command's type only admits the algorithms above
        raise ValueError(alg)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return GeneratedKey({**jwk, "kid": kid, "alg": alg, "use": "sig"}, wrap.wrap(kid, pem))


def hs256_keys(secret: bytes) -> tuple[bytes, bytes]:
    """An HS256 key's HMAC keys, in the order tried (wire.md §3.5): the 32 bytes its secret
    encodes, which is what Hivekit's clients use (``Buffer.from(secret, 'base64')``), then
    the secret's own text, the form authbus documented first."""
    return unb64url(secret.decode()), secret


class Keyring:
    """Opened keys by kid, for signing and verifying; the read model holds them sealed."""

    def __init__(self, wrap: KeyWrap) -> None:
        self._wrap = wrap
        self._private: dict[str, Any] = {}
        self._public: dict[str, tuple[Any, ...]] = {}

    def verification_keys(self, key: SigningKeyView) -> tuple[Any, ...]:
        opened = self._public.get(key.kid)
        if opened is None:
            if key.alg == "HS256":
                opened = hs256_keys(self._wrap.unwrap(key.kid, key.sealed_private))
            else:
                opened = (jwt.PyJWK(key.public_jwk, algorithm=key.alg).key,)
            self._public[key.kid] = opened
        return opened

    def signing_key(self, key: SigningKeyView) -> Any:
        opened = self._private.get(key.kid)
        if opened is None:
            opened = serialization.load_pem_private_key(self._wrap.unwrap(key.kid, key.sealed_private), password=None)
            self._private[key.kid] = opened
        return opened

    def sign(self, key: SigningKeyView, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.signing_key(key), algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"})
