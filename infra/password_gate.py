"""argon2 work, shared fairly: the one thing an unauthenticated caller can make expensive.

* At most ``workers`` hashes or checks run at once, on threads of their own, so logins and
  password commands never hold the command worker or the event loop.
* Waiting work is served round-robin across tenants: a flood in one tenant delays another
  tenant's login by one turn at most.
* One login per username at a time (``exclusive``): the failure limit is checked and
  counted in order, however many arrive together.
* A login for a username that has no password (unknown, or a service) is not checked
  against a decoy hash: it takes its turn like any check, then waits as long as checks
  have been taking (``decoy``).  It looks the same from outside and burns no CPU, so a
  flood of made-up usernames costs nobody else anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from authbus.domain.errors import RateLimited
from authbus.infra.secrets import Passwords

# An argon2id hash of a random password with the parameters of real ones: what a check costs.
CALIBRATION_HASH = "$argon2id$v=19$m=65536,t=3,p=4$GynNOqIlFIClR/I5+FV69Q$5XBXEKi87JkTkD1EiwHGPMoph7oEGV7l14/phFV8S/4"
WAITING_PER_USERNAME = 16  # logins queued for one username beyond the one under way
EWMA_WEIGHT = 0.2


@dataclass
class _Job:
    run: Callable[[], Any] | None  # None: a decoy, which takes its turn but no thread
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class PasswordGate:
    def __init__(self, passwords: Passwords, workers: int = 1) -> None:
        self.passwords = passwords
        self.workers = workers
        self.running = 0
        self.most_running = 0  # never more than ``workers``
        self.done = 0  # hashes and checks run (decoys are not)
        self.seconds = 0.05  # what a check takes lately (EWMA), which a decoy waits
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="authbus-argon2")
        self._waiting: OrderedDict[str, deque[_Job]] = OrderedDict()  # by tenant, in turn order
        self._locks: dict[Any, tuple[asyncio.Lock, list[int]]] = {}

    async def calibrate(self) -> None:
        """One real check, so the first decoys wait as long as a check takes here."""
        started = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._pool, self.passwords.matches, "calibration", CALIBRATION_HASH)
        self.seconds = time.perf_counter() - started

    def close(self) -> None:
        self._pool.shutdown(wait=True)

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

    async def hash(self, tenant: str, password: str) -> str:
        return await self._turn(tenant, lambda: self.passwords.hash(password))

    async def matches(self, tenant: str, password: str, password_hash: str) -> bool:
        return await self._turn(tenant, lambda: self.passwords.matches(password, password_hash))

    async def decoy(self, tenant: str) -> bool:
        """What ``matches`` answers for a user with no password, in the time it takes."""
        await self._turn(tenant, None)
        await asyncio.sleep(self.seconds)
        return False

    async def _turn(self, tenant: str, run: Callable[[], Any] | None) -> Any:
        job = _Job(run)
        self._waiting.setdefault(tenant, deque()).append(job)
        self._pump()
        return await job.done

    def _pump(self) -> None:
        while self._waiting and self.running < self.workers:
            tenant, queue = next(iter(self._waiting.items()))
            job = queue.popleft()
            del self._waiting[tenant]
            if queue:  # back of the line: every other tenant waiting goes first
                self._waiting[tenant] = queue
            if job.run is None:
                job.done.set_result(None)
                continue
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            started = time.perf_counter()
            future = asyncio.get_running_loop().run_in_executor(self._pool, job.run)
            future.add_done_callback(lambda f, job=job, started=started: self._finished(job, f, started))

    def _finished(self, job: _Job, future: asyncio.Future[Any], started: float) -> None:
        self.running -= 1
        self.done += 1
        self.seconds += EWMA_WEIGHT * (time.perf_counter() - started - self.seconds)
        if not job.done.done():
            if future.exception() is not None:
                job.done.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                job.done.set_result(future.result())
        self._pump()
