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
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authbus.domain.errors import InvalidRequest
from authbus.projections.read_model import SigningKeyView

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
JWK_OF = {"EdDSA": OKPAlgorithm.to_jwk, "ES256": ECAlgorithm.to_jwk, "RS256": RSAAlgorithm.to_jwk}


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
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    else:  # pragma: no cover - the command's type only admits the algorithms above
        raise ValueError(alg)
    return _wrapped(private, alg, kid, wrap)


def _wrapped(private: Any, alg: str, kid: str, wrap: KeyWrap) -> GeneratedKey:
    jwk = JWK_OF[alg](private.public_key(), as_dict=True)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return GeneratedKey({**jwk, "kid": kid, "alg": alg, "use": "sig"}, wrap.wrap(kid, pem))


def take_in(alg: str, kid: str, wrap: KeyWrap, pem: str) -> GeneratedKey:
    """A private key the tenant brings (unencrypted PEM, PKCS#8 or the older RSA and EC forms),
    kept as generated ones are.  Refused, without a word of the key, unless it is a key of
    ``alg`` that authbus would have made: Ed25519, P-256, RSA of 2,048 bits or more with
    exponent 65537."""
    try:
        # Its size first, unchecked: checking an RSA key takes seconds at 16k bits, on the writer.
        unchecked = serialization.load_pem_private_key(pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
        if isinstance(unchecked, rsa.RSAPrivateKey) and unchecked.key_size > MAX_RSA_BITS:
            raise InvalidRequest(f"private_key is RSA of {unchecked.key_size} bits: at most {MAX_RSA_BITS}", field="private_key")
        private = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidRequest("private_key is not an unencrypted PEM private key", field="private_key") from None
    found = _alg_of(private)
    if found != alg:
        raise InvalidRequest(
            f"private_key is {found or 'a key of no algorithm authbus signs with'}, not {alg}", field="private_key"
        )
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < MIN_RSA_BITS:
            raise InvalidRequest(f"private_key is RSA of {private.key_size} bits: at least {MIN_RSA_BITS}", field="private_key")
        if private.private_numbers().public_numbers.e != 65537:
            raise InvalidRequest("private_key is RSA with a public exponent other than 65537", field="private_key")
    return _wrapped(private, alg, kid, wrap)


def _alg_of(private: Any) -> str | None:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return "ES256" if isinstance(private.curve, ec.SECP256R1) else f"an EC key on {private.curve.name}"
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    return None


def hs256_keys(secret: bytes) -> tuple[bytes, ...]:
    """An HS256 key's HMAC keys, in the order tried (wire.md §3.5): the 32 bytes its secret
    encodes, which is what Hivekit's clients use (``Buffer.from(secret, 'base64')``), then
    the secret's own text, the form authbus documented first."""
    try:
        return unb64url(secret.decode()), secret
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError; every secret made so far decodes
        return (secret,)


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
        return jwt.encode(claims, self.signing_key(key), algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"})
