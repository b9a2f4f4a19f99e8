"""What verify remembers, kept beside the read model rather than in it: nothing here is
folded from the log, so a snapshot never holds it and a replay never needs it.  It only
spares work, and never vouches for more than a fresh check would.

* ``Bearers``: bearer strings whose secret or signature checked out.  A bearer seen valid
  skips the parse, the SHA-256 or the signature check the next time; its standing (revoked,
  expired, disabled) is judged afresh on every request.
* ``Views``: the ``credential`` and ``principal`` parts of a verify reply, built once and
  built again when what they show changes.

``Bearers`` also notes which PATs and API keys were used, for the node to record in
batches (PATUsed/KeyUsed, DESIGN §6): noting is a dict write, never a store write.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from authbus.domain.credentials import USE_INTERVAL
from authbus.projections.read_model import CredentialView, PrincipalView

VERIFIED_KEPT = 65_536  # bearer strings remembered, the oldest making room
VIEWS_KEPT = 65_536  # credentials' and principals' views remembered, the oldest making room
USED_KINDS = frozenset({"pat", "api_key"})
USE_SECONDS = USE_INTERVAL.total_seconds()  # a use is recorded at most this often


class Bearers:
    def __init__(self, kept: int = VERIFIED_KEPT, notes_uses: bool = False) -> None:
        self._kept = kept
        self._seen: dict[str, tuple[Any, Any]] = {}
        self._notes_uses = notes_uses
        self.uses: dict[UUID, tuple[str, float]] = {}  # credential id → (kind, first use seen), not yet recorded

    def used(self, credential: CredentialView, now: float) -> None:
        """``credential`` acted at ``now``: noted, unless its last recorded use is less than
        ``USE_INTERVAL`` old or a use is noted already."""
        if not self._notes_uses or credential.kind not in USED_KINDS or credential.id in self.uses:
            return
        last = credential.used_ts
        if last is None or now - last >= USE_SECONDS:
            self.uses[credential.id] = (credential.kind, now)

    def take_uses(self, limit: int) -> dict[UUID, tuple[str, float]]:
        """Up to ``limit`` noted uses, the oldest first, no longer noted here."""
        taken = dict(itertools.islice(self.uses.items(), limit))
        for credential_id in taken:
            del self.uses[credential_id]
        return taken

    def get(self, token: str) -> tuple[Any, Any] | None:
        """What was remembered with ``token``: (credential or signed token, digest or None)."""
        return self._seen.get(token)

    def remember(self, token: str, first: Any, second: Any) -> None:
        _keep(self._seen, self._kept, token, (first, second))

    def __contains__(self, token: object) -> bool:
        return token in self._seen

    def __iter__(self) -> Iterator[str]:
        return iter(self._seen)


FORGETFUL = Bearers(kept=0)  # for a caller that checks in full every time (a test, an audit)


def _keep(memo: dict[Any, Any], kept: int, key: Any, value: Any) -> None:
    if kept <= 0:
        return
    if len(memo) >= kept:
        del memo[next(iter(memo))]
    memo[key] = value


def credential_view(credential: Any) -> dict[str, Any]:
    return {"id": str(credential.id), "kind": credential.kind, "expires_at": credential.expires_at}


def principal_view(principal: Any) -> dict[str, Any]:
    view = {
        "id": str(principal.id),
        "tenant_id": str(principal.tenant_id),
        "kind": principal.kind,
        "roles": list(principal.roles),
    }
    if not isinstance(principal, PrincipalView):  # a tenant token's subject, in the tenant's own words
        view["subject"] = principal.subject
    return view


class Views:
    """Each view is kept with the value whose change it must follow: a credential's expiry
    (a reset secret sets a new one), a principal's roles (a new tuple whenever a role is
    granted, revoked or deleted).  Callers copy, never mutate them."""

    def __init__(self, kept: int = VIEWS_KEPT) -> None:
        self._kept = kept
        self._built: dict[tuple[str, UUID], tuple[Any, dict[str, Any]]] = {}

    def credential(self, credential: Any) -> dict[str, Any]:
        if not isinstance(credential, CredentialView):  # a JWT's: made per token
            view = credential_view(credential)
            if credential.dpv is not None:  # a tenant token's data providers, for the service (§3.7)
                view["dpv"] = credential.dpv
            return view
        return self._view(("credential", credential.id), credential.expires_at, credential, credential_view)

    def principal(self, principal: Any) -> dict[str, Any]:
        if not isinstance(principal, PrincipalView):
            return principal_view(principal)
        return self._view(("principal", principal.id), principal.roles, principal, principal_view)

    def _view(self, key: tuple[str, UUID], source: Any, of: Any, build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        built = self._built.get(key)
        if built is not None and built[0] is source:
            return built[1]
        view = build(of)
        _keep(self._built, self._kept, key, (source, view))
        return view
