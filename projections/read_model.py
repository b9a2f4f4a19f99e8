"""The in-memory read model: everything verify, authorize and the admin reads need,
folded from the event log.  ``apply`` is idempotent by position, so replaying a stretch
of the log twice changes nothing.

Longer than most modules on purpose: the fold is one class, every event kind's effect on
every index side by side, so a new event kind is read and changed in one place (the
answers built from it are in projections/queries.py).
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID, SafeUUID

from authbus.domain.checkpoint import Checkpoint
from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.registry import CommandRecord, NameClaim
from authbus.domain.role import Role
from authbus.domain.role_order import DEFAULT_ORDER, DEFAULT_RANKS, Ranks, RoleKey, key_of, ranks
from authbus.domain.scopes import Scope, ScopeKey
from authbus.domain.session import Session
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import DEFAULT_POLICY, Tenant
from authbus.domain.throttle import LoginThrottle
from authbus.domain.times import rfc3339, rfc3339_epoch
from authbus.domain.user import User, erased_username

LOGIN_ACTIVITY_KEPT = 50


class TenantView:
    """``role_order`` are its live roles in their order, lowest first (built-in names and
    role ids), and ``ranks`` each one's rank, computed when the order or a role changes so
    that ``min_role`` costs a lookup per role held."""

    __slots__ = (
        "id",
        "name",
        "disabled",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
        "tags",
        "metadata",
        "policy",
        "role_order",
        "ranks",
    )

    def __init__(self, id: UUID, name: str, created_at: str, created_by: str) -> None:
        self.id, self.name, self.created_at, self.created_by = id, name, created_at, created_by
        self.updated_at, self.updated_by = created_at, created_by  # by the tenant's own events
        self.disabled = False
        self.tags: list[str] = []
        self.metadata: dict[str, str] = {}
        self.policy: dict[str, Any] = DEFAULT_POLICY  # replaced whole, never changed in place
        self.role_order: tuple[RoleKey, ...] = DEFAULT_ORDER
        self.ranks: Ranks = DEFAULT_RANKS

    def order_roles(self, order: Iterable[RoleKey]) -> None:
        self.role_order = tuple(order)
        self.ranks = ranks(self.role_order)


DELETED = "user deleted"  # the revocation reason of a deleted user's credentials and sessions
NO_PROFILE: dict[str, Any] = {"display_name": "", "email": "", "metadata": {}}  # shared: never changed in place


class PrincipalView:
    """``builtin`` are the built-in roles held, ``role_ids`` the tenant-defined ones (a
    deleted one stays listed and grants nothing); ``roles`` names both, as replies show them."""

    __slots__ = (
        "id",
        "tenant_id",
        "username",
        "kind",
        "builtin",
        "role_ids",
        "roles",
        "disabled",
        "has_password",
        "created_at",
        "view",
        "profile",
        "deleted",
    )

    def __init__(self, event: Any, created_at: str) -> None:
        self.id: UUID = event.originator_id
        self.tenant_id: UUID = event.tenant_id
        self.username: str = event.username
        self.kind: str = event.kind
        self.builtin: tuple[str, ...] = tuple(event.roles)
        self.role_ids: tuple[UUID, ...] = tuple(UUID(k) for k in (getattr(event, "custom_roles", None) or {}))
        self.roles: tuple[str, ...] = self.builtin
        self.profile: dict[str, Any] = NO_PROFILE  # display_name, email, metadata; replaced whole
        self.deleted = False
        self.disabled = False
        self.has_password = event.password_hash is not None
        self.created_at = created_at


class CredentialView:
    """A PAT or a key.  ``scopes`` None means the credential acts with its owner's authority.

    There may be millions (DESIGN §8: at most 1 KiB each), so ids are the owner's own
    objects, scopes are shared (ReadModel.scope), and the creation time is kept as a POSIX
    timestamp, formatted only when shown.
    """

    __slots__ = (
        "id",
        "kind",
        "owner_id",
        "tenant_id",
        "digest",
        "expires_ts",
        "expires_at",
        "status",
        "scopes",
        "name",
        "description",
        "created",
        "revoked_reason",
        "issued_by",  # the principal id that created it, or ``system``
        "changed",  # POSIX time of its last change after creation (scopes, secret, status); None: none
        "revoked_ts",  # POSIX time it was revoked; None: not revoked
        "used_ts",  # POSIX time of its last recorded use (PATUsed/KeyUsed); None: none recorded
    )

    def __init__(self, event: Any, kind: str, owner: PrincipalView | None, scopes: dict[ScopeKey, Scope] | None) -> None:
        self.id: UUID = event.originator_id
        self.kind = kind
        self.owner_id: UUID = owner.id if owner is not None else event.user_id
        self.tenant_id: UUID = owner.tenant_id if owner is not None else event.tenant_id
        self.name: str = event.name
        self.description: str = getattr(event, "description", "")
        self.status = "active"
        self.revoked_reason: str | None = None
        self.created: float = event.timestamp.timestamp()
        self.scopes = scopes
        self.issued_by: str = event.actor
        self.changed: float | None = None
        self.revoked_ts: float | None = None
        self.used_ts: float | None = None
        self.set_secret(event.secret_hash, event.expires_at)

    @property
    def created_at(self) -> str:
        return rfc3339_epoch(self.created) or ""

    def set_secret(self, secret_hash: str, expires_at: datetime | None) -> None:
        self.digest = bytes.fromhex(secret_hash)
        self.expires_ts = expires_at.timestamp() if expires_at is not None else None
        self.expires_at = rfc3339(expires_at)


# Kept as they are in the columns: strings, bytes, numbers, shared ids and scope dicts, which
# the loaded credentials go on using.  Ids go apart, as their 128-bit integers (which become
# the UUIDs' own), and creation times packed into one bytes object.
_PACKED = ("id", "created")  # each a column of its own
_SHARED_COLUMNS = tuple(name for name in CredentialView.__slots__ if name not in _PACKED)


def credential_columns(credentials: Iterable[CredentialView]) -> dict[str, Any]:
    listed = list(credentials)
    columns: dict[str, Any] = {name: [getattr(c, name) for c in listed] for name in _SHARED_COLUMNS}
    columns["ids"] = [c.id.int for c in listed]
    columns["created"] = array("d", (c.created for c in listed)).tobytes()
    return columns


_new = object.__new__
_set = object.__setattr__  # UUID forbids assignment; this is how its own __setstate__ does it


def _credential(
    kind: str,
    owner_id: UUID,
    tenant_id: UUID,
    digest: bytes,
    expires_ts: float | None,
    expires_at: str | None,
    status: str,
    scopes: Any,
    name: str,
    description: str,
    revoked_reason: str | None,
    issued_by: str,
    changed: float | None,
    revoked_ts: float | None,
    used_ts: float | None,
    id_int: int,
    created: float,
) -> CredentialView:
    """A credential from one row of the columns: a million of them are made at a start, so
    without CredentialView.__init__, UUID.__init__ or setattr by name (twice as fast)."""
    credential_id = _new(UUID)
    _set(credential_id, "int", id_int)
    _set(credential_id, "is_safe", SafeUUID.unknown)
    c = _new(CredentialView)
    c.id, c.kind, c.owner_id, c.tenant_id, c.digest = credential_id, kind, owner_id, tenant_id, digest
    c.expires_ts, c.expires_at, c.status, c.scopes, c.name = expires_ts, expires_at, status, scopes, name
    c.description, c.revoked_reason = description, revoked_reason
    c.issued_by, c.changed, c.revoked_ts, c.used_ts = issued_by, changed, revoked_ts, used_ts
    c.created = created
    return c


def credentials_from(columns: dict[str, Any]) -> tuple[dict[UUID, CredentialView], dict[UUID, dict[UUID, None]]]:
    """The credentials and their owners' lists, in the order they were created."""
    credentials: dict[UUID, CredentialView] = {}
    by_owner: dict[UUID, dict[UUID, None]] = {}
    created = array("d")
    created.frombytes(columns["created"])
    rows = [columns[name] for name in _SHARED_COLUMNS] + [columns["ids"], created]
    owner, owned = None, {}
    for row in zip(*rows, strict=True):  # columns of different lengths: ValueError
        credential = _credential(*row)
        credentials[credential.id] = credential
        if credential.owner_id is not owner:  # an owner's credentials mostly come in a run: hash it once a run
            owner = credential.owner_id
            owned = by_owner.setdefault(owner, {})
        owned[credential.id] = None
    return credentials, by_owner


