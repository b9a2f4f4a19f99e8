"""Commands: each is a typed request (decoded straight from the wire) that knows how to
decide which events it causes.  ``run`` reads and changes aggregates only through a
``UnitOfWork``; the caller saves everything the unit collected in one transaction, so a
command that raises appends nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypedDict, TypeVar
from uuid import UUID, uuid4

import msgspec
from eventsourcing.domain import Aggregate

from authbus.domain import policy
from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated, not_found
from authbus.domain.permissions import HeldRole, Permissions
from authbus.domain.policy import Actor
from authbus.domain.registry import NameClaim
from authbus.domain.role import BUILTIN_ROLES, Role, is_builtin, role_name_claim_id
from authbus.domain.scopes import Scope
from authbus.domain.session import Session
from authbus.domain.signing import SigningKey
from authbus.domain.tenant import SYSTEM_TENANT_ID, Tenant, tenant_name_claim_id
from authbus.domain.times import rfc3339
from authbus.domain.tokens import hash_for_storage
from authbus.domain.user import User, public_key_claim_id, username_claim_id

A = TypeVar("A", bound=Aggregate)

CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?\Z")]
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*\Z")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]
Seconds = Annotated[int, msgspec.Meta(gt=0, le=10 * 366 * 86400)]
# A built-in role (root, admin, auditor, user) or one the tenant defined (create_role).
RoleName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*\Z")]
KeyKind = Literal["api_key", "recovery", "invitation"]
Scopes = Annotated[list[Scope], msgspec.Meta(max_length=5000)]
SomeScopes = Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=5000)]
# base64url of 32 bytes, canonical (the last character's two spare bits are zero): a key has
# one spelling, so the claim keyed by its text gives it one owner per tenant.
PublicKey = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")]

MAX_SCOPES = 5000
# (default, maximum) lifetime in seconds; None: never expires unless asked to.
LIFETIMES: dict[str, tuple[int | None, int]] = {
    "pat": (90 * 86400, 366 * 86400),
    "api_key": (None, 10 * 366 * 86400),
    "recovery": (3600, 86400),
    "invitation": (7 * 86400, 30 * 86400),
}


class Meta(TypedDict):
    actor: str
    correlation_id: str


class UnitOfWork(Protocol):
    now: datetime
    meta: Meta  # carried by every event

    def get(self, cls: type[A], aggregate_id: UUID, field: str) -> A:
        """The aggregate, or raises ``not_found(field)``."""

    def exists(self, aggregate_id: UUID) -> bool: ...
    def add(self, *aggregates: Aggregate) -> None: ...
    def mint(self, kind: str, credential_id: UUID) -> str: ...
    def hash_password(self, password: str) -> str: ...
    def password_matches(self, password: str, password_hash: str) -> bool: ...
    def new_signing_key(self, alg: str, kid: str) -> tuple[dict[str, str] | None, str, str | None]:
        """(public JWK, sealed private key, HS256 secret shown once or None)."""

    def sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        """A JWT over ``claims`` from the tenant's newest active asymmetric key, else the system's."""


def expiry(kind: str, expires_in: int | None, now: datetime) -> datetime | None:
    """``expires_in`` seconds after ``now`` rounded up to a whole second: the instant every
    reader agrees on (the wire's RFC 3339, the bus's JWT ``exp``), never shorter than asked."""
    default, maximum = LIFETIMES[kind]
    seconds = default if expires_in is None else expires_in
    if seconds is None:
        return None
    if seconds > maximum:
        raise InvalidRequest(f"expires_in is at most {maximum} seconds for {kind}", field="expires_in")
    whole = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond else 0)
    return whole + timedelta(seconds=seconds)


class Command(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    command: ClassVar[str]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    credential_field: ClassVar[str] = "Authorization"  # where the acting credential came from
    command_id: CommandId | None = None

    def digest(self) -> str:
        """What identifies the request for a repeated command_id; passwords are left out."""
        blanked = msgspec.structs.replace(self, command_id=None, **{f: "" for f in self.secret_fields})
        return hashlib.sha256(msgspec.json.encode(blanked)).hexdigest()


def current_actor(actor: Actor, uow: UnitOfWork, field: str = "Authorization") -> Actor:
    """The actor as the store has it now.

    The read model that authenticated the bearer may lag the store by a few milliseconds;
    a command must not act on a credential revoked, a user disabled or a role or scope
    removed in that window, so the deciding read sees them here.
    """
    refused = Unauthenticated("the credential is not valid", field=field)
    try:
        if actor.credential_kind == "access_token":  # its session stands for it
            session = uow.get(Session, actor.credential_id, field)
            if session.revoked:
                raise refused
            owner_id, scoped = session.user_id, None
        else:
            cls = PersonalAccessToken if actor.credential_kind == "pat" else Key
            credential = uow.get(cls, actor.credential_id, field)
            credential.require_active(uow.now)
            owner_id, scoped = credential.user_id, credential.scopes
        user = uow.get(User, owner_id, field)
        tenant = uow.get(Tenant, user.tenant_id, field)
    except (NotFound, Conflict):
        raise refused from None
    if user.disabled or tenant.disabled:
        raise refused
    scopes = None if scoped is None else {s.key: s for s in map(Scope.from_dict, scoped)}
    return dataclasses.replace(actor, roles=frozenset(user.roles), scopes=scopes)


def _user(uow: UnitOfWork, actor: Actor, user_id: UUID) -> User:
    """The user, or not_found when it is in a tenant the actor cannot see."""
    user = uow.get(User, user_id, "user_id")
    if not actor.sees(user.tenant_id):
        raise not_found("user_id")  # the same answer as for an id that does not exist
    return user


def _credential(uow: UnitOfWork, actor: Actor, cls: type[A], cred_id: UUID, field: str) -> A:
    cred = uow.get(cls, cred_id, field)
    if not actor.sees(cred.tenant_id):  # type: ignore[attr-defined]
        raise not_found(field)
    return cred


def _require_owner_or_admin(actor: Actor, uow: UnitOfWork, owner_id: UUID) -> None:
    owner = uow.get(User, owner_id, "user_id")
    policy.require_self_or_admin(actor, owner.id, owner.tenant_id, owner.roles)


def claim_name(uow: UnitOfWork, claim_id: UUID, namespace: str, name: str, owner_id: UUID, field: str) -> None:
    if not uow.exists(claim_id):
        uow.add(NameClaim(namespace=namespace, name=name, owner_id=owner_id, id=claim_id, **uow.meta))
        return
    claim = uow.get(NameClaim, claim_id, field)
    if claim.owner_id is not None:
        raise Conflict(f"{field} is already taken", field=field)
    claim.reclaim(owner_id=owner_id, **uow.meta)
    uow.add(claim)


def _active_tenant(uow: UnitOfWork, tenant_id: UUID) -> Tenant:
    tenant = uow.get(Tenant, tenant_id, "tenant_id")
    if tenant.disabled:
        raise Conflict("tenant is disabled", field="tenant_id")
    return tenant


def _resolve_role(uow: UnitOfWork, tenant_id: UUID, name: str, field: str) -> tuple[str, UUID | None]:
    """A built-in role by its name (any case), or the tenant's live role of that name."""
    if is_builtin(name):
        return name.casefold(), None
    claim_id = role_name_claim_id(tenant_id, name)
    if uow.exists(claim_id):
        claim = uow.get(NameClaim, claim_id, field)
        if claim.owner_id is not None:
            role = uow.get(Role, claim.owner_id, field)
            if not role.deleted and role.tenant_id == tenant_id:
                return role.name, role.id
    raise not_found(field)


