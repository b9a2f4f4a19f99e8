"""Tenant: the boundary of every user, credential and scope."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict, Forbidden

SYSTEM_TENANT_ID = uuid5(NAMESPACE_URL, "authbus:tenant:system")


class Tenant(Aggregate):
    @event("TenantCreated")
    def __init__(self, name: str, actor: str, correlation_id: str, id: UUID | None = None) -> None:
        self.name = name
        self.disabled = False
        self.tags: list[str] = []
        self.metadata: dict[str, str] = {}

    def rename(self, name: str, actor: str, correlation_id: str) -> None:
        if self.id == SYSTEM_TENANT_ID:
            raise Forbidden("the system tenant keeps its name", field="tenant_id")
        if name == self.name:
            raise Conflict("the tenant already has this name", field="name")
        self._rename(name=name, actor=actor, correlation_id=correlation_id)

    @event("TenantRenamed")
    def _rename(self, name: str, actor: str, correlation_id: str) -> None:
        self.name = name

    def update(self, tags: list[str] | None, metadata: dict[str, str] | None, actor: str, correlation_id: str) -> None:
        """New tags, new metadata, or both: each replaces what was there."""
        self._update(
            tags=self.tags if tags is None else list(dict.fromkeys(tags)),
            metadata=self.metadata if metadata is None else dict(metadata),
            actor=actor,
            correlation_id=correlation_id,
        )

    @event("TenantUpdated")
    def _update(self, tags: list[str], metadata: dict[str, str], actor: str, correlation_id: str) -> None:
        self.tags = tags
        self.metadata = metadata

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