class SigningKeyView:
    __slots__ = ("kid", "tenant_id", "alg", "status", "public_jwk", "sealed_private", "created_at")

    def __init__(self, event: Any, created_at: str) -> None:
        self.kid = str(event.originator_id)
        self.tenant_id: UUID = event.tenant_id
        self.alg: str = event.alg
        self.status = "active"
        self.public_jwk: dict[str, str] | None = event.public_jwk
        self.sealed_private: str = event.sealed_private
        self.created_at = created_at


class RoleView:
    """A tenant-defined role: its scopes indexed by exact key, as a credential's are."""

    __slots__ = ("id", "tenant_id", "name", "description", "scopes", "deleted", "created_at")

    def __init__(self, event: Any, scopes: dict[ScopeKey, Scope], created_at: str) -> None:
        self.id: UUID = event.originator_id
        self.tenant_id: UUID = event.tenant_id
        self.name: str = event.name
        self.description: str = event.description
        self.scopes = scopes
        self.deleted = False
        self.created_at = created_at


class SessionView:
    __slots__ = (
        "id",
        "user_id",
        "tenant_id",
        "method",
        "revoked",
        "revoked_reason",
        "created_at",
        "expires_at",
        "expires_ts",
        "rotations",
    )

    def __init__(self, event: Any, created_at: str) -> None:
        self.id: UUID = event.originator_id
        self.user_id: UUID = event.user_id
        self.tenant_id: UUID = event.tenant_id
        self.method: str = event.method
        self.revoked = False
        self.revoked_reason: str | None = None
        self.created_at = created_at
        self.expires_at = rfc3339(event.expires_at)
        self.expires_ts: float = event.expires_at.timestamp()
        self.rotations = 0