def _permissions(uow: UnitOfWork, user: User) -> Permissions:
    """What ``user`` holds, as the store has it now: the bound on its credentials' scopes."""
    roles = []
    for role_id in user.custom_roles:
        try:
            role = uow.get(Role, role_id, "user_id")
        except NotFound:  # pragma: no cover - a granted role always exists
            continue
        if not role.deleted:
            roles.append(HeldRole(role.name, {key: Scope.from_dict(scope) for key, scope in role.scopes.items()}))
    return Permissions(frozenset(user.roles), tuple(roles))


def _require_held(held: Permissions, scopes: list[Scope], field: str, indexed: bool = True) -> None:
    for index, scope in enumerate(scopes):
        if not held.holds(scope):
            raise Forbidden(
                "a credential never carries more than its owner: the owner does not hold this scope",
                field=f"{field}[{index}]" if indexed else field,
            )


class CreateTenant(Command):
    command = "create_tenant"
    name: Label

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        policy.require_root(actor)
        policy.require_scope(actor, "tenant", "create", "*")
        tenant = Tenant(name=self.name, **uow.meta)
        claim_name(uow, tenant_name_claim_id(self.name), "tenant", self.name, tenant.id, "name")
        uow.add(tenant)
        return {"tenant_id": str(tenant.id)}


