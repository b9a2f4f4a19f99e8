"""Commands: typed requests, decoded straight from the wire, with no behaviour of their own.

Each names what it asks for; what it causes is decided in ``domain/decisions/`` and the
rules an aggregate keeps whoever asks live in the aggregates.  A field's type here is its
wire contract: msgspec refuses anything else before a decision runs.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, ClassVar, Literal
from uuid import UUID

import msgspec

from authbus.domain.credentials import MAX_SCOPES
from authbus.domain.scopes import Scope
from authbus.domain.tenant import REGISTRATIONS_PER_MINUTE

CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?\Z")]
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*\Z")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]
Seconds = Annotated[int, msgspec.Meta(gt=0, le=10 * 366 * 86400)]
# A lifetime as SuperMQ's clients write it, a Go duration of hours, minutes and seconds
# ("24h", "720h", "1h30m"); credentials.expiry reads it.
Duration = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^(?=\d)(\d+h)?(\d+m)?(\d+s)?\Z")]
Lifetime = Seconds | Duration
PatName = Annotated[str, msgspec.Meta(min_length=1, max_length=254, pattern=r"^\S(.*\S)?\Z")]  # SuperMQ's limit
# A built-in role (root, admin, auditor, user) or one the tenant defined (create_role).
RoleName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*\Z")]
KeyKind = Literal["api_key", "recovery", "invitation"]
Scopes = Annotated[list[Scope], msgspec.Meta(max_length=MAX_SCOPES)]
SomeScopes = Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=MAX_SCOPES)]
# base64url of 32 bytes, canonical (the last character's two spare bits are zero): a key has
# one spelling, so the claim keyed by its text gives it one owner per tenant.
# An Ed25519 public key in one of the spellings domain/public_keys.py reads (base64url,
# multibase, did:key); the decision reads it to its one canonical form.
PrivateKeyPem = Annotated[str, msgspec.Meta(min_length=1, max_length=6000)]  # an RSA-4096 PKCS#8 PEM is ~3.3 KB
PublicKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:_-]+\Z")]


class Command(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    command: ClassVar[str]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Kept out of the request digest as secrets are: the digest outlives a deleted user's
    # data key, and a SHA-256 of a username or email is found again by guessing.
    personal_fields: ClassVar[tuple[str, ...]] = ()
    credential_field: ClassVar[str] = "Authorization"  # where the acting credential came from
    command_id: CommandId | None = None


def request_digest(command: Command) -> str:
    """What identifies a request for a repeated command_id; passwords are left out.  The
    fields go in the order commands first had, ``command_id`` last, whatever order a struct
    declares them in now: a digest kept in the log must match the same request later."""
    blanked = msgspec.structs.replace(command, **{f: "" for f in (*command.secret_fields, *command.personal_fields)})
    fields = {f: getattr(blanked, f) for f in command.__struct_fields__ if f != "command_id"}
    return hashlib.sha256(msgspec.json.encode({**fields, "command_id": None})).hexdigest()


# Tenants ------------------------------------------------------------------------------


class CreateTenant(Command):
    command = "create_tenant"
    name: Label


class RenameTenant(Command):
    command = "rename_tenant"
    tenant_id: UUID
    name: Label


Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^\S+\Z")]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+\Z")]


class UpdateTenant(Command):
    """Tags and metadata for the tenant's owners to find and describe it by; either given
    replaces what was there, one left out stays."""

    command = "update_tenant"
    tenant_id: UUID
    tags: Annotated[list[Tag], msgspec.Meta(max_length=64)] | None = None
    metadata: Annotated[dict[MetadataKey, Text], msgspec.Meta(max_length=64)] | None = None


Audience = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^\S+\Z")]


class SetTenantPolicy(Command):
    """The tenant's whole policy (domain/tenant.py DEFAULT_POLICY): a field left out takes
    its default, a lifetime or audience left out or null the deployment's."""

    command = "set_tenant_policy"
    tenant_id: UUID
    access_token_seconds: Annotated[int, msgspec.Meta(ge=60, le=86400)] | None = None
    session_seconds: Annotated[int, msgspec.Meta(ge=300, le=366 * 86400)] | None = None
    audience: Audience | None = None
    open_registration: bool = False  # auth.v1.register, without a bearer
    keypair_signup: bool = False  # a key that answers a challenge becomes a user
    registrations_per_minute: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = REGISTRATIONS_PER_MINUTE


class DisableTenant(Command):
    command = "disable_tenant"
    tenant_id: UUID
    reason: Text = ""


class EnableTenant(Command):
    command = "enable_tenant"
    tenant_id: UUID


# Users and their roles ----------------------------------------------------------------


class RegisterUser(Command):
    command = "register_user"
    secret_fields = ("password",)
    personal_fields = ("username",)
    tenant_id: UUID
    username: Username
    password: Password | None = None
    kind: Literal["user", "service"] = "user"
    roles: Annotated[list[RoleName], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=lambda: ["user"])


DisplayName = Annotated[str, msgspec.Meta(max_length=256)]  # "": none
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?\Z")]  # "": none


