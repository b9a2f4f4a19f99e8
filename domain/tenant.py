"""Tenant: the boundary of every user, credential and scope."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict

SYSTEM_TENANT_ID = uuid5(NAMESPACE_URL, "authbus:tenant:system")


class Tenant(Aggregate):
    @event("TenantCreated")
    def __init__(self, name: str, actor: str, correlation_id: str, id: UUID | None = None) -> None:
        self.name = name
        self.disabled = False

    @event("TenantRenamed")
    def rename(self, name: str, actor: str, correlation_id: str) -> None:
        self.name = name

    def disable(self, actor: str, correlation_id: str, reason: str) -> None:
        if self.disabled:
            raise Conflict("tenant is already disabled", field="tenant_id")
        self._disable(actor=actor, correlation_id=correlation_id, reason=reason)

    def enable(self, actor: str, correlation_id: str) -> None:
        if not self.disabled:
            raise Conflict("tenant is not disabled", field="tenant_id")
        self._enable(actor=actor, correlation_id=correlation_id)

    @event("TenantDisabled")
    def _disable(self, actor: str, correlation_id: str, reason: str) -> None:
        self.disabled = True

    @event("TenantEnabled")
    def _enable(self, actor: str, correlation_id: str) -> None:
        self.disabled = False


def tenant_name_claim_id(name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"authbus:tenant-name:{name.casefold()}")