class _TenantSwitch(Command):
    tenant_id: UUID

    def _tenant(self, actor: Actor, uow: UnitOfWork) -> Tenant:
        policy.require_root(actor)
        policy.require_scope(actor, "tenant", "update", self.tenant_id)
        if self.tenant_id == SYSTEM_TENANT_ID:
            raise Forbidden("the system tenant is always enabled", field="tenant_id")
        return uow.get(Tenant, self.tenant_id, "tenant_id")


class DisableTenant(_TenantSwitch):
    command = "disable_tenant"
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        tenant = self._tenant(actor, uow)
        tenant.disable(reason=self.reason, **uow.meta)
        uow.add(tenant)
        return {}


class EnableTenant(_TenantSwitch):
    command = "enable_tenant"

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        tenant = self._tenant(actor, uow)
        tenant.enable(**uow.meta)
        uow.add(tenant)
        return {}


class RegisterUser(Command):
    command = "register_user"
    secret_fields = ("password",)
    tenant_id: UUID
    username: Username
    password: Password | None = None
    kind: Literal["user", "service"] = "user"
    roles: Annotated[list[RoleName], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=lambda: ["user"])

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        if not actor.sees(self.tenant_id):
            raise Forbidden("you cannot register users in another tenant", field="tenant_id")
        policy.require_admin(actor, self.tenant_id)
        policy.require_scope(actor, "user", "create", "*")
        _active_tenant(uow, self.tenant_id)
        resolved = [_resolve_role(uow, self.tenant_id, name, f"roles[{i}]") for i, name in enumerate(self.roles)]
        roles = sorted({name for name, role_id in resolved if role_id is None}, key=BUILTIN_ROLES.index)
        if "root" in roles and not (actor.is_root and self.tenant_id == SYSTEM_TENANT_ID):
            raise Forbidden("only root grants root, and only in the system tenant", field="roles")
        password_hash = uow.hash_password(self.password) if self.password is not None else None
        user = User(
            tenant_id=self.tenant_id,
            username=self.username,
            kind=self.kind,
            roles=roles,
            password_hash=password_hash,
            custom_roles={str(role_id): name for name, role_id in resolved if role_id is not None} or None,
            **uow.meta,
        )
        claim_name(uow, username_claim_id(self.tenant_id, self.username), "username", self.username, user.id, "username")
        uow.add(user)
        return {"user_id": str(user.id)}


class ChangePassword(Command):
    command = "change_password"
    secret_fields = ("password", "old_password")
    user_id: UUID
    password: Password
    old_password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = _user(uow, actor, self.user_id)
        policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
        policy.require_may_mint(actor, user.id)  # a password logs in: it is a credential too
        policy.require_scope(actor, "user", "update", user.id)
        own_password = actor.principal_id == user.id and not actor.administers(user.tenant_id)
        if (
            own_password
            and user.password_hash is not None
            and (self.old_password is None or not uow.password_matches(self.old_password, user.password_hash))
        ):
            raise Forbidden("old_password does not match", field="old_password")
        user.change_password(password_hash=uow.hash_password(self.password), **uow.meta)
        uow.add(user)
        return {}


