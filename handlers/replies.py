"""The replies' shapes (docs/wire.md §6), shared by the handlers that encode them and the
Python client (infra/client) that decodes them.  Unknown fields are ignored on decoding, so
a newer server's additions do not break an older client.

``verify`` and ``authorize`` answer from dicts they keep built (projections/memos.py), in
exactly these shapes: a struct per request there would cost what the memo saves.

The admin and audit reads' details are drawn in projections (queries.user_detail, audit.as_of,
…), which the audit CLI shares and which know nothing of handlers; the handlers convert them
into these structs.  Fields are declared in the order the projections write their keys, so
the bytes on the wire are those the dicts made, and a field absent there is ``UNSET`` here
(tests/unit/test_replies.py holds them to it).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

if TYPE_CHECKING:  # the client imports this module: it stays light
    from authbus.domain.decisions.logins import Started

T = TypeVar("T")


class Scope(msgspec.Struct, frozen=True, kw_only=True):
    """§4.1; ``domain`` None: every domain of the owner's tenant."""

    domain: str | None = None
    entity_type: str
    operation: str
    entity_id: str  # "*": every entity of that type


class Credential(msgspec.Struct, frozen=True):
    id: str
    kind: str  # pat, api_key, recovery, invitation, access_token, tenant_token
    expires_at: str | None = None  # RFC 3339; None: never
    dpv: dict[str, list[str]] | msgspec.UnsetType = msgspec.UNSET  # a tenant token's ``dpv`` claim, when it has one


