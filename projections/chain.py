"""The tamper-evidence chain over the stored log: defined here, exactly, so that an auditor
can recompute it from a database dump without authbus.

Encoding.  ``u64(n)`` is n as 8 bytes, big-endian, unsigned; ``field(x) = u64(len(x)) ‖ x``.
Every stored event, in ascending position order, extends it: a row of ``stored_events``
in SQLite, whose position is its ``rowid``; of ``authbus_events`` in PostgreSQL, whose
position is its ``notification_id`` column.

    link(p) = SHA-256( field("authbus/chain/v1")
                     ‖ field(previous)                 32 bytes: the link of the previous stored
                                                       event; 32 zero bytes before the first one
                     ‖ field(u64(p))
                     ‖ field(originator_id)            the UUID's 16 bytes (SQLite keeps them as
                                                       32 hex digits, PostgreSQL as a uuid)
                     ‖ field(u64(originator_version))
                     ‖ field(topic)                    UTF-8
                     ‖ field(state) )                  the column's bytes, exactly as stored

Positions missing from the log (a PostgreSQL transaction that rolled back) are simply not
chained: the chain covers the events actually present.  CheckpointSealed events are
stored events like any other, so each is chained by the checkpoint after it.

A checkpoint seals the events in (previous_position, position]: ``links`` lists
``[p, hex(link(p))]`` for each of them, in order, ``count`` is their number, ``chain`` the
last link.  Its Ed25519 signature (RFC 8032, base64url without padding) is over

    field("authbus/checkpoint/v1") ‖ field(u64(previous_position)) ‖ field(previous_chain)
    ‖ field(u64(position)) ‖ field(chain) ‖ field(u64(count))
    ‖ field(SHA-256( u64(p) ‖ link(p)  for each entry of links ))

with chains as their 32 raw bytes.  The links are what let ``audit verify`` name the exact
first position that no longer matches instead of just the stretch between two checkpoints.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

GENESIS = "0" * 64
CHAIN_TAG = b"authbus/chain/v1"
CHECKPOINT_TAG = b"authbus/checkpoint/v1"


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def field(data: bytes) -> bytes:
    return u64(len(data)) + data


def link(previous: str, position: int, originator_id: UUID, originator_version: int, topic: str, state: bytes) -> str:
    """The chain value after the stored event at ``position`` (hex)."""
    digest = hashlib.sha256(field(CHAIN_TAG))
    for part in (
        bytes.fromhex(previous),
        u64(position),
        originator_id.bytes,
        u64(originator_version),
        topic.encode(),
        bytes(state),
    ):
        digest.update(field(part))
    return digest.hexdigest()


def links_digest(links: Iterable[Sequence[int | str]]) -> bytes:
    digest = hashlib.sha256()
    for position, value in links:
        digest.update(u64(int(position)) + bytes.fromhex(str(value)))
    return digest.digest()


def checkpoint_message(
    previous_position: int, previous_chain: str, position: int, chain: str, count: int, links: Iterable[Sequence[int | str]]
) -> bytes:
    """The bytes a checkpoint's signature is over."""
    return b"".join(
        field(part)
        for part in (
            CHECKPOINT_TAG,
            u64(previous_position),
            bytes.fromhex(previous_chain),
            u64(position),
            bytes.fromhex(chain),
            u64(count),
            links_digest(links),
        )
    )


class StoredRow(Protocol):
    """A stored event as the recorder returns it (eventsourcing's Notification)."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


def extend(previous: str, row: StoredRow) -> str:
    return link(previous, row.id, row.originator_id, row.originator_version, row.topic, row.state)


@dataclass(frozen=True)
class Divergence:
    """The first position where the stored log no longer matches what was sealed."""

    position: int
    reason: str


EDITED = "the stored event differs from the one sealed here (edited, or swapped with another position)"
MISSING = "the event sealed at this position is gone (deleted, or moved elsewhere)"
EXTRA = "an event the checkpoint did not seal (inserted, or moved here)"


def compare(rows: Iterable[StoredRow], sealed: Iterable[Sequence[int | str]], start: str) -> tuple[str, Divergence | None]:
    """Walk one checkpoint's stretch of the stored log beside the links it sealed.

    Returns the recomputed chain and the first divergence, if any.  Links are chained, so
    after the first difference every later one differs too: the first is the one to name.
    """
    chain = start
    expected: Iterator[Sequence[int | str]] = iter(sealed)
    for row in rows:
        entry = next(expected, None)
        if entry is None or row.id < int(entry[0]):
            return chain, Divergence(row.id, EXTRA)
        if row.id > int(entry[0]):
            return chain, Divergence(int(entry[0]), MISSING)
        chain = extend(chain, row)
        if chain != entry[1]:
            return chain, Divergence(row.id, EDITED)
    entry = next(expected, None)
    if entry is not None:
        return chain, Divergence(int(entry[0]), MISSING)
    return chain, None
