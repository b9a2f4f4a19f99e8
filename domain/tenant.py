"""Tenant: the boundary of every user, credential and scope."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict, Forbidden

SYSTEM_TENANT_ID = uuid5(NAMESPACE_URL, "authbus:tenant:system")
REGISTRATIONS_PER_MINUTE = 30  # open registrations and keypair sign-ups a tenant takes, from all callers

# A tenant's policy (set_tenant_policy): a lifetime or audience of None is the deployment's
# (AUTHBUS_ACCESS_TOKEN_SECONDS, AUTHBUS_SESSION_SECONDS, AUTHBUS_AUDIENCE); self-service
# is off until the tenant's admin turns it on.
DEFAULT_POLICY: dict[str, Any] = {
    "access_token_seconds": None,
    "session_seconds": None,
    "audience": None,
    "open_registration": False,
    "keypair_signup": False,
    "registrations_per_minute": REGISTRATIONS_PER_MINUTE,
}


class Tenant(Aggregate):
    @event("TenantCreated")
    def __init__(self, name: str, actor: str, correlation_id: str, id: UUID | None = None) -> None:
        self.name = name
        self.disabled = False
        self.tags: list[str] = []
        self.metadata: dict[str, str] = {}
        self.policy: dict[str, Any] = dict(DEFAULT_POLICY)
        self.role_order: list[str] | None = None  # None: the default (domain/role_order.py)

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

    def set_policy(self, policy: dict[str, Any], actor: str, correlation_id: str) -> None:
        """The whole policy: what it leaves out takes its default."""
        self._set_policy(policy={**DEFAULT_POLICY, **policy}, actor=actor, correlation_id=correlation_id)

    @event("TenantPolicySet")
    def _set_policy(self, policy: dict[str, Any], actor: str, correlation_id: str) -> None:
        self.policy = policy

    def set_role_order(self, order: list[str], names: list[str], actor: str, correlation_id: str) -> None:
        """``order``: built-in names and tenant-role ids, lowest first; ``names`` the same
        roles by name as they are now, for whoever reads the log."""
        self._set_role_order(order=order, names=names, actor=actor, correlation_id=correlation_id)

    @event("RoleOrderSet")
    def _set_role_order(self, order: list[str], names: list[str], actor: str, correlation_id: str) -> None:
        self.role_order = order

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