class _UserChange(Command):
    user_id: UUID

    def _target(self, actor: Actor, uow: UnitOfWork) -> User:
        user = _user(uow, actor, self.user_id)
        policy.require_admin(actor, user.tenant_id)
        policy.require_scope(actor, "user", "update", user.id)
        if user.id == actor.principal_id:
            raise Forbidden("you cannot change your own status or roles", field="user_id")
        policy.require_outranks(actor, user.roles)
        return user


class DisableUser(_UserChange):
    command = "disable_user"
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = self._target(actor, uow)
        user.disable(reason=self.reason, **uow.meta)
        uow.add(user)
        return {}


class EnableUser(_UserChange):
    command = "enable_user"

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = self._target(actor, uow)
        user.enable(**uow.meta)
        uow.add(user)
        return {}


class GrantRole(_UserChange):
    command = "grant_role"
    role: RoleName

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = self._target(actor, uow)
        name, role_id = _resolve_role(uow, user.tenant_id, self.role, "role")
        if name == "root" and not (actor.is_root and user.tenant_id == SYSTEM_TENANT_ID):
            raise Forbidden("only root grants root, and only in the system tenant", field="role")
        user.grant_role(role=name, role_id=role_id, **uow.meta)
        uow.add(user)
        return {}


class RevokeRole(_UserChange):
    command = "revoke_role"
    role: RoleName
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = self._target(actor, uow)
        # A deleted role's grant is inert but may still be cleared by its name, also once a
        # new role has taken that name (and the user does not hold the new one).
        stale = [rid for rid, held in user.custom_roles.items() if held.casefold() == self.role.casefold()]
        try:
            name, role_id = _resolve_role(uow, user.tenant_id, self.role, "role")
        except NotFound:
            if not stale:
                raise
            name, role_id = user.custom_roles[stale[0]], stale[0]
        if role_id is not None and role_id not in user.custom_roles and stale:
            name, role_id = user.custom_roles[stale[0]], stale[0]
        user.revoke_role(role=name, role_id=role_id, reason=self.reason, **uow.meta)
        uow.add(user)
        return {}


class CreateRole(Command):
    command = "create_role"
    name: RoleName
    tenant_id: UUID | None = None  # default: the caller's
    description: Text = ""
    scopes: Scopes = msgspec.field(default_factory=list)

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        tenant_id = self.tenant_id or actor.tenant_id
        if not actor.sees(tenant_id):
            raise Forbidden("you cannot create roles in another tenant", field="tenant_id")
        policy.require_admin(actor, tenant_id)
        policy.require_scope(actor, "role", "create", "*")
        _active_tenant(uow, tenant_id)
        if is_builtin(self.name):
            raise Conflict(f"{self.name.casefold()} is a built-in role", field="name")
        role = Role(
            id=uuid4(),
            tenant_id=tenant_id,
            name=self.name,
            description=self.description,
            scopes=_unique_scopes(self.scopes),
            **uow.meta,
        )
        claim_name(uow, role_name_claim_id(tenant_id, self.name), "role", self.name, role.id, "name")
        uow.add(role)
        return {"role_id": str(role.id), "tenant_id": str(tenant_id)}


class _RoleChange(Command):
    role_id: UUID

    def _role(self, actor: Actor, uow: UnitOfWork, operation: str) -> Role:
        role = _credential(uow, actor, Role, self.role_id, "role_id")
        policy.require_admin(actor, role.tenant_id)
        policy.require_scope(actor, "role", operation, role.id)
        return role


class AddRoleScopes(_RoleChange):
    command = "add_role_scopes"
    scopes: SomeScopes

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        role = self._role(actor, uow, "update")
        role.add_scopes(scopes=[s.to_dict() for s in self.scopes], **uow.meta)
        uow.add(role)
        return {}


class RemoveRoleScopes(_RoleChange):
    command = "remove_role_scopes"
    scopes: SomeScopes

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        role = self._role(actor, uow, "update")
        role.remove_scopes(scopes=[s.to_dict() for s in self.scopes], **uow.meta)
        uow.add(role)
        return {}


