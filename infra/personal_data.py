"""Crypto-shredding: a user's personal data is sealed in the log under a key of its own,
which deleting the user destroys.

The log is immutable (and chained, for tamper evidence), so erasure cannot rewrite it.
Instead each user has a random 32-byte data key, kept beside the log in the table
``authbus_personal_keys`` (wrapped under the KEK, like signing keys), and every personal
field of its events is stored sealed under it (AES-256-GCM, bound to the user and the
field).  ``delete_user`` appends ``UserDeleted`` and then deletes the key: from then on
those fields read as erased everywhere — replay, ``audit as-of``, a rebuilt read model —
while the stored rows, and so the chain, stay exactly as they were.

``PersonalDataMapper`` does the sealing and opening at the store's edge, so the domain and
the projections see plain values (or the erased ones) and stay pure.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from eventsourcing.persistence import Mapper, StoredEvent

from authbus.domain.registry import NameClaim
from authbus.domain.user import User, erased_username
from authbus.infra.crypto.keys import KeyWrap

log = logging.getLogger("authbus.personal")

TABLE = "authbus_personal_keys"
TABLE_LOCK = int.from_bytes(b"authbus\x01", "big")  # pg_advisory_xact_lock key: creating the table
SEALED = "$sealed"  # a sealed value is stored as {"$sealed": "<base64url nonce + ciphertext>"}
ERASED_TEXT = ""  # what a display name or email reads as once its key is gone
WITHHELD = "[sealed]"  # what a sealed value reads as where no KEK is at hand (the offline tools without one)


def withheld_username(user_id: UUID) -> str:
    """A username as a reader without the KEK sees it: one per user, as an erased one."""
    return f"sealed-{user_id}"


# Per event class: its personal fields, and where the owning user's id is (None: the
# aggregate is the user).  A NameClaim's name is personal only in the username namespace.
PERSONAL: dict[type, tuple[tuple[str, ...], str | None]] = {
    User.UserRegistered: (("username",), None),
    User.UserRenamed: (("username",), None),
    User.UserUpdated: (("display_name", "email", "metadata"), None),
    NameClaim.NameClaimed: (("name",), "owner_id"),
}


def _personal(event_state: dict[str, Any], cls: type) -> tuple[tuple[str, ...], UUID] | None:
    """The personal fields of an event's state and their owner, if it has any."""
    spec = PERSONAL.get(cls)
    if spec is None:
        return None
    fields, owner_field = spec
    if cls is NameClaim.NameClaimed and event_state.get("namespace") != "username":
        return None
    owner = event_state["originator_id"] if owner_field is None else event_state[owner_field]
    return fields, owner


