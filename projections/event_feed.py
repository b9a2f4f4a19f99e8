"""What the event feed publishes for a stored event: a subject and a payload with no
secret and no hash in it.  Pure: the tenant of an event that does not name one comes
from the read model, which has folded the aggregate's creation."""

from __future__ import annotations

from typing import Any

from authbus.projections.read_model import ReadModel

NO_TENANT = "_"  # uniqueness claims and command records belong to no tenant
AGGREGATES = {
    "Tenant": "tenant",
    "User": "user",
    "PersonalAccessToken": "pat",
    "Key": "key",
    "SigningKey": "signing_key",
    "Session": "session",
    "Role": "role",
    "LoginThrottle": "login",
    "NameClaim": "claim",
    "CommandRecord": "command",
    "Checkpoint": "checkpoint",
}
# Hashes, sealed keys and replay material stay in the store; the feed says what happened.
# A checkpoint's per-position links (up to ~75 KB) stay there too, for ``audit verify``.
REDACTED = frozenset(
    {"secret_hash", "password_hash", "sealed_private", "refresh_hash", "request_digest", "result", "secrets", "links"}
)
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def aggregate_of(event: Any) -> str:
    return AGGREGATES.get(type(event).__qualname__.split(".")[0], "other")


def tenant_of(model: ReadModel, event: Any, aggregate: str) -> str:
    named = getattr(event, "tenant_id", None)
    if named is not None:
        return str(named)
    if aggregate == "tenant":
        return str(event.originator_id)
    oid = event.originator_id
    for index in (model.principals, model.credentials, model.sessions, model.roles):
        view = index.get(oid)
        if view is not None:
            return str(view.tenant_id)
    key = model.signing_keys.get(str(oid))
    return str(key.tenant_id) if key is not None else NO_TENANT


def describe(model: ReadModel, position: int, event: Any, prefix: str) -> tuple[str, dict[str, Any]]:
    """(subject, payload) of one event on the feed."""
    aggregate = aggregate_of(event)
    tenant = tenant_of(model, event, aggregate)
    name = type(event).__name__
    data = {k: v for k, v in vars(event).items() if k not in ENVELOPE and k not in REDACTED}
    payload = {
        "position": position,
        "type": name,
        "aggregate": aggregate,
        "aggregate_id": str(event.originator_id),
        "version": event.originator_version,
        "timestamp": event.timestamp,
        "tenant_id": tenant,
        "actor": data.pop("actor", None),
        "correlation_id": data.pop("correlation_id", None),
        "data": data,
    }
    return f"{prefix}.v1.events.{tenant}.{aggregate}.{name}", payload
