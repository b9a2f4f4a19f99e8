"""User: a principal (a person or a service) with roles and, optionally, a password.

Its roles are built-in ones (``roles``, by name) and tenant-defined ones (``custom_roles``,
by id, with the name they had when granted): a grant names the role, not a name that a
later role could take over.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from authbus.domain.errors import Conflict
from authbus.domain.throttle import with_failure

KINDS = ("user", "service")


class User(Aggregate):
    @event("UserRegistered")
    def __init__(
        self,
        tenant_id: UUID,
        username: str,
        kind: str,
        roles: list[str],
        password_hash: str | None,
        actor: str,
        correlation_id: str,
        custom_roles: dict[str, str] | None = None,  # role id → name; absent in older events
    ) -> None:
        self.tenant_id = tenant_id
        self.username = username
        self.kind = kind
        self.roles = list(roles)
        self.custom_roles: dict[UUID, str] = {UUID(k): v for k, v in (custom_roles or {}).items()}
        self.password_hash = password_hash
        self.disabled = False
        self.public_keys: list[str] = []  # base64url raw Ed25519 keys, for challenge login
        self.failures: list[datetime] = []  # recent failed logins (domain/throttle.py)
        self.deleted = False
        self.display_name = ""  # "": none
        self.email = ""
        self.metadata: dict[str, str] = {}

    def delete(self, reason: str, actor: str, correlation_id: str) -> None:
        """For good: the user's personal data is erased from the log (infra/personal_data.py)
        and nothing it held acts again."""
        self._delete(reason=reason, actor=actor, correlation_id=correlation_id)

    @event("UserDeleted")
    def _delete(self, reason: str, actor: str, correlation_id: str) -> None:
        self.deleted = self.disabled = True  # every check of a disabled user holds for a deleted one
        self.public_keys = []
        self.display_name, self.email, self.metadata = "", "", {}

    def rename(self, username: str, actor: str, correlation_id: str) -> None:
        if username == self.username:
            raise Conflict("the user already has this username", field="username")
        self._rename(username=username, actor=actor, correlation_id=correlation_id)

    @event("UserRenamed")
    def _rename(self, username: str, actor: str, correlation_id: str) -> None:
        self.username = username

    def update(
        self, display_name: str | None, email: str | None, metadata: dict[str, str] | None, actor: str, correlation_id: str
    ) -> None:
        """The profile: each of display name, email and metadata given replaces what was
        there, one left out (None) stays."""
        self._update(
            display_name=self.display_name if display_name is None else display_name,
            email=self.email if email is None else email,
            metadata=self.metadata if metadata is None else dict(metadata),
            actor=actor,
            correlation_id=correlation_id,
        )

    @event("UserUpdated")
    def _update(self, display_name: str, email: str, metadata: dict[str, str], actor: str, correlation_id: str) -> None:
        self.display_name, self.email, self.metadata = display_name, email, metadata

    @event("PasswordChanged")
    def change_password(self, password_hash: str, actor: str, correlation_id: str) -> None:
        self.password_hash = password_hash

    def disable(self, actor: str, correlation_id: str, reason: str) -> None:
        if self.disabled:
            raise Conflict("user is already disabled", field="user_id")
        self._disable(actor=actor, correlation_id=correlation_id, reason=reason)

    def enable(self, actor: str, correlation_id: str) -> None:
        if not self.disabled:
            raise Conflict("user is not disabled", field="user_id")
        self._enable(actor=actor, correlation_id=correlation_id)

    def holds_role(self, role: str, role_id: UUID | None) -> bool:
        return role in self.roles if role_id is None else role_id in self.custom_roles

    def grant_role(self, role: str, actor: str, correlation_id: str, role_id: UUID | None = None) -> None:
        """A built-in role by name, or a tenant-defined one by id (``role`` its name)."""
        if self.holds_role(role, role_id):
            raise Conflict(f"user already has role {role}", field="role")
        self._grant(role=role, role_id=role_id, actor=actor, correlation_id=correlation_id)

    def revoke_role(self, role: str, actor: str, correlation_id: str, reason: str, role_id: UUID | None = None) -> None:
        if not self.holds_role(role, role_id):
            raise Conflict(f"user does not have role {role}", field="role")
        self._revoke(role=role, role_id=role_id, actor=actor, correlation_id=correlation_id, reason=reason)

    def register_public_key(self, public_key: str, actor: str, correlation_id: str) -> None:
        if public_key in self.public_keys:
            raise Conflict("this public key is already registered", field="public_key")
        self._add_public_key(public_key=public_key, actor=actor, correlation_id=correlation_id)

    def remove_public_key(self, public_key: str, actor: str, correlation_id: str) -> None:
        if public_key not in self.public_keys:
            raise Conflict("this public key is not registered", field="public_key")
        self._remove_public_key(public_key=public_key, actor=actor, correlation_id=correlation_id)

    @event("LoginSucceeded")
    def login_succeeded(self, method: str, session_id: UUID, source: str, actor: str, correlation_id: str) -> None:
        self.failures = []

    @event("LoginFailed")
    def login_failed(
        self, method: str, reason: str, source: str, actor: str, correlation_id: str, at: datetime | None = None
    ) -> None:
        self.failures = with_failure(self.failures, at)

    @event("PublicKeyRegistered")
    def _add_public_key(self, public_key: str, actor: str, correlation_id: str) -> None:
        self.public_keys.append(public_key)

    @event("PublicKeyRemoved")
    def _remove_public_key(self, public_key: str, actor: str, correlation_id: str) -> None:
        self.public_keys.remove(public_key)

    @event("UserDisabled")
    def _disable(self, actor: str, correlation_id: str, reason: str) -> None:
        self.disabled = True

    @event("UserEnabled")
    def _enable(self, actor: str, correlation_id: str) -> None:
        self.disabled = False

    @event("RoleGranted")
    def _grant(self, role: str, actor: str, correlation_id: str, role_id: UUID | None = None) -> None:
        if role_id is None:
            self.roles.append(role)
        else:
            self.custom_roles[role_id] = role

    @event("RoleRevoked")
    def _revoke(self, role: str, actor: str, correlation_id: str, reason: str, role_id: UUID | None = None) -> None:
        if role_id is None:
            self.roles.remove(role)
        else:
            self.custom_roles.pop(role_id, None)


def erased_username(user_id: UUID) -> str:
    """A deleted user's username, as the log reads once its data key is gone: one per user."""
    return f"erased-{user_id}"


def username_claim_id(tenant_id: UUID, username: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"authbus:username:{tenant_id}:{username.casefold()}")


def public_key_claim_id(tenant_id: UUID, public_key: str) -> UUID:
    """A public key names one principal per tenant, so a challenge answer has one owner."""
    return uuid5(NAMESPACE_URL, f"authbus:public-key:{tenant_id}:{public_key}")