class DeleteRole(_RoleChange):
    command = "delete_role"
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        role = self._role(actor, uow, "delete")
        role.delete(reason=self.reason, **uow.meta)
        claim = uow.get(NameClaim, role_name_claim_id(role.tenant_id, role.name), "role_id")
        claim.release(**uow.meta)  # the name is free for a new role, which no old grant reaches
        uow.add(role, claim)
        return {}


def _owner_for_new_credential(actor: Actor, uow: UnitOfWork, user_id: UUID, entity_type: str) -> User:
    user = _user(uow, actor, user_id)
    policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
    policy.require_may_mint(actor, user.id)
    policy.require_scope(actor, entity_type, "create", "*")
    if user.disabled:
        raise Conflict("user is disabled", field="user_id")
    _active_tenant(uow, user.tenant_id)
    return user


class CreatePAT(Command):
    command = "create_pat"
    user_id: UUID
    name: Label
    description: Text = ""
    expires_in: Seconds | None = None
    scopes: Scopes = msgspec.field(default_factory=list)

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        owner = _owner_for_new_credential(actor, uow, self.user_id, "pat")
        _require_held(_permissions(uow, owner), self.scopes, "scopes")
        pat_id = uuid4()
        token = uow.mint("pat", pat_id)
        expires_at = expiry("pat", self.expires_in, uow.now)
        pat = PersonalAccessToken(
            id=pat_id,
            user_id=owner.id,
            tenant_id=owner.tenant_id,
            name=self.name,
            description=self.description,
            secret_hash=hash_for_storage(token),
            expires_at=expires_at,
            scopes=_unique_scopes(self.scopes),
            **uow.meta,
        )
        uow.add(pat)
        return {"pat_id": str(pat.id), "token": token, "expires_at": rfc3339(expires_at)}


def _unique_scopes(scopes: list[Scope]) -> list[dict[str, str | None]]:
    return list({s.key: s.to_dict() for s in scopes}.values())


class _PATChange(Command):
    pat_id: UUID

    def _pat(self, actor: Actor, uow: UnitOfWork, operation: str) -> PersonalAccessToken:
        pat = _credential(uow, actor, PersonalAccessToken, self.pat_id, "pat_id")
        _require_owner_or_admin(actor, uow, pat.user_id)
        policy.require_scope(actor, "pat", operation, pat.id)
        return pat


class AddScope(_PATChange):
    command = "add_scope"
    scope: Scope

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        pat = self._pat(actor, uow, "update")
        if actor.credential_id == pat.id:
            raise Forbidden("a credential cannot widen itself", field="pat_id")
        pat.require_active(uow.now)
        _require_held(_permissions(uow, uow.get(User, pat.user_id, "pat_id")), [self.scope], "scope", indexed=False)
        if len(pat.scopes) >= MAX_SCOPES:
            raise Conflict(f"a PAT holds at most {MAX_SCOPES} scopes", field="scope")
        pat.add_scope(scope=self.scope.to_dict(), **uow.meta)
        uow.add(pat)
        return {}


class RemoveScope(_PATChange):
    command = "remove_scope"
    scope: Scope

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        pat = self._pat(actor, uow, "update")
        pat.require_active(uow.now)
        pat.remove_scope(scope=self.scope.to_dict(), **uow.meta)
        uow.add(pat)
        return {}


class RevokePAT(_PATChange):
    command = "revoke_pat"
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        pat = self._pat(actor, uow, "delete")
        pat.revoke(reason=self.reason, **uow.meta)
        uow.add(pat)
        return {}


class ResetPATSecret(_PATChange):
    command = "reset_pat_secret"
    expires_in: Seconds | None = None

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        pat = self._pat(actor, uow, "update")
        policy.require_may_mint(actor, pat.user_id)
        if pat.revoked:
            raise Conflict("a revoked PAT cannot be reset", field="pat_id")
        token = uow.mint("pat", pat.id)
        expires_at = expiry("pat", self.expires_in, uow.now)
        pat.reset_secret(secret_hash=hash_for_storage(token), expires_at=expires_at, **uow.meta)
        uow.add(pat)
        return {"token": token, "expires_at": rfc3339(expires_at)}


