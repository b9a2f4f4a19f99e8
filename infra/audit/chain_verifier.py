"""The chain over the stored log recomputed (``authbus audit verify``, infra/audit/verify.py),
every checkpoint checked (projections/chain.py defines both), naming the first position that no longer
matches what was sealed.

Checkpoints are read in stored order; each must continue from the one before it.  When one
is not where the scan expects it (its row was moved or deleted), its deterministic id finds
it again; when it is gone, the stretch it sealed is still checked against the next
checkpoint's ``previous_chain``, though then only the stretch, not the row, can be named.
Memory stays flat: the log is read a page at a time and at most one checkpoint's links
(at most infra.sealer.MAX_SEALED) are held.  Events after the last checkpoint are not
sealed yet and cannot be checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.application import AggregateNotFoundError

from authbus.domain.checkpoint import Checkpoint, checkpoint_id
from authbus.infra.audit.log import head
from authbus.infra.crypto.keys import unb64url
from authbus.infra.sealer import CHECKPOINT_TOPIC
from authbus.infra.store import EventStore
from authbus.projections.chain import GENESIS, Divergence, StoredRow, checkpoint_message, compare, extend

PAGE = 1000
CHECKPOINT_PAGE = 16  # checkpoint rows carry up to MAX_SEALED links each


class Tampered(Exception):
    def __init__(self, divergence: Divergence) -> None:
        super().__init__(f"position {divergence.position}: {divergence.reason}")
        self.divergence = divergence


@dataclass
class Verdict:
    ok: bool
    sealed_position: int  # the last position a verified checkpoint sealed
    checkpoints: int
    events: int  # stored events those checkpoints cover
    head: int
    key_source: str  # what the signatures were checked against: kek, public-key or log
    position: int | None = None  # the first position that no longer matches
    reason: str | None = None


def rows(store: EventStore, after: int, upto: int | None, topics: tuple[str, ...] = (), page: int = PAGE) -> Iterator[Any]:
    """Stored rows in (after, upto], a page at a time."""
    start = after + 1
    while upto is None or start <= upto:
        batch = store.recorder.select_notifications(start=start, limit=page, stop=upto, topics=topics)
        yield from batch
        if len(batch) < page:
            return
        start = batch[-1].id + 1


class Verifier:
    def __init__(self, store: EventStore, public_key: bytes | None, advance: Callable[[int], None] = lambda _: None) -> None:
        self.store = store
        self.pinned = Ed25519PublicKey.from_public_bytes(public_key) if public_key is not None else None
        self.advance = advance
        self.first_key: str | None = None  # without a pinned key: every checkpoint must use the first one's
        self.position, self.chain = 0, GENESIS
        self.checkpoints = self.events = 0

    def run(self) -> None:
        for row in rows(self.store, 0, None, (CHECKPOINT_TOPIC,), CHECKPOINT_PAGE):
            checkpoint = self._decode(row)
            if checkpoint.id != checkpoint_id(checkpoint.previous_position):
                raise Tampered(Divergence(row.id, "a checkpoint whose id does not match the stretch it seals (edited)"))
            self._check_signature(checkpoint, row.id)  # before anything it says steers the walk
            if checkpoint.previous_position < self.position:
                continue  # already verified: it was found through its id, out of stored order
            while checkpoint.previous_position > self.position:
                self._bridge(checkpoint, row.id)
            self._settle(checkpoint, row.id)

    def _decode(self, row: StoredRow) -> Checkpoint:
        try:
            event = self.store.mapper.to_domain_event(row)
            return event.mutate(None)
        except Exception:
            raise Tampered(Divergence(row.id, "an unreadable checkpoint (edited)")) from None

    def _bridge(self, later: Checkpoint, at: int) -> None:
        """The checkpoint after ``self.position`` is not the next one stored: find it by id."""
        try:
            missing: Checkpoint = self.store.aggregate(checkpoint_id(self.position))
        except AggregateNotFoundError:
            missing = None  # type: ignore[assignment]
        except Exception:
            raise Tampered(Divergence(self.position + 1, "the checkpoint sealing what follows is unreadable (edited)")) from None
        if missing is not None and missing.position <= later.previous_position:
            self._check_signature(missing, self.position + 1)
            self._settle(missing, None)
            return
        # Deleted: its stretch is still bound by the next checkpoint's previous_chain.
        chain, first, count = self.chain, None, 0
        for row in rows(self.store, self.position, later.previous_position):
            first, count = first or row.id, count + 1
            chain = extend(chain, row)
        if chain != later.previous_chain:
            raise Tampered(
                Divergence(
                    first or self.position + 1,
                    f"the log in ({self.position}, {later.previous_position}] differs from what the checkpoint at "
                    f"{at} sealed; the checkpoint listing those events is missing, so the exact row cannot be named",
                )
            )
        self.position, self.chain = later.previous_position, chain
        self.events += count
        self.advance(self.position)

    def _settle(self, checkpoint: Checkpoint, at: int | None) -> None:
        """Check one signed checkpoint that continues from ``self.position``, and the rows it seals."""
        where = at if at is not None else self.position + 1
        if checkpoint.position <= checkpoint.previous_position or checkpoint.count != len(checkpoint.links):
            raise Tampered(Divergence(where, "a malformed checkpoint (forged)"))  # and no endless loop on it
        if checkpoint.previous_chain != self.chain:
            raise Tampered(Divergence(where, "a checkpoint that does not continue the chain (forged)"))
        chain, divergence = compare(rows(self.store, self.position, checkpoint.position), checkpoint.links, self.chain)
        if divergence is not None:
            raise Tampered(divergence)
        if chain != checkpoint.chain:
            raise Tampered(Divergence(where, "a checkpoint whose links do not end in its chain (forged)"))
        self.position, self.chain = checkpoint.position, checkpoint.chain
        self.checkpoints += 1
        self.events += checkpoint.count
        self.advance(self.position)

    def _check_signature(self, checkpoint: Checkpoint, where: int) -> None:
        message = checkpoint_message(
            checkpoint.previous_position,
            checkpoint.previous_chain,
            checkpoint.position,
            checkpoint.chain,
            checkpoint.count,
            checkpoint.links,
        )
        try:
            key = self.pinned
            if key is None:
                self.first_key = self.first_key or checkpoint.public_key
                if checkpoint.public_key != self.first_key:
                    raise InvalidSignature
                key = Ed25519PublicKey.from_public_bytes(unb64url(checkpoint.public_key))
            key.verify(unb64url(checkpoint.signature), message)
        except (InvalidSignature, ValueError):
            raise Tampered(Divergence(where, "a checkpoint whose signature does not verify (forged or edited)")) from None


def verify_log(store: EventStore, public_key: bytes | None, advance: Callable[[int], None] = lambda _: None) -> Verdict:
    """Verify the whole stored log.  ``public_key``: the raw Ed25519 key to pin, or None to
    trust the key the first checkpoint names (which only proves the log is self-consistent)."""
    last = head(store)
    verifier = Verifier(store, public_key, advance)
    source = "log" if public_key is None else "pinned"
    try:
        verifier.run()
    except Tampered as error:
        return Verdict(
            False,
            verifier.position,
            verifier.checkpoints,
            verifier.events,
            last,
            source,
            error.divergence.position,
            error.divergence.reason,
        )
    return Verdict(True, verifier.position, verifier.checkpoints, verifier.events, last, source)
