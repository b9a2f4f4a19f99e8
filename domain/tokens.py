"""Credential formats (DESIGN §4): ``<prefix>_<id>_<secret>_<checksum>``.

* id: base64url (no padding) of the credential's 16-byte UUID, 22 characters;
* secret: base62 of 32 random bytes, 43 characters;
* checksum: base62 of CRC32 over everything before it, 6 characters.

Base64url may itself contain ``_``, so a token is cut at fixed offsets, never split on ``_``.
The checksum lets a typo be rejected without a lookup, and the prefix lets secret scanners
recognise a leaked credential.  Only SHA-256 of the secret is ever stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from dataclasses import dataclass
from uuid import UUID

PREFIXES = {"pat": "pat", "api_key": "key", "recovery": "rec", "invitation": "inv", "refresh": "rt"}
KIND_OF_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHABET_SET = frozenset(_ALPHABET)
_ID_LEN, _SECRET_LEN, _CHECK_LEN = 22, 43, 6
SECRET_BYTES = 32


def base62(value: int, width: int) -> str:
    digits = []
    while value:
        value, digit = divmod(value, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode()), _CHECK_LEN)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    kind: str
    credential_id: UUID
    secret: str


def mint(kind: str, credential_id: UUID, secret: bytes) -> str:
    """The token for a credential id and 32 secret bytes."""
    if len(secret) != SECRET_BYTES:
        raise ValueError("a secret is 32 bytes")
    encoded_id = base64.urlsafe_b64encode(credential_id.bytes).rstrip(b"=").decode()
    body = f"{PREFIXES[kind]}_{encoded_id}_{base62(int.from_bytes(secret, 'big'), _SECRET_LEN)}"
    return f"{body}_{_checksum(body)}"


def parse(token: str) -> ParsedToken | None:
    """The parts of a well-formed token, or None for anything malformed (bad checksum too)."""
    if not token.isascii():  # every well-formed token is; compare_digest refuses other text
        return None
    prefix, sep, rest = token.partition("_")
    kind = KIND_OF_PREFIX.get(prefix)
    if kind is None or not sep or len(rest) != _ID_LEN + _SECRET_LEN + _CHECK_LEN + 2:
        return None
    encoded_id = rest[:_ID_LEN]
    secret = rest[_ID_LEN + 1 : _ID_LEN + 1 + _SECRET_LEN]
    check = rest[-_CHECK_LEN:]
    if rest[_ID_LEN] != "_" or rest[-_CHECK_LEN - 1] != "_":
        return None
    if not hmac.compare_digest(check, _checksum(token[: -_CHECK_LEN - 1])):
        return None
    try:
        raw_id = base64.urlsafe_b64decode(encoded_id + "==")
    except (binascii.Error, ValueError):
        return None
    if len(raw_id) != 16 or not _ALPHABET_SET.issuperset(secret):
        return None
    return ParsedToken(kind, UUID(bytes=raw_id), secret)


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def hash_for_storage(token: str) -> str:
    """Hex SHA-256 of a freshly minted token's secret: the only form that enters an event."""
    parsed = parse(token)
    if parsed is None:  # pragma: no cover - mint() always produces parseable tokens
        raise ValueError("not a token")
    return secret_digest(parsed.secret).hex()


def secret_matches(secret: str, stored_digest: bytes) -> bool:
    return hmac.compare_digest(secret_digest(secret), stored_digest)
