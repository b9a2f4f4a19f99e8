"""Aggregates that exist only to make the event store enforce uniqueness.

A claim's id is derived from what must be unique (a tenant name, a username, an actor's
command id), so a second claim collides on version 1 inside the same transaction as the
command's other events, and the whole command appends nothing.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict


class NameClaim(Aggregate):
    """Released claims (a removed public key, say) can be claimed again, by anyone."""

    @event("NameClaimed")
    def __init__(self, id: UUID, namespace: str, name: str, owner_id: UUID, actor: str, correlation_id: str) -> None:
        self.namespace = namespace
        self.name = name
        self.owner_id: UUID | None = owner_id

    def release(self, actor: str, correlation_id: str) -> None:
        if self.owner_id is None:
            raise Conflict(f"{self.namespace} is not claimed")
        self._release(actor=actor, correlation_id=correlation_id)

    def reclaim(self, owner_id: UUID, actor: str, correlation_id: str) -> None:
        if self.owner_id is not None:
            raise Conflict(f"{self.namespace} {self.name!r} is already taken", field=self.namespace)
        self._reclaim(owner_id=owner_id, actor=actor, correlation_id=correlation_id)

    @event("NameReleased")
    def _release(self, actor: str, correlation_id: str) -> None:
        self.owner_id = None

    @event("NameReclaimed")
    def _reclaim(self, owner_id: UUID, actor: str, correlation_id: str) -> None:
        self.owner_id = owner_id


class CommandRecord(Aggregate):
    """The first reply to a command sent with a ``command_id``, without its secrets.

    ``credential_id`` is the credential that sent it: a repeat is answered only to that
    one (another credential of the same principal may hold less).  ``secrets`` maps a result field to the recipe from which its shown-once value is derived
    again on a repeat (see infra.store_unit.render_secret), so the repeat returns the same token
    or key secret without any secret having been stored.
    """

    @event("CommandRecorded")
    def __init__(
        self,
        id: UUID,
        command: str,
        command_id: str,
        request_digest: str,
        result: dict[str, object],
        secrets: dict[str, list[str]],
        actor: str,
        correlation_id: str,
        credential_id: str | None = None,  # None in records written before it was kept
    ) -> None:
        self.credential_id = credential_id
        self.command = command
        self.command_id = command_id
        self.request_digest = request_digest
        self.result = result
        self.secrets = secrets


def command_record_id(actor: str, command_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"authbus:command:{actor}:{command_id}")
