"""Records credential use: a background task that turns the uses verify noted
(projections/memos.py ``Bearers.uses``) into PATUsed/KeyUsed events, in batches.

Every ``interval`` seconds, and once more when the node stops, it appends what was noted,
up to ``MAX_BATCH`` credentials per transaction.  The verify path only ever writes a
dict; a batch that fails (the store is away) is noted again for the next try.  Several
instances may note the same credential: the decision (domain/decisions/usage.py) records
one use per credential per minute whichever sees it first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from authbus.domain.decisions import usage
from authbus.infra.application import SYSTEM_ACTOR
from authbus.infra.follower import wait_until
from authbus.projections.memos import Bearers

log = logging.getLogger("authbus.uses")
MAX_BATCH = 500

Perform = Callable[[str, str, Callable[[Any], int]], Awaitable[tuple[int, int]]]


class UseRecorder:
    def __init__(self, bearers: Bearers, perform: Perform, interval: float) -> None:
        self.bearers = bearers
        self.perform = perform
        self.interval = interval
        self._stopped = False
        self._wake = asyncio.Event()

    async def run(self) -> None:
        # Stopped by a flag (see infra/publisher.py): a cancel can be swallowed on 3.11.
        while not self._stopped:
            await wait_until(self._wake.wait(), self.interval)
            await self.record()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def record(self) -> int:
        """Append every use noted so far; how many were recorded."""
        recorded = 0
        while self.bearers.uses:
            taken = self.bearers.take_uses(MAX_BATCH)
            uses = {i: (kind, datetime.fromtimestamp(at, UTC)) for i, (kind, at) in taken.items()}
            try:
                count, _ = await self.perform("record_uses", SYSTEM_ACTOR, functools.partial(usage.record_uses, uses=uses))
            except Exception as error:  # the store is away: keep them for the next try
                log.warning("recording credential use paused: %s", error)
                for credential_id, use in taken.items():
                    self.bearers.uses.setdefault(credential_id, use)
                return recorded
            recorded += count
        return recorded