class UpdateUser(Command):
    """A new username (the claim moves), or a profile: each given replaces what was there,
    one left out stays."""

    command = "update_user"
    personal_fields = ("username", "display_name", "email", "metadata")
    user_id: UUID
    username: Username | None = None
    display_name: DisplayName | None = None
    email: Email | None = None
    metadata: Annotated[dict[MetadataKey, Text], msgspec.Meta(max_length=64)] | None = None


class DeleteUser(Command):
    """Erase a user: its personal data is crypto-shredded, its credentials stop acting."""

    command = "delete_user"
    user_id: UUID
    reason: Text = ""


class ChangePassword(Command):
    command = "change_password"
    secret_fields = ("password", "old_password")
    user_id: UUID
    password: Password
    old_password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class DisableUser(Command):
    command = "disable_user"
    user_id: UUID
    reason: Text = ""


class EnableUser(Command):
    command = "enable_user"
    user_id: UUID


class GrantRole(Command):
    command = "grant_role"
    user_id: UUID
    role: RoleName


class RevokeRole(Command):
    command = "revoke_role"
    user_id: UUID
    role: RoleName
    reason: Text = ""


class RegisterPublicKey(Command):
    command = "register_public_key"
    user_id: UUID
    public_key: PublicKey


class RemovePublicKey(Command):
    command = "remove_public_key"
    user_id: UUID
    public_key: PublicKey


class RedeemKey(Command):
    """A recovery or invitation key sets its owner's password, once.  Not a bearer command:
    the key itself is the credential, so ``auth.v1.redeem`` builds this from the token."""

    command = "redeem_key"
    secret_fields = ("password",)
    credential_field = "token"
    key_id: UUID
    password: Password


# Tenant roles -------------------------------------------------------------------------


class CreateRole(Command):
    command = "create_role"
    name: RoleName
    tenant_id: UUID | None = None  # default: the caller's
    description: Text = ""
    scopes: Scopes = msgspec.field(default_factory=list)


class AddRoleScopes(Command):
    command = "add_role_scopes"
    role_id: UUID
    scopes: SomeScopes


class RemoveRoleScopes(Command):
    command = "remove_role_scopes"
    role_id: UUID
    scopes: SomeScopes


class DeleteRole(Command):
    command = "delete_role"
    role_id: UUID
    reason: Text = ""


class SetRoleOrder(Command):
    """The tenant's roles, built-in and its own, lowest first (domain/role_order.py)."""

    command = "set_role_order"
    order: Annotated[list[RoleName], msgspec.Meta(min_length=1, max_length=256)]
    tenant_id: UUID | None = None  # default: the caller's


# Credentials --------------------------------------------------------------------------


class CreatePAT(Command, kw_only=True):
    command = "create_pat"
    user_id: UUID | None = None  # None: the caller's own user
    name: PatName
    description: Text = ""
    expires_in: Lifetime | None = None
    scopes: Scopes = msgspec.field(default_factory=list)


class AddScope(Command):
    command = "add_scope"
    pat_id: UUID
    scope: Scope


class RemoveScope(Command):
    command = "remove_scope"
    pat_id: UUID
    scope: Scope


# A PAT's scopes are a list: each added or removed one is looked for in it, so a command
# takes a bounded number (more go in several commands, or at create_pat).
ListedScopes = Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=500)]


class AddScopes(Command):
    """Several scopes at once, as SuperMQ's clients send them: all are added, or none."""

    command = "add_scopes"
    pat_id: UUID
    scopes: ListedScopes


class RemoveScopes(Command):
    command = "remove_scopes"
    pat_id: UUID
    scopes: ListedScopes


class RevokePAT(Command):
    command = "revoke_pat"
    pat_id: UUID
    reason: Text = ""


class UpdatePAT(Command):
    """SuperMQ's PATCH /pats/{id}/name and /description: either given replaces, one left out stays."""

    command = "update_pat"
    pat_id: UUID
    name: PatName | None = None
    description: Text | None = None


class ResetPATSecret(Command):
    command = "reset_pat_secret"
    pat_id: UUID
    expires_in: Lifetime | None = None


class IssueKey(Command):
    command = "issue_key"
    user_id: UUID
    kind: KeyKind
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    expires_in: Lifetime | None = None
    scopes: Scopes | None = None


class RevokeKey(Command):
    command = "revoke_key"
    key_id: UUID
    reason: Text = ""


class RevokeSession(Command):
    command = "revoke_session"
    session_id: UUID
    reason: Text = ""


# Signing keys -------------------------------------------------------------------------


class CreateSigningKey(Command):
    command = "create_signing_key"
    tenant_id: UUID | None = None
    alg: Literal["EdDSA", "ES256", "RS256", "HS256"] = "EdDSA"
    private_key: PrivateKeyPem | None = None  # bring your own: an unencrypted PKCS#8 PEM of ``alg``


class RetireSigningKey(Command):
    command = "retire_signing_key"
    kid: UUID


class RevokeSigningKey(Command):
    command = "revoke_signing_key"
    kid: UUID
    reason: Text = ""


# Every command a bearer sends on ``<prefix>.v1.cmd.<name>``, in the order docs/wire.md lists them.
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
        RenameTenant,
        UpdateTenant,
        AddScopes,
        RemoveScopes,
        SetTenantPolicy,
        SetRoleOrder,
        UpdateUser,
        DeleteUser,
        UpdatePAT,
    )
}