class ReadModel:
    def __init__(self) -> None:
        self.position = 0
        self.tenants: dict[UUID, TenantView] = {}
        self.principals: dict[UUID, PrincipalView] = {}
        self.credentials: dict[UUID, CredentialView] = {}
        # Insertion-ordered member lists, for paging admin reads.
        self.users_by_tenant: dict[UUID, dict[UUID, None]] = {}
        self.credentials_by_owner: dict[UUID, dict[UUID, None]] = {}
        self.users_by_name: dict[tuple[UUID, str], UUID] = {}
        self.signing_keys: dict[str, SigningKeyView] = {}
        self.signing_keys_by_tenant: dict[UUID, dict[str, None]] = {}
        self.sessions: dict[UUID, SessionView] = {}
        self.sessions_by_user: dict[UUID, dict[UUID, None]] = {}
        self.public_keys: dict[tuple[UUID, str], UUID] = {}
        self.roles: dict[UUID, RoleView] = {}
        self.roles_by_tenant: dict[UUID, dict[UUID, None]] = {}
        self.role_names: dict[tuple[UUID, str], UUID] = {}  # live roles, by tenant and casefolded name
        self.role_holders: dict[UUID, dict[UUID, None]] = {}
        self.login_activity: dict[UUID, deque[dict[str, Any]]] = {}
        self._scopes: dict[tuple[Any, ...], Scope] = {}  # every distinct scope once, shared
        self._actors: dict[str, str] = {}  # every issuer once, shared by its credentials
        self._appliers = self._build_appliers()

    # Pickled as a persisted snapshot (infra/snapshot.py): the appliers are bound methods
    # and lambdas, so they are left out and made again on load.
    # Credentials go as columns (credential_columns): unpickled as objects, each would leave
    # a state dict and argument tuples in the unpickler's memo until the whole load ends, and
    # those holes, spread through every arena, kept a restarted instance some 40 % larger
    # than one that followed the log live.
    def __getstate__(self) -> dict[str, Any]:
        left_out = ("_appliers", "credentials", "credentials_by_owner")
        state = {name: value for name, value in self.__dict__.items() if name not in left_out}
        state["credential_columns"] = credential_columns(self.credentials.values())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        columns = state.pop("credential_columns")
        self.__dict__.update(state)
        self.credentials, self.credentials_by_owner = credentials_from(columns)
        self._appliers = self._build_appliers()

    def _build_appliers(self) -> dict[type, Callable[[Any], object]]:
        return {
            Tenant.TenantCreated: self._tenant_created,
            Tenant.TenantRenamed: lambda e: self._tenant_changed(e, name=e.name),
            Tenant.TenantUpdated: lambda e: self._tenant_changed(e, tags=e.tags, metadata=e.metadata),
            Tenant.TenantDisabled: lambda e: self._tenant_changed(e, disabled=True),
            Tenant.TenantEnabled: lambda e: self._tenant_changed(e, disabled=False),
            Tenant.TenantPolicySet: lambda e: self._tenant_changed(e, policy=e.policy),
            Tenant.RoleOrderSet: self._role_order_set,
            User.UserRegistered: self._user_registered,
            User.UserRenamed: self._user_renamed,
            User.UserDeleted: self._user_deleted,
            User.UserUpdated: lambda e: setattr(
                self.principals[e.originator_id],
                "profile",
                {"display_name": e.display_name, "email": e.email, "metadata": e.metadata},
            ),
            User.PasswordChanged: lambda e: setattr(self.principals[e.originator_id], "has_password", True),
            User.UserDisabled: lambda e: setattr(self.principals[e.originator_id], "disabled", True),
            User.UserEnabled: lambda e: setattr(self.principals[e.originator_id], "disabled", False),
            User.RoleGranted: self._role_granted,
            User.RoleRevoked: self._role_revoked,
            Role.RoleCreated: self._role_created,
            Role.RoleScopesAdded: self._role_scopes_added,
            Role.RoleScopesRemoved: self._role_scopes_removed,
            Role.RoleDeleted: self._role_deleted,
            User.PublicKeyRegistered: lambda e: self.public_keys.__setitem__(
                (self.principals[e.originator_id].tenant_id, e.public_key), e.originator_id
            ),
            User.PublicKeyRemoved: lambda e: self.public_keys.pop(
                (self.principals[e.originator_id].tenant_id, e.public_key), None
            ),
            User.LoginSucceeded: lambda e: self._login(e, "succeeded"),
            User.LoginFailed: lambda e: self._login(e, "failed"),
            SigningKey.SigningKeyCreated: self._signing_key_created,
            SigningKey.SigningKeyRetired: lambda e: setattr(self.signing_keys[str(e.originator_id)], "status", "retired"),
            SigningKey.SigningKeyRevoked: lambda e: setattr(self.signing_keys[str(e.originator_id)], "status", "revoked"),
            Session.SessionStarted: self._session_started,
            Session.RefreshRotated: self._session_rotated,
            Session.SessionRevoked: self._session_revoked,
            PersonalAccessToken.PATCreated: lambda e: self._credential_created(e, "pat"),
            PersonalAccessToken.ScopeAdded: self._scope_added,
            PersonalAccessToken.ScopeRemoved: self._scope_removed,
            PersonalAccessToken.PATSecretReset: self._secret_reset,
            PersonalAccessToken.PATUpdated: self._pat_updated,
            PersonalAccessToken.PATRevoked: self._revoked,
            PersonalAccessToken.PATUsed: self._used,
            Key.KeyIssued: lambda e: self._credential_created(e, e.kind),
            Key.KeyRevoked: self._revoked,
            Key.KeyRedeemed: self._redeemed,
            Key.KeyUsed: self._used,
            NameClaim.NameClaimed: lambda e: None,
            NameClaim.NameReleased: lambda e: None,
            NameClaim.NameReclaimed: lambda e: None,
            CommandRecord.CommandRecorded: lambda e: None,
            LoginThrottle.FirstLoginFailed: lambda e: None,  # the limit is the store's to count
            LoginThrottle.LoginFailed: lambda e: None,
            Checkpoint.CheckpointSealed: lambda e: None,  # tamper evidence only: audit verify reads the store
        }

    def apply(self, position: int, event: Any) -> None:
        if position <= self.position:
            return
        applier = self._appliers.get(type(event))
        if applier is not None:
            applier(event)
        self.position = position

    def apply_all(self, positioned_events: Iterable[tuple[int, Any]]) -> None:
        for position, event in positioned_events:
            self.apply(position, event)

    def _tenant_created(self, e: Any) -> None:
        self.tenants[e.originator_id] = TenantView(e.originator_id, e.name, rfc3339(e.timestamp) or "", e.actor)
        self.users_by_tenant.setdefault(e.originator_id, {})

    def _tenant_changed(self, e: Any, **changed: Any) -> None:
        tenant = self.tenants[e.originator_id]
        for name, value in changed.items():
            setattr(tenant, name, value)
        tenant.updated_at, tenant.updated_by = rfc3339(e.timestamp) or "", e.actor

    def _role_order_set(self, e: Any) -> None:
        tenant = self.tenants[e.originator_id]
        keys = map(key_of, e.order)
        tenant.order_roles(k for k in keys if isinstance(k, str) or self._live_role(k))
        self._tenant_changed(e)

    def _live_role(self, role_id: UUID) -> bool:
        role = self.roles.get(role_id)
        return role is not None and not role.deleted

    def _user_registered(self, e: Any) -> None:
        principal = self.principals[e.originator_id] = PrincipalView(e, rfc3339(e.timestamp) or "")
        for role_id in principal.role_ids:
            self.role_holders.setdefault(role_id, {})[principal.id] = None
        self._user_roles_changed(principal)
        self.users_by_tenant.setdefault(e.tenant_id, {})[e.originator_id] = None
        self.users_by_name[(e.tenant_id, e.username.casefold())] = e.originator_id

    def _user_renamed(self, e: Any) -> None:
        principal = self.principals[e.originator_id]
        self.users_by_name.pop((principal.tenant_id, principal.username.casefold()), None)
        principal.username = e.username
        self.users_by_name[(principal.tenant_id, e.username.casefold())] = principal.id

    def _user_deleted(self, e: Any) -> None:
        """Its name and keys are free, its profile gone, and nothing it held acts again: its
        credentials and sessions read as revoked, reason ``user deleted``."""
        principal = self.principals[e.originator_id]
        self.users_by_name.pop((principal.tenant_id, principal.username.casefold()), None)
        principal.username, principal.profile = erased_username(principal.id), NO_PROFILE
        principal.disabled = principal.deleted = True
        for held in [k for k, owner in self.public_keys.items() if owner == principal.id]:
            del self.public_keys[held]
        at = e.timestamp.timestamp()
        for credential_id in self.credentials_by_owner.get(principal.id, {}):
            credential = self.credentials[credential_id]
            if credential.status == "active":
                credential.status, credential.revoked_reason = "revoked", DELETED
                credential.revoked_ts = credential.changed = at
        for session_id in self.sessions_by_user.get(principal.id, {}):
            session = self.sessions[session_id]
            if not session.revoked:
                session.revoked, session.revoked_reason = True, DELETED

    def _login(self, e: Any, outcome: str) -> None:
        entry = {"at": rfc3339(e.timestamp), "outcome": outcome, "method": e.method, "source": e.source}
        if outcome == "failed":
            entry["reason"] = e.reason
        self.login_activity.setdefault(e.originator_id, deque(maxlen=LOGIN_ACTIVITY_KEPT)).append(entry)

    def _signing_key_created(self, e: Any) -> None:
        key = SigningKeyView(e, rfc3339(e.timestamp) or "")
        self.signing_keys[key.kid] = key
        self.signing_keys_by_tenant.setdefault(key.tenant_id, {})[key.kid] = None

    def _session_started(self, e: Any) -> None:
        self.sessions[e.originator_id] = SessionView(e, rfc3339(e.timestamp) or "")
        self.sessions_by_user.setdefault(e.user_id, {})[e.originator_id] = None

    def _session_rotated(self, e: Any) -> None:
        self.sessions[e.originator_id].rotations += 1

    def _session_revoked(self, e: Any) -> None:
        session = self.sessions[e.originator_id]
        session.revoked = True
        session.revoked_reason = e.reason

    def _user_roles_changed(self, principal: PrincipalView) -> None:
        live = (self.roles.get(rid) for rid in principal.role_ids)
        principal.roles = (*principal.builtin, *(role.name for role in live if role is not None and not role.deleted))

    def _role_granted(self, e: Any) -> None:
        principal = self.principals[e.originator_id]
        role_id = getattr(e, "role_id", None)
        if role_id is None:
            principal.builtin = (*principal.builtin, e.role)
        else:
            principal.role_ids = (*principal.role_ids, role_id)
            self.role_holders.setdefault(role_id, {})[principal.id] = None
        self._user_roles_changed(principal)

    def _role_revoked(self, e: Any) -> None:
        principal = self.principals[e.originator_id]
        role_id = getattr(e, "role_id", None)
        if role_id is None:
            principal.builtin = tuple(r for r in principal.builtin if r != e.role)
        else:
            principal.role_ids = tuple(r for r in principal.role_ids if r != role_id)
            self.role_holders.get(role_id, {}).pop(principal.id, None)
        self._user_roles_changed(principal)

    def _role_created(self, e: Any) -> None:
        role = RoleView(e, {s.key: s for s in map(self.scope, e.scopes)}, rfc3339(e.timestamp) or "")
        self.roles[role.id] = role
        self.roles_by_tenant.setdefault(role.tenant_id, {})[role.id] = None
        self.role_names[(role.tenant_id, role.name.casefold())] = role.id

    def _role_scopes_added(self, e: Any) -> None:
        scopes = self.roles[e.originator_id].scopes
        for scope in map(self.scope, e.scopes):
            scopes[scope.key] = scope

    def _role_scopes_removed(self, e: Any) -> None:
        scopes = self.roles[e.originator_id].scopes
        for scope in map(self.scope, e.scopes):
            scopes.pop(scope.key, None)

    def _role_deleted(self, e: Any) -> None:
        role = self.roles[e.originator_id]
        role.deleted = True
        self.role_names.pop((role.tenant_id, role.name.casefold()), None)
        tenant = self.tenants[role.tenant_id]
        if role.id in tenant.ranks:  # it drops out of the order
            tenant.order_roles(k for k in tenant.role_order if k != role.id)
        for holder in self.role_holders.get(role.id, {}):
            self._user_roles_changed(self.principals[holder])

    def _credential_created(self, e: Any, kind: str) -> None:
        scopes = None if e.scopes is None else {s.key: s for s in map(self.scope, e.scopes)}
        credential = CredentialView(e, kind, self.principals.get(e.user_id), scopes)
        credential.issued_by = self._actors.setdefault(e.actor, e.actor)  # a few issuers, a million credentials
        self.credentials[e.originator_id] = credential
        self.credentials_by_owner.setdefault(e.user_id, {})[e.originator_id] = None

    def scope(self, data: dict[str, Any]) -> Scope:
        """The one Scope object for a stored scope: a million PATs with the same scope share it."""
        seen = (data.get("domain"), data.get("entity_type"), data.get("operation"), data.get("entity_id"))
        scope = self._scopes.get(seen)
        if scope is None:
            scope = self._scopes[seen] = Scope.from_dict(data)
        return scope

    def _changed(self, e: Any) -> CredentialView:
        credential = self.credentials[e.originator_id]
        credential.changed = e.timestamp.timestamp()
        return credential

    def _scope_added(self, e: Any) -> None:
        scope = self.scope(e.scope)
        scopes = self._changed(e).scopes
        if scopes is not None:
            scopes[scope.key] = scope

    def _scope_removed(self, e: Any) -> None:
        scopes = self._changed(e).scopes
        if scopes is not None:
            scopes.pop(self.scope(e.scope).key, None)

    def _pat_updated(self, e: Any) -> None:
        credential = self._changed(e)
        credential.name, credential.description = e.name, e.description

    def _secret_reset(self, e: Any) -> None:
        self._changed(e).set_secret(e.secret_hash, e.expires_at)

    def _revoked(self, e: Any) -> None:
        credential = self._changed(e)
        credential.status = "revoked"
        credential.revoked_reason = e.reason
        credential.revoked_ts = credential.changed

    def _redeemed(self, e: Any) -> None:
        self._changed(e).status = "redeemed"

    def _used(self, e: Any) -> None:
        self.credentials[e.originator_id].used_ts = e.at.timestamp()
