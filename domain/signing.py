"""SigningKey: a key that signs JWTs.

Asymmetric keys (EdDSA, ES256, RS256) sign authbus's own access tokens; HS256 keys are
handed to a tenant, which mints its own tokens with any JWT library.  The private half
is stored only sealed (AES-GCM under the KEK); the public half is public.  Retiring stops
signing but still verifies; revoking invalidates at once every token the key signed.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict

ASYMMETRIC_ALGS = ("EdDSA", "ES256", "RS256")
ALGS = (*ASYMMETRIC_ALGS, "HS256")


class SigningKey(Aggregate):
    @event("SigningKeyCreated")
    def __init__(
        self,
        id: UUID,
        tenant_id: UUID,
        alg: str,
        public_jwk: dict[str, str] | None,
        sealed_private: str,
        actor: str,
        correlation_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.alg = alg
        self.public_jwk = public_jwk
        self.sealed_private = sealed_private
        self.status = "active"

    @property
    def kid(self) -> str:
        return str(self.id)

    def retire(self, actor: str, correlation_id: str) -> None:
        if self.status != "active":
            raise Conflict(f"signing key is {self.status}", field="kid")
        self._retire(actor=actor, correlation_id=correlation_id)

    def revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        if self.status == "revoked":
            raise Conflict("signing key is already revoked", field="kid")
        self._revoke(actor=actor, correlation_id=correlation_id, reason=reason)

    @event("SigningKeyRetired")
    def _retire(self, actor: str, correlation_id: str) -> None:
        self.status = "retired"

    @event("SigningKeyRevoked")
    def _revoke(self, actor: str, correlation_id: str, reason: str) -> None:
        self.status = "revoked"
