"""Which NATS account and subjects a credential gets, for nats-server's auth callout
(handlers/callout.py), and whether a connection it admitted may stay.

authbus and its callers live in different NATS accounts (docs/operations.md §4): authbus,
root and the event feed's JetStream in the *service* account; every other client in the
*client* account, which imports authbus's endpoints as services and its feed as a stream
and has no JetStream, so no stream, mirror or source there can capture a request or a
reply.  Within the client account, what a connection may use is fixed at connect time:

* subjects from the same held scopes ``authorize`` matches one request at a time: entity
  type ``subject``, operation ``publish`` or ``subscribe``, domain null or ``nats``,
  entity id a subject pattern (``*`` alone, "every entity", is every subject: ``>``).  A
  scoped credential gets the patterns its scopes and its owner's permissions both allow
  (their meet: a PAT for ``orders.>`` of an owner holding ``orders.eu.>`` gets
  ``orders.eu.>``); an unscoped one acts as its owner: admin every subject, a tenant role
  its subject scopes, anyone else none.  A grant of nothing is a refusal.
* publishing authbus's request subjects, so every connection can ask authbus;
* a **private inbox** for replies, ``_I.<64 binary tokens>``, derived from the token
  (``private_inbox``: a client computes it the same way and gives it to its NATS library
  as the inbox prefix).  Every other private inbox is denied to it, for subscribing and
  publishing, by the sibling subtrees along its own path: 64 patterns that together match
  every inbox but its own, however wide its other grants (``>`` included).
* never: listening to authbus's requests as they cross the account (they carry passwords
  and bearer headers), to ``_INBOX.>``, or to ``$SYS``; publishing to ``$SYS`` or forging
  the event feed; reading another tenant's part of the feed (a connection any of whose
  patterns reaches beyond its own tenant's part, ``>`` say, reads none of it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from authbus.domain.permissions import subject_covers, subject_meet, subject_pattern
from authbus.domain.scopes import Scope, ScopeKey
from authbus.projections.inboxes import EVERY_SUBJECT, others_inboxes
from authbus.projections.jwt_tokens import VerificationKeys
from authbus.projections.memos import FORGETFUL, Bearers
from authbus.projections.queries import REDEEMABLE_KINDS, expires_ts, permissions_of, standing, verify
from authbus.projections.read_model import PrincipalView, ReadModel

ENTITY_TYPE = "subject"
PUBLISH, SUBSCRIBE = "publish", "subscribe"
DOMAINS = (None, "nats")
NAME_PREFIX = "authbus"  # user JWT names, so the registry of connections knows its own


@dataclass(frozen=True, slots=True)
class BusLayout:
    """authbus's subjects under ``prefix``, as the client account sees them.  ``families``
    are the third tokens of its four-token endpoint subjects (``cmd`` of
    ``auth.v1.cmd.create_pat``): infra builds them from the endpoint table, so a new
    endpoint family is covered without anyone remembering to list it."""

    prefix: str
    families: tuple[str, ...]

    @property
    def requests(self) -> tuple[str, ...]:
        """Patterns of every endpoint subject, and of no feed subject: as a deny list they
        also refuse a subscription to any of them, which ``auth.v1.*.*`` cannot (it would
        match the text ``auth.v1.events.>``)."""
        return (f"{self.prefix}.v1.*", *(f"{self.prefix}.v1.{family}.*" for family in self.families))

    @classmethod
    def of(cls, prefix: str, endpoint_subjects: Iterable[str]) -> BusLayout:
        tokens = (subject.split(".") for subject in endpoint_subjects)
        return cls(prefix, tuple(sorted({t[2] for t in tokens if len(t) == 4})))

    @property
    def feed(self) -> str:
        return f"{self.prefix}.v1.events.>"


@dataclass(frozen=True, slots=True)
class Permissions:
    """What nats-server enforces for one connection: allow and deny lists per direction."""

    pub_allow: tuple[str, ...]
    pub_deny: tuple[str, ...]
    sub_allow: tuple[str, ...]
    sub_deny: tuple[str, ...]
    answers_requests: bool  # ``allow_responses``: it may reply to requests it receives


@dataclass(frozen=True, slots=True)
class BusGrant:
    credential: Any  # CredentialView or TokenCredential
    principal: Any  # PrincipalView
    publish: tuple[str, ...]  # from scopes and the owner's permissions
    subscribe: tuple[str, ...]
    root: bool  # root's unscoped credentials go to the service account, with no limits at all
    name: str  # the connection's identity, for the registry that closes it (still_admitted)
    expires_ts: float | None  # the credential's own end; the connection must not outlive it

    def permissions(self, layout: BusLayout, inbox: str) -> Permissions:
        others = others_inboxes(inbox)
        # The feed names every tenant's users, roles and claims: a connection reads it only
        # where each of its patterns that reaches the feed stays in its own tenant's.
        feed = () if reads_only_own_feed(self.subscribe, layout, self.principal.tenant_id) else (layout.feed,)
        return Permissions(
            pub_allow=(*self.publish, *layout.requests),
            pub_deny=("$SYS.>", layout.feed, *others),
            sub_allow=(*self.subscribe, f"{inbox}.>"),
            sub_deny=("$SYS.>", "_INBOX.>", *layout.requests, *feed, *others),
            answers_requests=bool(self.subscribe),
        )


def reads_only_own_feed(patterns: Iterable[str], layout: BusLayout, tenant_id: object) -> bool:
    """Whether no pattern reaches another tenant's part of the event feed."""
    own = f"{layout.prefix}.v1.events.{tenant_id}.>"
    reached = (subject_meet(pattern, layout.feed) for pattern in patterns)
    return all(part is None or subject_covers(own, part) for part in reached)