class IssueKey(Command):
    command = "issue_key"
    user_id: UUID
    kind: KeyKind
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    expires_in: Seconds | None = None
    scopes: Scopes | None = None

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        owner = _owner_for_new_credential(actor, uow, self.user_id, "key")
        if self.scopes is not None and self.kind != "api_key":
            raise InvalidRequest("only api_key keys carry scopes", field="scopes")
        if self.scopes is not None:
            _require_held(_permissions(uow, owner), self.scopes, "scopes")
        key_id = uuid4()
        token = uow.mint(self.kind, key_id)
        expires_at = expiry(self.kind, self.expires_in, uow.now)
        key = Key(
            id=key_id,
            user_id=owner.id,
            tenant_id=owner.tenant_id,
            kind=self.kind,
            name=self.name,
            secret_hash=hash_for_storage(token),
            expires_at=expires_at,
            scopes=_unique_scopes(self.scopes) if self.scopes is not None else None,
            **uow.meta,
        )
        uow.add(key)
        return {"key_id": str(key.id), "token": token, "expires_at": rfc3339(expires_at)}


class RevokeKey(Command):
    command = "revoke_key"
    key_id: UUID
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        key = _credential(uow, actor, Key, self.key_id, "key_id")
        _require_owner_or_admin(actor, uow, key.user_id)
        policy.require_scope(actor, "key", "delete", key.id)
        key.revoke(reason=self.reason, **uow.meta)
        uow.add(key)
        return {}


class CreateSigningKey(Command):
    command = "create_signing_key"
    tenant_id: UUID | None = None
    alg: Literal["EdDSA", "ES256", "RS256", "HS256"] = "EdDSA"

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        tenant_id = self.tenant_id or actor.tenant_id
        if not actor.sees(tenant_id):
            raise Forbidden("you cannot create signing keys in another tenant", field="tenant_id")
        policy.require_admin(actor, tenant_id)
        policy.require_may_mint(actor, None)
        policy.require_scope(actor, "signing_key", "create", "*")
        _active_tenant(uow, tenant_id)
        if self.alg == "HS256" and tenant_id == SYSTEM_TENANT_ID:
            raise InvalidRequest("HS256 keys are for tenants to mint their own tokens, not the system tenant", field="alg")
        kid = uuid4()
        public_jwk, sealed, secret = uow.new_signing_key(self.alg, str(kid))
        key = SigningKey(id=kid, tenant_id=tenant_id, alg=self.alg, public_jwk=public_jwk, sealed_private=sealed, **uow.meta)
        uow.add(key)
        result: dict[str, Any] = {"kid": key.kid, "alg": self.alg, "tenant_id": str(tenant_id)}
        if secret is not None:
            result["secret"] = secret
        return result


class _SigningKeyChange(Command):
    kid: UUID

    def _key(self, actor: Actor, uow: UnitOfWork, operation: str) -> SigningKey:
        key = _credential(uow, actor, SigningKey, self.kid, "kid")
        policy.require_admin(actor, key.tenant_id)
        policy.require_scope(actor, "signing_key", operation, key.id)
        return key


class RetireSigningKey(_SigningKeyChange):
    command = "retire_signing_key"

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        key = self._key(actor, uow, "update")
        key.retire(**uow.meta)
        uow.add(key)
        return {}


class RevokeSigningKey(_SigningKeyChange):
    command = "revoke_signing_key"
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        key = self._key(actor, uow, "delete")
        key.revoke(reason=self.reason, **uow.meta)
        uow.add(key)
        return {}


class _PublicKeyChange(Command):
    user_id: UUID
    public_key: PublicKey

    def _user(self, actor: Actor, uow: UnitOfWork) -> User:
        user = _user(uow, actor, self.user_id)
        policy.require_self_or_admin(actor, user.id, user.tenant_id, user.roles)
        policy.require_may_mint(actor, user.id)  # a public key logs in: it is a credential too
        policy.require_scope(actor, "user", "update", user.id)
        return user


class RegisterPublicKey(_PublicKeyChange):
    command = "register_public_key"

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = self._user(actor, uow)
        claim_id = public_key_claim_id(user.tenant_id, self.public_key)
        user.register_public_key(public_key=self.public_key, **uow.meta)
        claim_name(uow, claim_id, "public_key", self.public_key, user.id, "public_key")
        uow.add(user)
        return {"key_id": str(claim_id)}


