"""Keeps a read model current with the event store.

Start-up folds the log in large pages before anything is served.  Afterwards a thread
follows the log — PostgreSQL through the eventsourcing LISTEN/NOTIFY subscription, SQLite
by polling, nudged at once after this process's own writes — decodes events off the
event loop, and hands them to the loop, which alone mutates the read model.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from authbus.infra.store import EventStore
from authbus.projections.read_model import ReadModel

log = logging.getLogger("authbus.follower")
PAGE = 2000
WATCH_SECONDS = 0.5  # how often a LISTEN follower checks the log's head for what it missed


def fold(store: EventStore, model: ReadModel, page: int = PAGE) -> None:
    """Fold every event after the model's position into it, synchronously."""
    while True:
        batch = store.read_events(model.position + 1, page)
        model.apply_all(batch)
        if len(batch) < page:
            return


async def wait_until(awaitable: Awaitable[object], timeout: float) -> None:
    """Wait for ``awaitable`` at most ``timeout`` seconds.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives as the
    awaited thing completes, and a task told to stop runs on forever.
    """
    waiter = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        if not waiter.done():
            waiter.cancel()


def _give_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Follower:
    def __init__(self, store: EventStore, model: ReadModel, loop: asyncio.AbstractEventLoop, listen: bool) -> None:
        self.store = store
        self.model = model
        self.loop = loop
        self.listen = listen
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread = threading.Thread(target=self._run, name="authbus-follower", daemon=True)
        self._watcher = threading.Thread(target=self._watch, name="authbus-follower-watch", daemon=True)
        self.missed_wakeups = 0  # times the watch found the head ahead with no wake-up
        self.head_seen = 0  # the log's head at the watch's last look
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._subscription: Any = None
        self._last_handed = model.position
        self.advanced = asyncio.Event()  # set whenever the read model moves on
        self.listeners: list[Callable[[list[tuple[int, Any]]], None]] = []  # each batch, once folded
        # False from the moment following the store fails until it works again: commands
        # then answer `unavailable` at once instead of each waiting out the pool's retries.
        self.store_reachable = True

    def start(self) -> None:
        self._last_handed = self.model.position
        self._thread.start()
        self._watcher.start()

    def stop(self) -> bool:
        """True once the thread has ended: every batch it handed the loop is applied before
        a coroutine awaiting this in a thread resumes, so the model then stays still."""
        self._stop.set()
        self._nudge.set()
        if self._subscription is not None:
            self._subscription.stop()
        self._thread.join(timeout=5)
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        return not self._thread.is_alive()

    def nudge(self) -> None:
        """Something was just written: look now instead of at the next poll."""
        self._nudge.set()

    async def reached(self, position: int, timeout: float) -> bool:
        """Wait until the read model has folded ``position``; False if it did not in time."""
        if self.model.position >= position:
            return True
        # Every command's reply waits here: a future and a timer, not a task of its own.
        future: asyncio.Future[None] = self.loop.create_future()
        heapq.heappush(self._waiters, (position, next(self._tiebreak), future))
        self.nudge()
        timer = self.loop.call_later(timeout, _give_up, future)
        try:
            await future
        finally:
            timer.cancel()
        return self.model.position >= position

    def _apply(self, batch: list[tuple[int, Any]]) -> None:
        self.model.apply_all(batch)
        for listener in self.listeners:
            listener(batch)
        self.advanced.set()
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.model.position:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_result(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for batch in self._batches():
                    self.loop.call_soon_threadsafe(self._apply, batch)
            except Exception as error:  # the store went away: say so, back off, follow again
                if self.store_reachable:
                    log.warning("following the event store failed (%s); retrying every second", error)
                self.store_reachable = False
                self._stop.wait(1.0)

    def _watch(self) -> None:
        """LISTEN/NOTIFY can miss a wake-up: eventsourcing's subscription reads the log once
        before its LISTEN is in place, so a commit in between is neither read nor notified.
        The log's head, read every WATCH_SECONDS, shows it: still ahead of what was handed
        on twice in a row, with nothing handed on or read between, the subscription is woken
        as a NOTIFY would wake it.  Never stopped and made again: a read that is only slow
        would then start over, and might never finish.  (A polling follower has no
        subscription: there the watch only keeps ``head_seen`` for the metrics.)"""
        seen = -1
        while not self._stop.wait(WATCH_SECONDS):
            try:
                head = self.store.recorder.max_notification_id() or 0
            except Exception:  # the follower says so when the store is away
                continue
            self.head_seen = head
            handed = self._last_handed
            if head <= handed:
                seen = -1
                continue
            if handed != seen:  # behind, but maybe only by what is on its way
                seen = handed
                continue
            if self._subscription is not None and self._wake(self._subscription, handed):
                log.warning("the event store's head is at %d, this follower at %d with no wake-up: reading again", head, handed)
                self.missed_wakeups += 1
            seen = -1

    @staticmethod
    def _wake(subscription: Any, handed: int) -> bool:
        """Have the subscription read the log again, as a NOTIFY does; False when a read is
        under way or has brought what is missing (it is on its way).  Reaches into
        eventsourcing's ListenNotifySubscription (9.x), which has no public way to do this;
        without those parts the subscription is stopped and the follower subscribes anew."""
        notified = getattr(subscription, "_has_been_notified", None)
        read = getattr(subscription, "_last_notification_id", None)
        if not isinstance(notified, threading.Event) or not (read is None or isinstance(read, int)):
            subscription.stop()
            return True
        if notified.is_set() or (read or 0) > handed:
            return False
        notified.set()
        return True

    def _reached_store(self) -> None:
        if not self.store_reachable:
            log.warning("the event store is reachable again")
        self.store_reachable = True

    def _batches(self) -> Iterator[list[tuple[int, Any]]]:
        if self.listen:
            to_event: Callable[[Any], Any] = self.store.mapper.to_domain_event
            with self.store.recorder.subscribe(gt=self._last_handed) as subscription:
                self._subscription = subscription
                self._reached_store()
                for n in subscription:
                    batch = [(n.id, to_event(n))]  # decoded first: one that fails is read again, not skipped
                    self._last_handed = n.id
                    yield batch
                    if self._stop.is_set():
                        return
            return
        while not self._stop.is_set():
            self._nudge.clear()  # before reading, so a nudge during the read is not lost
            batch = self.store.read_events(self._last_handed + 1, PAGE)  # decoded first, as above
            self._reached_store()
            if batch:
                self._last_handed = batch[-1][0]
                yield batch
                continue
            self._nudge.wait(0.25)


class HeadWatch:
    """The store's head, as read no earlier than a question about it was asked.

    ``beyond`` tells whether a position lies past the log's head, for a ``min_position``
    that no instance could have answered yet (answered ``stale`` at once instead of waiting
    out the consistency wait).  Readings are shared: whoever asks while one is under way
    waits for the next, and readings start at most every ``interval`` seconds, so a flood of
    such requests costs the store a few reads a second and nobody a false ``stale``.
    """

    def __init__(self, read: Callable[[], int | None], interval: float = 0.02, timeout: float = 2.0) -> None:
        self._read = read
        self.interval = interval
        self.timeout = timeout
        self.value = 0
        self.readings = 0
        self._failed = False
        self._started = float("-inf")
        self._reading: asyncio.Future[None] | None = None

    async def beyond(self, position: int) -> bool:
        if position <= self.value:
            return False
        asked = time.monotonic()
        while self._started < asked:  # no reading begun since the question: wait for one that has
            if self._reading is None or self._reading.done():
                pause = self._started + self.interval - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                if self._reading is None or self._reading.done():
                    self._started = time.monotonic()
                    self._reading = asyncio.ensure_future(self._take())
            reading = self._reading  # another may begin while this one is awaited
            await wait_until(asyncio.shield(reading), self.timeout)
            if not reading.done():  # a stalled store: say nothing, let the wait decide
                return False
        # The store away: nothing is known to be beyond, and the wait decides as before.
        return not self._failed and position > self.value

    async def _take(self) -> None:
        self.readings += 1
        try:
            head = await asyncio.to_thread(self._read)
        except Exception:
            self._failed = True
            return
        self._failed = False
        self.value = max(self.value, head or 0)
