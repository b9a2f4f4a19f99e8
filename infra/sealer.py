"""Seals the log: a background task that appends signed CheckpointSealed events.

Every ``seal_interval`` seconds, when events other than checkpoints were stored since the
last checkpoint, it reads them (the raw stored rows, at most ``MAX_SEALED`` per
checkpoint so a checkpoint's ``links`` stay bounded), extends the chain of
projections/chain.py and appends a checkpoint signed with the service's Ed25519 key, whose
seed is derived from the KEK, so every instance holding the KEK signs with the same key.

Several instances: no lease.  A checkpoint's id is derived from the position its stretch
starts after (domain/checkpoint.py), so when two instances seal the same stretch the second
collides on that id in the store (IntegrityError) and appends nothing; it then picks the
winner's checkpoint up by its id and carries on from there.  The line of checkpoints never
forks, and a lost race costs one discarded hash computation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from authbus.domain.checkpoint import Checkpoint, checkpoint_id
from authbus.infra.crypto.keys import b64url
from authbus.infra.follower import wait_until
from authbus.infra.store import EventStore
from authbus.projections.chain import GENESIS, checkpoint_message, extend

log = logging.getLogger("authbus.sealer")
MAX_SEALED = 1000
CHECKPOINT_TOPIC = get_topic(Checkpoint.CheckpointSealed)
SYSTEM_ACTOR = "system"


def audit_key(seed: bytes) -> Ed25519PrivateKey:
    """The key checkpoints are signed with; ``seed`` is derive(kek, b"audit-seal")."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return b64url(key.public_key().public_bytes_raw())


class CheckpointSealer:
    def __init__(
        self,
        store: EventStore,
        seed: bytes,
        interval: float,
        max_sealed: int = MAX_SEALED,
        sealed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.sealed = sealed  # told after each checkpoint is stored, from the sealing thread
        self.interval = interval
        self.max_sealed = max_sealed
        self._key = audit_key(seed)
        self.public_key = public_key_b64(self._key)
        self.position = 0  # the last sealed position, and the chain there
        self.chain = GENESIS
        self._stopped = False
        self._wake = asyncio.Event()

    async def run(self) -> None:
        # Stopped by a flag (see infra/publisher.py): a cancel can be swallowed on 3.11.
        while not self._stopped:
            try:
                # A backlog is sealed in consecutive checkpoints without waiting in between.
                while not self._stopped and await asyncio.to_thread(self.seal_once):
                    pass
            except Exception as error:  # the store is away: try again next interval
                log.warning("sealing paused: %s", error)
            await wait_until(self._wake.wait(), self.interval)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def catch_up(self) -> None:
        """Follow the line of checkpoints already stored (by this or another instance)."""
        while True:
            try:
                checkpoint: Checkpoint = self.store.aggregate(checkpoint_id(self.position))
            except AggregateNotFoundError:
                return
            self.position, self.chain = checkpoint.position, checkpoint.chain

    def seal_once(self) -> bool:
        """Seal what follows the last checkpoint.  Synchronous (call it in a thread).

        Returns True when a full checkpoint was sealed and more events may be waiting.
        """
        self.catch_up()
        rows = self.store.recorder.select_notifications(start=self.position + 1, limit=self.max_sealed)
        # The last checkpoint is itself stored after what it seals; sealing nothing but
        # checkpoints would add one every interval to an idle log, for ever.
        if all(row.topic == CHECKPOINT_TOPIC for row in rows):
            return False
        chain, links = self.chain, []
        for row in rows:
            chain = extend(chain, row)
            links.append([row.id, chain])
        position = rows[-1].id
        message = checkpoint_message(self.position, self.chain, position, chain, len(links), links)
        checkpoint = Checkpoint(
            id=checkpoint_id(self.position),
            position=position,
            chain=chain,
            previous_position=self.position,
            previous_chain=self.chain,
            count=len(links),
            links=links,
            signature=b64url(self._key.sign(message)),
            public_key=self.public_key,
            actor=SYSTEM_ACTOR,
            correlation_id=f"seal-{position}",
        )
        try:
            self.store.save(checkpoint)
        except IntegrityError:  # another instance sealed this stretch first
            return False
        self.position, self.chain = position, chain
        self.sealed()
        return len(rows) == self.max_sealed