def is_subject_pattern(subject: str) -> bool:
    """A subject a NATS permission list accepts: non-empty tokens, ``>`` only last, nothing
    but printable characters other than spaces.

    Scope entity ids are free text; one bad pattern in a user JWT would make the server
    refuse the whole connection, so such a scope is left out of the grant instead.
    """
    parts = subject.split(".")
    return all(parts) and EVERY_SUBJECT not in parts[:-1] and subject.isprintable() and not any(c.isspace() for c in subject)


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


def subjects_granted(
    model: ReadModel, scopes: dict[ScopeKey, Scope] | None, principal: PrincipalView | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(publish, subscribe) for a credential with ``scopes`` (None: unscoped) of
    ``principal`` (None: no owner in authbus, a tenant token: its scopes alone)."""
    owner = None if principal is None else permissions_of(model, principal)
    granted = []
    for operation in (PUBLISH, SUBSCRIBE):
        held = None if owner is None else owner.subjects(operation, DOMAINS)
        if scopes is None:
            granted.append((EVERY_SUBJECT,) if held is None else _listed(held))
        else:
            granted.append(narrowed(subjects(scopes.values(), operation), held))
    return granted[0], granted[1]


def bus_grant(model: ReadModel, token: str, now: float, keys: VerificationKeys, bearers: Bearers = FORGETFUL) -> BusGrant | str:
    """What the holder of ``token`` gets on the bus, or why it may not connect (a verify
    reason, ``not_a_bearer_credential`` or ``no_matching_scope``)."""
    verdict = verify(model, token, now, keys, bearers)
    if not verdict.valid:
        return verdict.reason or "unknown"
    credential, principal = verdict.credential, verdict.principal
    if credential.kind in REDEEMABLE_KINDS:
        return "not_a_bearer_credential"
    # A tenant token has no owner to bound it, and the bus guard could not close its
    # connections when its key goes: it gets no subjects.  A down-scoped access token is
    # not re-checked by its scopes (the guard sees only its session): it gets none either.
    if credential.kind == "tenant_token" or (credential.kind == "access_token" and credential.scopes is not None):
        return "no_matching_scope"
    publish, subscribe = subjects_granted(model, credential.scopes, principal)
    if not publish and not subscribe:
        return "no_matching_scope"
    name = connection_name(credential, publish, subscribe)
    # Only root acting as itself enters authbus's own account: a root-owned credential with
    # scopes is held to them, in the clients' account, like any other.
    root = "root" in principal.roles and credential.scopes is None
    return BusGrant(credential, principal, publish, subscribe, root, name, expires_ts(credential))


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def connection_name(credential: Any, publish: tuple[str, ...], subscribe: tuple[str, ...]) -> str:
    """The identity a connection carries in its user JWT: the credential (an access token
    by its session and signing key), and a fingerprint of its secret and of what it was
    granted, so a reset secret or a narrowed grant shows without holding the token."""
    if credential.kind == "access_token":
        ident = f"{credential.session_id}:{credential.kid}"
        fingerprint = _fingerprint(publish, subscribe)
    else:
        ident = str(credential.id)
        fingerprint = _fingerprint(getattr(credential, "digest", b""), publish, subscribe)
    return f"{NAME_PREFIX}:{credential.kind}:{ident}:{fingerprint}"


def still_admitted(model: ReadModel, name: str, now: float) -> bool | None:
    """Whether a connection admitted as ``name`` would be admitted, with the same grant, now;
    None when ``name`` is none of ours or names what this read model does not know yet."""
    parts = name.split(":")
    if len(parts) < 4 or parts[0] != NAME_PREFIX:
        return None
    kind, fingerprint = parts[1], parts[-1]
    try:
        ident = UUID(parts[2])
    except ValueError:
        return None
    if kind == "access_token":
        session = model.sessions.get(ident)
        key = model.signing_keys.get(parts[3]) if len(parts) == 5 else None
        if session is None or key is None:
            return None
        principal = model.principals[session.user_id]
        if session.revoked or key.status == "revoked" or principal.disabled or model.tenants[principal.tenant_id].disabled:
            return False
        publish, subscribe = subjects_granted(model, None, principal)
        return _fingerprint(publish, subscribe) == fingerprint
    credential = model.credentials.get(ident)
    if credential is None:
        return None
    verdict = standing(model, credential, now)
    if not verdict.valid:
        return False
    publish, subscribe = subjects_granted(model, credential.scopes, verdict.principal)
    return _fingerprint(credential.digest, publish, subscribe) == fingerprint
