"""Everything the KEK keys, each under a key derived for its one purpose: derived once, at start
(infra/bootstrap.py), and handed to what needs it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from uuid import UUID

from authbus.infra.challenges import Challenges
from authbus.infra.crypto.kek import SecretSource, derive
from authbus.infra.crypto.keys import Keyring, KeyWrap
from authbus.infra.snapshot import snapshot_key


@dataclass(frozen=True)
class KeyMaterial:
    secrets: SecretSource  # a retried command's shown-once secrets, derived again
    key_wrap: KeyWrap  # signing keys' private halves, wrapped at rest in the log
    keyring: Keyring  # signing keys opened, in memory
    challenges: Challenges  # Ed25519 challenges any instance can check
    audit_seed: bytes  # the Ed25519 seed audit checkpoints are signed with
    snapshot_key: bytes  # the read-model snapshot's MAC
    throttle_key: bytes  # where a username nobody holds has its failed logins counted

    @classmethod
    def from_kek(cls, kek: bytes) -> KeyMaterial:
        key_wrap = KeyWrap(derive(kek, b"seal"))  # the label predates the word "wrap": keys derived from it stay
        return cls(
            secrets=SecretSource(kek),
            key_wrap=key_wrap,
            keyring=Keyring(key_wrap),
            challenges=Challenges(derive(kek, b"challenges")),
            audit_seed=derive(kek, b"audit-seal"),
            snapshot_key=snapshot_key(kek),
            throttle_key=derive(kek, b"login-throttle"),
        )

    def throttle_id(self, tenant_id: UUID, username: str) -> UUID:
        """Where a username's failed logins are counted when no user holds it: keyed, so the
        log says nothing of names that were tried (domain/throttle.py)."""
        digest = hmac.new(self.throttle_key, f"{tenant_id}:{username.casefold()}".encode(), hashlib.sha256).digest()
        return UUID(bytes=digest[:16])
