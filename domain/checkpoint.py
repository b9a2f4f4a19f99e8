"""Checkpoint: a signed statement that the log, up to a position, hashes to a chain value.

See projections/chain.py for what is hashed and signed.  A checkpoint's id is derived from
the position its stretch starts after, so the checkpoints form one line: two sealers
racing to seal after the same position collide on version 1 and only one is stored.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


class Checkpoint(Aggregate):
    @event("CheckpointSealed")
    def __init__(
        self,
        id: UUID,
        position: int,
        chain: str,
        previous_position: int,
        previous_chain: str,
        count: int,
        links: list[list[int | str]],
        signature: str,
        public_key: str,
        actor: str,
        correlation_id: str,
    ) -> None:
        self.position = position
        self.chain = chain
        self.previous_position = previous_position
        self.previous_chain = previous_chain
        self.count = count
        self.links = links
        self.signature = signature
        self.public_key = public_key


def checkpoint_id(previous_position: int) -> UUID:
    """The id of the checkpoint that seals the stretch after ``previous_position``."""
    return uuid5(NAMESPACE_URL, f"authbus:checkpoint:{previous_position}")
