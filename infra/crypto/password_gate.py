"""argon2 work, shared fairly: the one thing an unauthenticated caller can make expensive.

* At most ``workers`` hashes or checks run at once, on threads of their own, so logins and
  password commands never hold the command worker or the event loop.
* Waiting work is served round-robin across callers (the connection or credential that
  asked, infra/node.py): a flood from one caller delays another's login by one turn at
  most, whatever tenants or usernames the flood names.
* One login per username at a time (``exclusive``): the failure limit is checked and
  counted in order, however many arrive together.
* A login for a username that has no password (unknown, or a service) is not checked
  against a decoy hash: it takes a turn and holds a worker exactly as long as checks take
  lately (``decoy``), without using the CPU.  So nothing another login sees (its own wait,
  its own turn) depends on whether a username exists, and a flood of made-up names costs
  no CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from authbus.domain.errors import RateLimited
from authbus.infra.crypto.kek import Passwords

# An argon2id hash of a random password with the parameters of real ones: what a check costs.
CALIBRATION_HASH = "$argon2id$v=19$m=65536,t=3,p=4$GynNOqIlFIClR/I5+FV69Q$5XBXEKi87JkTkD1EiwHGPMoph7oEGV7l14/phFV8S/4"
SERVED_KEPT = 4096  # callers remembered as served; beyond, only those still waiting
WAITING_PER_USERNAME = 16  # logins queued for one username beyond the one under way
IN_FLIGHT_PER_CALLER = 16
EWMA_WEIGHT = 0.2


@dataclass
class _Job:
    run: Callable[[], Any] | None  # None: a decoy, which takes its turn but no thread
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class PasswordGate:
    def __init__(self, passwords: Passwords, workers: int = 1) -> None:
        """``workers``: checks at once; on more than one, concurrent checks share the CPU
        and a decoy does not, a faint difference that the failure limit cuts short."""
        self.passwords = passwords
        self.workers = workers
        self.running = 0
        self.most_running = 0  # never more than ``workers``
        self.done = 0  # hashes and checks run (decoys are not)
        self.seconds = 0.05  # what a check takes lately (EWMA), which a decoy waits
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="authbus-argon2")
        self._waiting: dict[str, deque[_Job]] = {}  # by caller
        self._served: dict[str, int] = {}  # caller → the turn it last had
        self._turns = 0
        self._locks: dict[Any, tuple[asyncio.Lock, list[int]]] = {}
        self._in_flight: dict[str, int] = {}  # logins under way, by caller

    async def calibrate(self) -> None:
        """One real check, so the first decoys wait as long as a check takes here."""
        started = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._pool, self.passwords.matches, "calibration", CALIBRATION_HASH)
        self.seconds = time.perf_counter() - started

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @contextlib.contextmanager
    def caller_slot(self, caller: str) -> Iterator[None]:
        """At most ``IN_FLIGHT_PER_CALLER`` logins of one caller at once: the rest answer
        ``rate_limited`` at once, so a flood takes no room from anyone else's."""
        held = self._in_flight.get(caller, 0)
        if held >= IN_FLIGHT_PER_CALLER:
            raise RateLimited("too many logins at once from this connection: try again in a moment", field="username")
        self._in_flight[caller] = held + 1
        try:
            yield
        finally:
            left = self._in_flight[caller] - 1
            if left:
                self._in_flight[caller] = left
            else:
                del self._in_flight[caller]

    @contextlib.asynccontextmanager
    async def exclusive(self, key: Any) -> AsyncIterator[None]:
        """One holder of ``key`` (a tenant and username) at a time; ``rate_limited`` when too
        many wait for it."""
        lock, waiting = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        if waiting[0] > WAITING_PER_USERNAME:
            raise RateLimited("too many logins for this user at once: try again in a moment", field="username")
        waiting[0] += 1
        try:
            async with lock:
                yield
        finally:
            waiting[0] -= 1
            if waiting[0] == 0:
                self._locks.pop(key, None)

    async def hash(self, caller: str, password: str) -> str:
        return await self._turn(caller, lambda: self.passwords.hash(password))

    async def matches(self, caller: str, password: str, password_hash: str) -> bool:
        return await self._turn(caller, lambda: self.passwords.matches(password, password_hash))

    async def decoy(self, caller: str) -> bool:
        """What ``matches`` answers for a user with no password, as long and in the same turn."""
        await self._turn(caller, None)
        return False

    async def _turn(self, caller: str, run: Callable[[], Any] | None) -> Any:
        job = _Job(run)
        self._waiting.setdefault(caller, deque()).append(job)
        self._pump()
        return await job.done

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self.running < self.workers:
            # The caller served longest ago goes first: one that just had a turn waits for
            # every other, even when its work arrived first.
            caller = min(self._waiting, key=lambda c: self._served.get(c, -1))
            queue = self._waiting[caller]
            job = queue.popleft()
            if not queue:
                del self._waiting[caller]
            self._served[caller] = self._turns
            self._turns += 1
            if len(self._served) > SERVED_KEPT:
                self._served = {c: t for c, t in self._served.items() if c in self._waiting}
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            if job.run is None:  # a worker held, idle, as long as a check takes
                loop.call_later(self.seconds, self._finished, job, None, None)
                continue
            started = time.perf_counter()
            future = loop.run_in_executor(self._pool, job.run)
            future.add_done_callback(lambda f, job=job, started=started: self._finished(job, f, started))

    def _finished(self, job: _Job, future: asyncio.Future[Any] | None, started: float | None) -> None:
        self.running -= 1
        if future is not None and started is not None:
            self.done += 1
            self.seconds += EWMA_WEIGHT * (time.perf_counter() - started - self.seconds)
        if not job.done.done():
            if future is None:
                job.done.set_result(None)
            elif future.exception() is not None:
                job.done.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                job.done.set_result(future.result())
        self._pump()