class PersonalKeys:
    """The users' data keys, in the store's own database, cached in memory once read.

    ``wrap`` None: no KEK at hand (an offline tool run without one): no key opens, sealed
    fields read as withheld, and nothing is created or destroyed.
    """

    def __init__(self, datastore: Any, postgres: bool, wrap: KeyWrap | None) -> None:
        self._datastore = datastore
        self._mark = "%s" if postgres else "?"
        self._postgres = postgres
        self._wrap = wrap
        self._keys: dict[UUID, KeyWrap | None] = {}  # None: destroyed (or never made)
        self._lock = threading.Lock()  # command workers and the follower ask at once
        self._loaded = False

    @property
    def opens(self) -> bool:
        return self._wrap is not None

    def create_table(self) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            if self._postgres:  # instances starting at once would collide in the catalog
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (TABLE_LOCK,))
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (user_id TEXT PRIMARY KEY, wrapped TEXT NOT NULL)")

    def key(self, user_id: UUID, create: bool = False) -> KeyWrap | None:
        """The user's data key; a new one when ``create`` and it has none; None once destroyed."""
        with self._lock:
            if not self._loaded:
                self._load_all()
            if user_id in self._keys and (self._keys[user_id] is not None or not create):
                return self._keys[user_id]
            found = self._insert(user_id) if create and self._wrap is not None else self._select(user_id)
            self._keys[user_id] = found
            return found

    def destroy(self, user_ids: Iterable[UUID]) -> None:
        """Delete these users' keys, for good.  Idempotent: every instance that folds a
        ``UserDeleted`` does it too, so a crash between the append and this loses nothing."""
        ids = list(user_ids)
        if not ids or self._wrap is None:
            return
        with self._lock:
            with self._datastore.transaction(commit=True) as cursor:
                for user_id in ids:
                    cursor.execute(f"DELETE FROM {TABLE} WHERE user_id = {self._mark}", (str(user_id),))
            for user_id in ids:
                self._keys[user_id] = None

    def forget(self, user_ids: Iterable[UUID]) -> None:
        """Another instance destroyed these keys: drop them from memory here too."""
        with self._lock:
            for user_id in user_ids:
                self._keys[user_id] = None

    def _load_all(self) -> None:
        """Every key at once, on first use: a cold start folds many users' events."""
        self._loaded = True
        if self._wrap is None:
            return
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT user_id, wrapped FROM {TABLE}")
            rows = cursor.fetchall()
        for row in rows:
            user_id, wrapped = (row["user_id"], row["wrapped"]) if self._postgres else (row[0], row[1])
            self._keys[UUID(user_id)] = self._open(UUID(user_id), wrapped)

    def _select(self, user_id: UUID) -> KeyWrap | None:
        if self._wrap is None:
            return None
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT wrapped FROM {TABLE} WHERE user_id = {self._mark}", (str(user_id),))
            row = cursor.fetchone()
        if row is None:
            return None
        return self._open(user_id, row["wrapped"] if self._postgres else row[0])

    def _insert(self, user_id: UUID) -> KeyWrap | None:
        """A new key, in one round trip for a new user; or the one another instance made first."""
        assert self._wrap is not None
        key = os.urandom(32)
        with self._datastore.transaction(commit=True) as cursor:
            insert = (
                f"INSERT INTO {TABLE} (user_id, wrapped) VALUES ({self._mark}, {self._mark}) ON CONFLICT (user_id) DO NOTHING"
            )
            values = (str(user_id), self._wrap.wrap(f"personal:{user_id}", key))
            if self._postgres:
                cursor.execute(f"{insert} RETURNING user_id", values)
            else:  # SQLite before 3.35 has no RETURNING
                cursor.execute(insert, values)
                cursor.execute("SELECT user_id FROM (SELECT 1 AS user_id) WHERE changes() = 1")
            made = cursor.fetchone() is not None
        return KeyWrap(key) if made else self._select(user_id)

    def _open(self, user_id: UUID, wrapped: str) -> KeyWrap | None:
        assert self._wrap is not None
        try:
            return KeyWrap(self._wrap.unwrap(f"personal:{user_id}", wrapped))
        except InvalidTag:
            log.error("the data key of user %s does not open under this KEK", user_id)
            return None


class PersonalDataMapper(Mapper):
    """eventsourcing's Mapper, sealing personal fields on the way into the store and opening
    them on the way out."""

    keys: PersonalKeys | None = None  # set once the store is open (its datastore holds the table)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = vars(domain_event)
        personal = _personal(state, type(domain_event))
        if personal is None or self.keys is None:
            return super().to_stored_event(domain_event)
        fields, owner = personal
        key = self.keys.key(owner, create=True)
        if key is None:
            raise RuntimeError(f"user {owner} has no data key: its personal data cannot be stored")
        sealed = dict(state)
        for name in fields:
            sealed[name] = {SEALED: key.wrap(f"{owner}:{name}", _encode(state[name]))}
        clone = object.__new__(type(domain_event))
        object.__setattr__(clone, "__dict__", sealed)
        return super().to_stored_event(clone)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        state = event.__dict__
        personal = _personal(state, type(event))
        if personal is None:
            return event
        fields, owner = personal
        if not any(isinstance(state[name], dict) and SEALED in state[name] for name in fields):
            return event  # stored before personal data was sealed
        key = None if self.keys is None else self.keys.key(owner)
        for name in fields:
            state[name] = _opened(key, owner, name, state[name], self.keys is not None and self.keys.opens)
        return event


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _opened(key: KeyWrap | None, owner: UUID, name: str, value: Any, opens: bool) -> Any:
    if not (isinstance(value, dict) and SEALED in value):
        return value
    if key is not None:
        return json.loads(key.unwrap(f"{owner}:{name}", value[SEALED]))
    if name == "metadata":
        return {}
    if name == "username":  # one per user, so a read model built from it keeps them apart
        return erased_username(owner) if opens else withheld_username(owner)
    return ERASED_TEXT if opens else WITHHELD
