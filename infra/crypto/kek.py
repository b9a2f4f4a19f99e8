"""Key material: the KEK, password hashing, and secrets that a retried command can derive again.

A command sent with a ``command_id`` gets its token secrets from
HMAC(key derived from the KEK, actor ‖ command_id ‖ n) instead of the RNG, so a retry
returns the same token while no secret, not even encrypted, is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from authbus.domain.tokens import SECRET_BYTES

KEK_BYTES = 32


class KEKError(Exception):
    """The KEK is missing or unusable; raised at startup with a message for the operator."""


def load_kek(kek_hex: str | None, kek_file: Path | None, create: bool = False) -> bytes:
    if kek_hex:
        try:
            kek = bytes.fromhex(kek_hex.strip())
        except ValueError:
            raise KEKError("AUTHBUS_KEK is not hex") from None
    elif kek_file is not None:
        if not kek_file.exists():
            if not create:
                raise KEKError(f"no KEK: {kek_file} does not exist (set AUTHBUS_KEK or --kek-file)")
            write_private(kek_file, secrets.token_hex(KEK_BYTES) + "\n", new=True)
        try:
            kek = bytes.fromhex(kek_file.read_text().strip())
        except ValueError:
            raise KEKError(f"{kek_file} does not hold a hex KEK") from None
    else:
        raise KEKError("no KEK: set AUTHBUS_KEK (64 hex characters) or --kek-file")
    if len(kek) != KEK_BYTES:
        raise KEKError(f"the KEK must be {KEK_BYTES} bytes (64 hex characters), not {len(kek)}")
    return kek


def write_private(path: Path, text: str, *, new: bool = False) -> None:
    """Write ``text`` to a file that only its owner may read or write, making its directory.
    ``new``: FileExistsError rather than replace a file that is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC), stat.S_IRUSR | stat.S_IWUSR)
    os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # a file that was there keeps its mode through O_TRUNC
    with os.fdopen(fd, "w") as f:
        f.write(text)


def derive(kek: bytes, purpose: bytes) -> bytes:
    """A key for one purpose, so no two uses ever share key material with the KEK."""
    return hmac.new(kek, b"authbus/v1/" + purpose, hashlib.sha256).digest()


class SecretSource:
    def __init__(self, kek: bytes) -> None:
        self._replay_key = derive(kek, b"command-secrets")

    def secret(self, actor: str, command_id: str | None, index: int) -> bytes:
        if command_id is None:
            return secrets.token_bytes(SECRET_BYTES)
        message = f"{actor}\0{command_id}\0{index}".encode()
        return hmac.new(self._replay_key, message, hashlib.sha256).digest()


class Passwords:
    """argon2id with the RFC 9106 low-memory profile (argon2-cffi's defaults)."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def matches(self, password: str, password_hash: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
