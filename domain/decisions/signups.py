"""Self-service sign-up, where a tenant's policy allows it (set_tenant_policy): a username
and password (``auth.v1.register``, blitz-js style), or a keypair that answered a challenge
(Textile Hub's way), becomes a user with the ``user`` role and no admin step first.  Either
begins a session at once, as a login would.

An unknown tenant, a disabled one and one that takes no such sign-up all answer alike:
a tenant id is unguessable, and whether it exists is none of an anonymous caller's business.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from authbus.domain.decisions.access import claim_name
from authbus.domain.decisions.logins import Outcome, Refused, Started, challenge_claim_id, start_session
from authbus.domain.errors import Forbidden, NotFound
from authbus.domain.tenant import Tenant
from authbus.domain.unit_of_work import UnitOfWork
from authbus.domain.user import User, public_key_claim_id, username_claim_id

SIGNUP_ACTOR = "self-service"  # who acts in a sign-up's events: nobody known yet
CLOSED = "this tenant does not take sign-ups"


def require_open(tenant: Any, switch: str) -> None:
    """``tenant`` (an aggregate or a read-model view, or None) takes sign-ups of the kind
    ``switch`` names (``open_registration``, ``keypair_signup``), or ``forbidden``."""
    if tenant is None or tenant.disabled or not tenant.policy[switch]:
        raise Forbidden(CLOSED, field="tenant_id")


def _open_tenant(uow: UnitOfWork, tenant_id: UUID, switch: str) -> Tenant:
    try:
        tenant = uow.get(Tenant, tenant_id, "tenant_id")
    except NotFound:
        raise Forbidden(CLOSED, field="tenant_id") from None
    require_open(tenant, switch)
    return tenant


def _new_user(uow: UnitOfWork, tenant_id: UUID, username: str, password_hash: str | None) -> User:
    user = User(tenant_id=tenant_id, username=username, kind="user", roles=["user"], password_hash=password_hash, **uow.meta)
    claim_name(uow, username_claim_id(tenant_id, username), "username", username, user.id, "username")
    return user


def register(uow: UnitOfWork, tenant_id: UUID, username: str, password_hash: str, source: str) -> Started:
    """A user who chose a username and a password (hashed by the caller), and its session."""
    _open_tenant(uow, tenant_id, "open_registration")
    return start_session(uow, _new_user(uow, tenant_id, username, password_hash), "password", source)


def keypair_username(public_key: str) -> str:
    """The username a keypair signs up under: its canonical key, which the pattern takes."""
    return f"key.{public_key}"


def keypair_signup(uow: UnitOfWork, tenant_id: UUID, public_key: str, nonce: str, source: str) -> Outcome:
    """A key no user of the tenant holds answered a challenge: it becomes a user of its own,
    bound to the key.  The nonce is spent as a login's is, so an answer signs up once."""
    if uow.exists(challenge_claim_id(nonce)):
        return Refused("used")
    _open_tenant(uow, tenant_id, "keypair_signup")
    user = _new_user(uow, tenant_id, keypair_username(public_key), None)
    claim_name(uow, challenge_claim_id(nonce), "challenge", nonce, user.id, "challenge")
    user.register_public_key(public_key=public_key, **uow.meta)
    claim_name(uow, public_key_claim_id(tenant_id, public_key), "public_key", public_key, user.id, "signature")
    return start_session(uow, user, "challenge", source)
