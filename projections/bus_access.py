"""Which NATS subjects a credential may use, for nats-server's auth callout (handlers/callout.py).

The server enforces allow and deny lists fixed at connect time, so the grant is listed up
front from the same held scopes ``authorize`` matches one request at a time: entity_type
``subject``, operation ``publish`` or ``subscribe``, domain null or ``nats``, entity_id a
subject pattern (``*`` alone, "every entity", is every subject: ``>``).  A scoped
credential gets the patterns its scopes and its owner's permissions both allow (their
meet: a PAT for ``orders.>`` of an owner holding ``orders.eu.>`` gets ``orders.eu.>``); an
unscoped one acts as its owner: root and admin every subject, a tenant role its subject
scopes, anyone else none.  A grant of nothing is a refusal: a connection that can neither
publish nor subscribe is no use to anyone.

Everyone but root shares the account with authbus and its callers, so some subjects are
never granted whatever the scopes say (``Reserved``): listening to authbus's requests
(passwords, bearer headers), to other clients' inboxes (their tokens) or to the server's
system subjects, and forging the event feed or deleting its stream.  Replies come to a
private inbox instead, ``_INBOX_<principal id>.>``, granted to anyone who may publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from authbus.domain.permissions import subject_meet, subject_pattern
from authbus.domain.scopes import Scope
from authbus.projections.jwt_tokens import KeyMaterial
from authbus.projections.queries import REDEEMABLE_KINDS, permissions_of, verify
from authbus.projections.read_model import ReadModel

ENTITY_TYPE = "subject"
PUBLISH, SUBSCRIBE = "publish", "subscribe"
DOMAINS = (None, "nats")
EVERY_SUBJECT = ">"


@dataclass(frozen=True, slots=True)
class Reserved:
    """Subjects denied to every connection but root's."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @classmethod
    def of(cls, prefix: str, stream: str, lease_bucket: str) -> Reserved:
        """For authbus under subject ``prefix``, its feed ``stream`` and the lease's KV bucket."""
        jetstream = (
            f"$JS.API.STREAM.*.{stream}", f"$JS.API.STREAM.MSG.*.{stream}",
            f"$JS.API.STREAM.*.KV_{lease_bucket}", f"$KV.{lease_bucket}.>",
        )
        return cls(
            publish=("$SYS.>", f"{prefix}.v1.events.>", *jetstream),
            subscribe=(
                "$SYS.>", "$JS.API.>", "_INBOX.>",
                *(f"{prefix}.v1.{tail}" for tail in ("*", "cmd.*", "admin.*", "challenge.*", "audit.*")),
            ),
        )


NOTHING_RESERVED = Reserved((), ())


@dataclass(frozen=True, slots=True)
class BusGrant:
    credential: Any  # CredentialView or TokenCredential
    principal: Any  # PrincipalView or ExternalPrincipal
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    denied: Reserved
    expires_ts: float | None  # the credential's own end; the connection must not outlive it


def is_subject_pattern(subject: str) -> bool:
    """A subject a NATS permission list accepts: non-empty tokens, ``>`` only last.

    Scope entity ids are free text; one bad pattern in a user JWT would make the server
    refuse the whole connection, so such a scope is left out of the grant instead.
    """
    parts = subject.split(".")
    return all(parts) and EVERY_SUBJECT not in parts[:-1]


def private_inbox(principal_id: object) -> str:
    """Where a client's replies come: give nats.py ``inbox_prefix`` the part before ``.>``."""
    return f"_INBOX_{principal_id}.>"


def subjects(scopes: Iterable[Scope], operation: str) -> tuple[str, ...]:
    found = [
        subject_pattern(scope.entity_id)
        for scope in scopes
        if scope.entity_type == ENTITY_TYPE and scope.operation == operation and scope.domain in DOMAINS
    ]
    return _listed(found)


def _listed(patterns: Iterable[str]) -> tuple[str, ...]:
    valid = {p: None for p in patterns if is_subject_pattern(p)}
    return (EVERY_SUBJECT,) if EVERY_SUBJECT in valid else tuple(sorted(valid))


def narrowed(own: tuple[str, ...], held: tuple[str, ...] | None) -> tuple[str, ...]:
    """A credential's patterns cut down to what its owner holds (None: everything)."""
    if held is None:
        return own
    return _listed(m for a in own for b in held if (m := subject_meet(a, b)) is not None)


def bus_grant(model: ReadModel, token: str, now: float, keys: KeyMaterial, reserved: Reserved) -> BusGrant | str:
    """The subjects the holder of ``token`` may use, or why it may not connect (a verify
    reason, ``not_a_bearer_credential`` or ``no_matching_scope``)."""
    verdict = verify(model, token, now, keys)
    if not verdict.valid:
        return verdict.reason or "unknown"
    credential, principal = verdict.credential, verdict.principal
    if credential.kind in REDEEMABLE_KINDS:
        return "not_a_bearer_credential"
    # A credential gets what its own scopes and its owner's permissions both allow; an
    # unscoped one acts as its owner.  A tenant token has no owner here: its scopes alone.
    owner = None if credential.kind == "tenant_token" else permissions_of(model, principal)
    granted = []
    for operation in (PUBLISH, SUBSCRIBE):
        held = None if owner is None else owner.subjects(operation, DOMAINS)
        if credential.scopes is None:
            granted.append((EVERY_SUBJECT,) if held is None else _listed(held))
        else:
            granted.append(narrowed(subjects(credential.scopes.values(), operation), held))
    publish, subscribe = granted
    if not publish and not subscribe:
        return "no_matching_scope"
    if "root" in principal.roles:
        reserved = NOTHING_RESERVED
    elif publish and EVERY_SUBJECT not in subscribe and is_subject_pattern(inbox := private_inbox(principal.id)):
        subscribe = (*subscribe, inbox)
    return BusGrant(credential, principal, publish, subscribe, reserved, _expires_ts(credential))


def _expires_ts(credential: Any) -> float | None:
    if (ts := getattr(credential, "expires_ts", None)) is not None:
        return ts
    expires_at = credential.expires_at  # a JWT's, as RFC 3339
    return None if expires_at is None else datetime.fromisoformat(expires_at).timestamp()
