"""Credential use, recorded off the verify path: a node notes the PATs and API keys it
sees used and hands them here in batches (DESIGN §6), one event per credential per
minute at most, whichever instance saw the use."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.errors import NotFound
from authbus.domain.unit_of_work import UnitOfWork


def record_uses(uow: UnitOfWork, uses: Mapping[UUID, tuple[str, datetime]]) -> int:
    """``uses``: credential id → (kind, first use seen).  How many uses were recorded: none
    for a credential gone, revoked, or recorded within the last minute already."""
    recorded = 0
    for credential_id, (kind, at) in uses.items():
        try:
            credential = uow.get(PersonalAccessToken if kind == "pat" else Key, credential_id, "credential_id")
        except NotFound:
            continue
        if credential.used(at=at, **uow.meta):
            uow.add(credential)
            recorded += 1
    return recorded
