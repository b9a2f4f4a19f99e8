"""Ed25519 public keys as clients send them, each read to one canonical form.

A key is stored, claimed and compared as base64url of its 32 raw bytes (43 characters, no
padding, the unused bits zero), so the same key in two spellings is one key.  Accepted
spellings (docs/wire.md §6.7):

* base64url of the raw key: the canonical form itself;
* multibase ``b…`` (base32, lower case) and ``z…`` (base58btc) of the multicodec
  ``ed25519-pub`` key (``0xed 0x01`` ‖ key) or of the libp2p protobuf key
  (``08 01 12 20`` ‖ key): Textile's ``PublicKey.toString()`` is ``b…`` of the last.
  Not of the bare key: ``z`` and base58 of 32 bytes can be 43 characters of the canonical
  alphabet, which would then name two keys;
* ``did:key:z…``, the multicodec key in base58btc.
"""

from __future__ import annotations

import base64
import binascii
import re

from authbus.domain.errors import InvalidRequest

RAW = 32
MULTICODEC = b"\xed\x01"  # ed25519-pub, as an unsigned varint
LIBP2P = b"\x08\x01\x12\x20"  # protobuf: KeyType Ed25519 (1), Data of 32 bytes
DID_KEY = "did:key:"
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
CANONICAL = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")
BASE32 = re.compile(r"[a-z2-7]+\Z")
# A spelling is at most the protobuf key in base32 (59) or the DID (56): anything longer is not one.
MAX_LENGTH = 128


def canonical(text: str) -> str:
    """The key ``text`` spells, as base64url of its 32 bytes; InvalidRequest naming
    ``public_key`` when it spells no Ed25519 public key."""
    if CANONICAL.match(text):
        return text
    raw = _raw(text) if len(text) <= MAX_LENGTH else None
    if raw is None:
        raise InvalidRequest(
            "public_key is not an Ed25519 public key: base64url of its 32 bytes, multibase (b… or z…) or did:key",
            field="public_key",
        )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(text: str) -> bytes | None:
    if text.startswith(DID_KEY):
        decoded = _base58(text[len(DID_KEY) + 1 :]) if text[len(DID_KEY) :].startswith("z") else None
        return _unwrapped(decoded, (MULTICODEC,))
    if text.startswith("b") and BASE32.match(text[1:]):
        return _unwrapped(_base32(text[1:]), (MULTICODEC, LIBP2P))
    if text.startswith("z"):
        return _unwrapped(_base58(text[1:]), (MULTICODEC, LIBP2P))
    return None


def _unwrapped(decoded: bytes | None, prefixes: tuple[bytes, ...]) -> bytes | None:
    if decoded is None:
        return None
    for prefix in prefixes:
        if len(decoded) == len(prefix) + RAW and decoded.startswith(prefix):
            return decoded[len(prefix) :]
    return None


def _base32(text: str) -> bytes | None:
    try:
        decoded = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    # Only the one spelling of these bytes: unused bits set would make a second.
    return decoded if base64.b32encode(decoded).decode().rstrip("=").lower() == text else None


def _base58(text: str) -> bytes | None:
    if not text or any(c not in BASE58 for c in text):
        return None
    number = 0
    for c in text:
        number = number * 58 + BASE58.index(c)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    zeros = len(text) - len(text.lstrip("1"))  # each leading "1" is a leading zero byte
    return b"\0" * zeros + body
