"""The replies' shapes (docs/wire.md §6), shared by the handlers that encode them and the
Python client (infra/client) that decodes them.  Unknown fields are ignored on decoding, so
a newer server's additions do not break an older client.

``verify`` and ``authorize`` answer from dicts they keep built (projections/memos.py), in
exactly these shapes: a struct per request there would cost what the memo saves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

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
    reason: str  # scope, role:<role>, no_matching_scope, other_tenant, not_a_bearer_credential, or a verify reason
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
    position: int

    @classmethod
    def of(cls, started: Started, position: int) -> Tokens:
        return cls(
            access_token=started.access_token,
            refresh_token=started.refresh_token,
            expires_in=started.expires_in,
            session_id=started.session_id,
            position=position,
        )


class CommandReply(msgspec.Struct, Generic[T], frozen=True):
    """A command's success reply (§7) with ``result`` decoded into a type of the caller's."""

    ok: bool
    result: T
    position: int