class RemovePublicKey(_PublicKeyChange):
    command = "remove_public_key"

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        user = self._user(actor, uow)
        user.remove_public_key(public_key=self.public_key, **uow.meta)
        claim = uow.get(NameClaim, public_key_claim_id(user.tenant_id, self.public_key), "public_key")
        claim.release(**uow.meta)
        uow.add(user, claim)
        return {}


class RevokeSession(Command):
    command = "revoke_session"
    session_id: UUID
    reason: Text = ""

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        session = _credential(uow, actor, Session, self.session_id, "session_id")
        _require_owner_or_admin(actor, uow, session.user_id)
        policy.require_scope(actor, "session", "delete", session.id)
        session.revoke(reason=self.reason or "revoked", **uow.meta)
        uow.add(session)
        return {}


class RedeemKey(Command):
    """A recovery or invitation key sets its owner's password, once.  Not a bearer command:
    the key itself is the credential, so ``auth.v1.redeem`` builds this from the token."""

    command = "redeem_key"
    secret_fields = ("password",)
    credential_field = "token"
    key_id: UUID
    password: Password

    def run(self, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
        if actor.credential_id != self.key_id or actor.credential_kind not in ("recovery", "invitation"):
            raise Forbidden("only the key itself redeems it", field="token")
        key = uow.get(Key, self.key_id, "token")
        key.redeem(uow.now, **uow.meta)  # single use: a second redeem finds it redeemed
        user = uow.get(User, key.user_id, "token")
        if user.disabled:
            raise Conflict("user is disabled", field="token")
        user.change_password(password_hash=uow.hash_password(self.password), **uow.meta)
        uow.add(key, user)
        return {"user_id": str(user.id)}


COMMANDS: dict[str, type[Command]] = {
    cls.command: cls
    for cls in (
        CreateTenant,
        DisableTenant,
        EnableTenant,
        RegisterUser,
        ChangePassword,
        DisableUser,
        EnableUser,
        GrantRole,
        RevokeRole,
        CreateRole,
        AddRoleScopes,
        RemoveRoleScopes,
        DeleteRole,
        CreatePAT,
        AddScope,
        RemoveScope,
        RevokePAT,
        ResetPATSecret,
        IssueKey,
        RevokeKey,
        CreateSigningKey,
        RetireSigningKey,
        RevokeSigningKey,
        RegisterPublicKey,
        RemovePublicKey,
        RevokeSession,
    )
}


def bootstrap(uow: UnitOfWork) -> dict[str, Any]:
    """The system tenant, its root service principal and that principal's API key."""
    if uow.exists(SYSTEM_TENANT_ID):
        raise Conflict("authbus is already bootstrapped")
    tenant = Tenant(name="system", id=SYSTEM_TENANT_ID, **uow.meta)
    claim_name(uow, tenant_name_claim_id("system"), "tenant", "system", tenant.id, "name")
    root = User(tenant_id=tenant.id, username="root", kind="service", roles=["root"], password_hash=None, **uow.meta)
    claim_name(uow, username_claim_id(tenant.id, "root"), "username", "root", root.id, "username")
    key_id = uuid4()
    token = uow.mint("api_key", key_id)
    key = Key(
        id=key_id,
        user_id=root.id,
        tenant_id=tenant.id,
        kind="api_key",
        name="root bootstrap key",
        secret_hash=hash_for_storage(token),
        expires_at=None,
        scopes=None,
        **uow.meta,
    )
    kid = uuid4()  # signs access tokens for every tenant that has no key of its own
    public_jwk, sealed, _ = uow.new_signing_key("EdDSA", str(kid))
    signing = SigningKey(id=kid, tenant_id=tenant.id, alg="EdDSA", public_jwk=public_jwk, sealed_private=sealed, **uow.meta)
    uow.add(tenant, root, key, signing)
    return {"tenant_id": str(tenant.id), "user_id": str(root.id), "key_id": str(key.id), "token": token}
