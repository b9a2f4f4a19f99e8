"""Publishes every stored event, in log order, to JetStream with ``Nats-Msg-Id`` = position.

One instance publishes at a time: it holds a lease, a key in a KeyValue bucket whose
entries expire unless renewed, so a crashed leader is replaced within the lease time.  A
new leader resumes after the last position the stream itself holds, so nothing is lost
across crashes or NATS restarts; a republish is absorbed by the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from authbus.infra.follower import wait_until
from authbus.infra.store import EventStore
from authbus.projections.event_feed import describe
from authbus.projections.read_model import ReadModel

log = logging.getLogger("authbus.publisher")
LEASE_KEY = "publisher"
PAGE = 500
FRESH_KEPT = 10_000  # events held for publishing from memory; a longer backlog is read from the store


def lease_bucket(stream: str) -> str:
    return f"{stream}_LEASE"


def stream_name(prefix: str) -> str:
    return "AUTHBUS_EVENTS" if prefix == "auth" else f"AUTHBUS_EVENTS_{prefix.upper().replace('.', '_')}"


class Publisher:
    def __init__(
        self,
        nc: Client,
        store: EventStore,
        model: ReadModel,
        prefix: str,
        advanced: asyncio.Event,
        lease_seconds: float = 10.0,
        duplicate_window: float = 120.0,
    ) -> None:
        self.nc = nc
        self.store = store
        self.model = model
        self.prefix = prefix
        self.stream = stream_name(prefix)
        self.advanced = advanced
        self.lease_seconds = lease_seconds
        self.duplicate_window = duplicate_window
        self.instance = uuid.uuid4().hex
        self.published = 0  # the last position the stream holds, once leading
        self.leading = False
        # Where a purged stream goes on from: the last position this instance knows was
        # published, or came before it started (see _stream_head).
        self._known_published = model.position
        self._stopped = False
        self._revision = 0
        self._encode: Callable[[object], bytes] = msgspec.json.Encoder().encode
        # What the follower folded after position ``_fresh_from``, already decoded: while
        # the feed keeps up it publishes from here instead of reading the store again.
        self._fresh: deque[tuple[int, Any]] = deque()
        self._fresh_from: int | None = None

    def offer(self, batch: list[tuple[int, Any]]) -> None:
        """A batch the follower just folded (Follower.listeners)."""
        if self._fresh_from is None:
            return
        self._fresh.extend(batch)
        if len(self._fresh) > FRESH_KEPT:  # falling behind: catch up from the store
            self._forget_fresh()

    def _forget_fresh(self) -> None:
        self._fresh.clear()
        self._fresh_from = None

    async def run(self) -> None:
        # Stopped by a flag, not by cancellation alone: nats.py and Python 3.11's wait_for
        # can swallow a cancel that lands as a reply arrives, and the loop would run on.
        js = self.nc.jetstream()
        while not self._stopped:
            try:
                kv = await self._setup(js)
                while not self._stopped:
                    if await self._lead(kv):
                        await self._publish_pending(js, kv)
                    await wait_until(self.advanced.wait(), self.lease_seconds / 3)
                    self.advanced.clear()
            except Exception as error:  # NATS away or restarting: lead again when it is back
                log.warning("event feed paused: %s", error)
                if self.leading and self.published >= 0:
                    self._known_published = self.published
                self.leading = False
                self._forget_fresh()
                await wait_until(asyncio.sleep(1.0), 1.0)
        await self._release()

    def stop(self) -> None:
        self._stopped = True
        self.advanced.set()

    async def _release(self) -> None:
        """Give the lease up at shutdown, so a standby takes over at once."""
        if not self.leading:
            return
        try:
            kv = await self.nc.jetstream().key_value(self._bucket)
            await kv.delete(LEASE_KEY, last=self._revision)
        except Exception as error:
            log.info("lease not released (%s); it expires by itself", error)
            self.leading = False
            return
        log.info("this instance (%s) gave up the event-feed lease of %s", self.instance, self.stream)
        self.leading = False

    @property
    def _bucket(self) -> str:
        return lease_bucket(self.stream)

    async def _setup(self, js: JetStreamContext) -> KeyValue:
        subjects = [f"{self.prefix}.v1.events.>"]
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(StreamConfig(name=self.stream, subjects=subjects, duplicate_window=self.duplicate_window))
        return await js.create_key_value(bucket=self._bucket, ttl=self.lease_seconds, history=1)

    async def _lead(self, kv: KeyValue) -> bool:
        try:
            if self.leading:
                self._revision = await kv.update(LEASE_KEY, self.instance.encode(), last=self._revision)
            else:
                self._revision = await kv.create(LEASE_KEY, self.instance.encode())
                self.leading = True
                self.published = -1  # read the stream's head before publishing
                log.info("this instance (%s) now leads the event feed %s", self.instance, self.stream)
        except KeyWrongLastSequenceError:
            if self.leading:
                log.warning("this instance (%s) lost the event-feed lease of %s", self.instance, self.stream)
            self.leading = False
            # Another instance leads, and publishes what it has folded: about this much.
            self._known_published = self.model.position
            self._forget_fresh()
        return self.leading

    async def _stream_head(self, js: JetStreamContext) -> int:
        """The last position the stream holds: 0 for a new stream, which gets the whole log.
        A purged one (emptied, its sequence kept) no longer says where it stopped.  It goes on
        after the last position this instance knows was published: its read model's position
        when it started, or when it last found another instance leading.  So events stored
        while this instance came up or took over are not skipped, and what came before is
        not refilled: that would race the duplicate window, and whoever purged wanted it short."""
        info = await js.stream_info(self.stream)
        if not info.state.last_seq:
            return 0
        if not info.state.messages:
            log.warning("stream %s was purged: publishing after position %d", self.stream, self._known_published)
            return self._known_published
        last = await js.get_msg(self.stream, seq=info.state.last_seq)
        return int((last.headers or {}).get("Nats-Msg-Id", 0))

    async def _publish_pending(self, js: JetStreamContext, kv: KeyValue) -> None:
        if self.published < 0:
            self.published = await self._stream_head(js)
            if self.published > self.model.position:  # said once per lease: nothing is published
                log.warning(
                    "stream %s holds position %d, beyond this store's %d: it belongs to another store or to a "
                    "newer backup of this one; delete the stream to publish this store's log",
                    self.stream,
                    self.published,
                    self.model.position,
                )
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        # Publish only what the read model has folded: it names every event's tenant.
        if self._fresh_from is None:
            self._fresh_from = self.model.position  # from here on the follower hands events over
        while self.published < self.model.position and self.leading and not self._stopped:
            if loop.time() - renewed > self.lease_seconds / 3:  # a long backlog keeps the lease
                await self._lead(kv)
                renewed = loop.time()
            events = self._take_fresh() if self._fresh_from is not None and self._fresh_from <= self.published else None
            if events is None:
                events = await asyncio.to_thread(self.store.read_events, self.published + 1, PAGE, self.model.position)
            if not events:
                return
            for position, event in events:
                subject, payload = describe(self.model, position, event, self.prefix)
                await js.publish(subject, self._encode(payload), stream=self.stream, headers={"Nats-Msg-Id": str(position)})
                self.published = position

    def _take_fresh(self) -> list[tuple[int, Any]]:
        fresh = self._fresh
        while fresh and fresh[0][0] <= self.published:
            fresh.popleft()
        return [fresh.popleft() for _ in range(min(PAGE, len(fresh)))]
