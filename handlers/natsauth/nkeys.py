"""NATS nkeys (ed25519) and xkeys (curve25519), after nats-io/nkeys strkey.go and xkeys.go, with
PyNaCl: the nkeys package for Python knows no curve keys and cannot verify with a bare public key."""

from __future__ import annotations

import base64
import binascii
import os

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


def _crc16(data: bytes) -> int:
    # CRC-16/XMODEM (poly 0x1021, init 0), the checksum nkeys appends little-endian.
    return binascii.crc_hqx(data, 0)


def b32encode(raw: bytes) -> str:
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
    return b32encode(body + _crc16(body).to_bytes(2, "little"))


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