class Principal(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    kind: str  # user, service, external
    roles: list[str] = []
    subject: str | None = None  # a tenant token's ``sub`` (kind external); ``id`` is authbus's


class Verified(msgspec.Struct, frozen=True):
    """auth.v1.verify's answer (§6.1). ``reason`` is set when not valid; ``credential`` and
    ``principal`` when valid; ``scopes`` is None for an unscoped credential."""

    valid: bool
    position: int
    reason: str | None = None
    credential: Credential | None = None
    principal: Principal | None = None
    scopes: list[Scope] | None = None


class Decision(msgspec.Struct, frozen=True):
    """auth.v1.authorize's answer (§6.2). ``principal`` is set whenever the token verified,
    ``matched_scope`` only with ``reason == "scope"``."""

    allowed: bool
    # scope, role:<role>, no_matching_scope, other_tenant, not_a_bearer_credential, a verify
    # reason, or for min_role: role_too_low, unknown_role, unranked_role, scoped_credential
    reason: str
    position: int
    principal: Principal | None = None
    matched_scope: Scope | None = None


class Tokens(msgspec.Struct, frozen=True, kw_only=True):
    """A token pair from login, refresh or challenge.answer (§6.4, §6.5)."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int  # seconds, of the access token
    session_id: str
    user_id: str  # whose session it is (the access token's ``sub``)
    position: int

    @classmethod
    def of(cls, started: Started, position: int) -> Tokens:
        return cls(
            access_token=started.access_token,
            refresh_token=started.refresh_token,
            expires_in=started.expires_in,
            session_id=started.session_id,
            user_id=started.user_id,
            position=position,
        )


class CommandReply(msgspec.Struct, Generic[T], frozen=True):
    """A command's success reply (§7) with ``result`` decoded into a type of the caller's."""

    ok: bool
    result: T
    position: int


# ---------------------------------------------------------------- admin reads (§8)


class UserDetail(msgspec.Struct, frozen=True, kw_only=True):
    """§8 user: ``roles`` the built-in ones held, then the tenant-defined ones, by name."""

    id: str
    tenant_id: str
    kind: str  # user, service
    roles: list[str]
    username: str  # erased-<id> once deleted
    disabled: bool  # a deleted user is disabled too
    deleted: bool
    has_password: bool
    created_at: str
    display_name: str  # "": none
    email: str  # "": none
    metadata: dict[str, str]


# What CredentialDetail and AsOfCredential share: the detail's ``scopes`` comes after these and
# before the conditional fields, as the projection writes them (a subclass appends its fields).
class _CredentialFacts(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str  # pat, api_key, recovery, invitation
    expires_at: str | None  # None: never
    user_id: str
    tenant_id: str
    name: str
    status: str  # active, revoked, redeemed, expired
    created_at: str
    issued_by: str  # the principal id that created it, or ``system``
    updated_at: str  # of its last change (scopes, secret, revocation, redemption); else created_at
    last_used_at: str | None  # of its last recorded use, within a minute (PATUsed/KeyUsed); None: never


class CredentialDetail(_CredentialFacts, frozen=True, kw_only=True):
    """§8 credential: a PAT or key, never its secret."""

    scopes: list[Scope] | None  # None: unscoped, it acts with its owner's roles
    description: str | UnsetType = UNSET  # PATs only
    revoked_reason: str | UnsetType = UNSET  # once revoked
    revoked_at: str | UnsetType = UNSET  # once revoked


class TenantPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """§7.24: a lifetime or audience of null is the deployment's."""

    access_token_seconds: int | None
    session_seconds: int | None
    audience: str | None
    open_registration: bool
    keypair_signup: bool
    registrations_per_minute: int


class TenantDetail(msgspec.Struct, frozen=True, kw_only=True):
    """§8 tenant.  ``created_by`` / ``updated_by``: the principal id that acted, or ``system``."""

    id: str
    name: str
    disabled: bool
    tags: list[str]
    metadata: dict[str, str]
    created_at: str
    created_by: str
    updated_at: str  # of the tenant's own last change (rename, tags or metadata, policy, role order, disable, enable)
    updated_by: str
    policy: TenantPolicy
    role_order: list[str]  # its roles by name, lowest first, root last (§7.25)


class SigningKeyDetail(msgspec.Struct, frozen=True, kw_only=True):
    """§8 signing key: no key material (public halves are in ``jwks``)."""

    kid: str
    alg: str
    status: str  # active, retired, revoked
    tenant_id: str
    created_at: str


class SessionDetail(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    tenant_id: str
    method: str  # password, challenge
    status: str  # active, expired, revoked
    revoked_reason: str | None
    rotations: int  # refreshes so far
    created_at: str
    expires_at: str


class LoginAttempt(msgspec.Struct, frozen=True, kw_only=True):
    at: str
    outcome: str  # succeeded, failed
    method: str  # password, challenge
    source: str
    reason: str | UnsetType = UNSET  # failed only: bad_password, no_password, disabled


class RoleDetail(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    name: str
    description: str
    scopes: list[Scope]
    created_at: str


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A listing: ``next`` is the ``after`` of the next page, None on the last."""

    items: list[T]
    next: str | None
    position: int


class TenantReply(msgspec.Struct, frozen=True, kw_only=True):
    tenant: TenantDetail
    position: int


class UserReply(msgspec.Struct, frozen=True, kw_only=True):
    user: UserDetail
    position: int


class KeyReply(msgspec.Struct, frozen=True, kw_only=True):
    key: CredentialDetail
    position: int


class PatReply(msgspec.Struct, frozen=True, kw_only=True):
    pat: CredentialDetail
    position: int


class RoleReply(msgspec.Struct, frozen=True, kw_only=True):
    role: RoleDetail
    position: int


# ---------------------------------------------------------------- audit reads (§9.2)


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the feed publishes it (§9.1)."""

    position: int
    type: str
    aggregate: str
    aggregate_id: str
    version: int
    timestamp: datetime
    tenant_id: str  # "_": a name claim or command record
    actor: str | None
    correlation_id: str | None
    # The event's own fields, as many shapes as event types (§9's table), and events stored
    # long ago keep theirs: an open dict, so no reader breaks on an older or newer event.
    data: dict[str, Any]


class AuditLogPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[LogLine]
    next: int | None  # a position: the ``after`` of the next page; None when nothing further can show
    position: int  # where the log was read up to: the live model's, or ``until_position`` if lower


class AsOfPoint(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    time: str | None  # None: before the first event


class AsOfCredential(_CredentialFacts, frozen=True, kw_only=True):
    """A CredentialDetail without ``scopes``: as-of shows them beside it (AsOf.scopes)."""

    description: str | UnsetType = UNSET  # PATs only
    revoked_reason: str | UnsetType = UNSET  # once revoked
    revoked_at: str | UnsetType = UNSET  # once revoked


class HistoryEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    type: str
    aggregate: str
    aggregate_id: str
    actor: str | None
    timestamp: str  # with microseconds: exact enough to ask as-of it again


class AsOf(msgspec.Struct, frozen=True, kw_only=True):
    """audit_as_of's answer, replayed from the log up to ``at``.  ``credential`` and
    ``principal`` are None when ``reason`` is unknown or malformed; ``events`` what shaped
    the credential, its owner and its tenant."""

    at: AsOfPoint
    valid: bool
    reason: str | None
    credential: AsOfCredential | None
    principal: UserDetail | None
    scopes: list[Scope] | None  # None: it acted with its owner's roles (or is unknown)
    events: list[HistoryEvent]
    position: int


class ModelDigest(msgspec.Struct, frozen=True, kw_only=True):
    """rebuild_check's answer: a digest of this instance's read model at ``position``."""

    digest: str  # sha256:<base64url>
    position: int
