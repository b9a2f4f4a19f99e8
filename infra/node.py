"""One authbus instance: event store, read model, follower, command writer, NATS service.

Longer than most modules because it is where the parts meet, and each meeting is kept in
view: the order they start and stop in, the lanes requests wait in, the paths a command,
a login and a read take to the store, and what health and the metrics read off them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import Any, TypeVar
from uuid import UUID

import nats
from nats.aio.client import Client
from nats.micro.service import Service

from authbus.domain.commands import Command
from authbus.domain.decisions import logins, signups
from authbus.domain.errors import Conflict, Unavailable
from authbus.domain.policy import Actor
from authbus.domain.scopes import Scope
from authbus.domain.unit_of_work import UnitOfWork
from authbus.domain.user import User
from authbus.handlers import callout
from authbus.handlers.metrics import RequestStats
from authbus.handlers.service import QUEUE_GROUP, VERSION, start_service, subjects
from authbus.infra.application import AGAIN, AuthbusApplication, Decided, Submitted
from authbus.infra.crypto.kek import Passwords
from authbus.infra.crypto.password_gate import PasswordGate
from authbus.infra.follower import Follower, HeadWatch, wait_until
from authbus.infra.group_commit import GroupCommit
from authbus.infra.http_server import HttpEdge
from authbus.infra.nats.bus_guard import BusGuard
from authbus.infra.nats.callout_config import callout_keys
from authbus.infra.nats.sync import sync_with_server
from authbus.infra.observability.prometheus import MetricsServer
from authbus.infra.publisher import Publisher
from authbus.infra.sealer import CheckpointSealer, audit_key, public_key_b64
from authbus.infra.settings import Settings
from authbus.infra.signup_limits import SignupLimits
from authbus.infra.snapshot import restore_read_model, write_snapshot
from authbus.infra.store import EventStore, is_postgres
from authbus.infra.store_unit import PasswordWork, PasswordWorkNeeded, StoreUnitOfWork
from authbus.infra.use_recorder import UseRecorder
from authbus.projections.memos import Bearers, Views
from authbus.projections.queries import signing_key_for
from authbus.projections.read_model import ReadModel

log = logging.getLogger("authbus")
COMMAND_WRITERS = 2  # groups of commands decided and appended at once, on PostgreSQL (SQLite has one writer)
HEALTH_READ_SECONDS = 2.0  # a store slower than this to tell its head counts as unreachable
MAX_IN_FLIGHT = 256  # requests running apart; beyond this NATS holds them in the subscription
MAX_WAITING = 128  # of them, waiting for a min_position; beyond this one answers `stale` at once
MAX_LOGINS_IN_FLIGHT = 256  # logins and their kin, apart: a flood of them leaves commands their room


LOGIN_ATTEMPTS = 50  # decisions of one login-family request that lose a race before `unavailable`
PASSWORD_ROUNDS = 4  # a command's decisions, each after the password work the last one asked for
T = TypeVar("T")
R = TypeVar("R")  # what a decision returns: a command's result dict, a login's outcome


async def _log_nats_error(error: Exception) -> None:
    log.warning("NATS: %s", error)


async def _log_reconnect() -> None:
    log.warning("NATS reconnected")


class Node:
    """Implements handlers.backend.Backend."""

    def __init__(self, settings: Settings, app: AuthbusApplication) -> None:
        self.settings = settings
        self.app = app
        self.store: EventStore = app
        self.model = ReadModel()  # replaced by the restored one in start(), before anything holds it
        # What verify remembers: beside the model, never snapshotted.
        self.bearers, self.views = Bearers(notes_uses=settings.use_interval > 0), Views()
        self._snapshot_position = 0  # of the snapshot last loaded or written
        self.consistency_wait = settings.consistency_wait
        self.nc: Client | None = None
        self.service: Service | None = None
        self.callout_keys = callout_keys(settings)
        self.stats = RequestStats([*subjects(settings.subject_prefix), *([callout.ENDPOINT] if self.callout_keys else [])])
        self.metrics: MetricsServer | None = None
        self.http: HttpEdge | None = None
        self.issuer = settings.issuer
        self._follower: Follower | None = None
        self.publisher: Publisher | None = None
        self.guard: BusGuard | None = None  # closes revoked connections, with a system account connection
        self.sealer: CheckpointSealer | None = None
        self.uses: UseRecorder | None = None
        self._parts = AsyncExitStack()  # what start() started, for stop() to stop in reverse
        self.audit_public_key = public_key_b64(audit_key(app.keys.audit_seed))  # auth.v1.audit.public_key
        self.keys = app.keys.keyring
        self.challenges = app.keys.challenges
        self.signups = SignupLimits()
        self._stopping = False
        self._started = time.monotonic()
        # Commands go to the writer in groups, one transaction each.  On PostgreSQL a second
        # group is decided while the first commits; SQLite has one writer anyway.
        writers = COMMAND_WRITERS if is_postgres(settings.database_url) else 1
        self._worker = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="authbus-commands")
        self._commands = GroupCommit(app, self._worker, writers)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._lanes = {"default": asyncio.Semaphore(MAX_IN_FLIGHT), "login": asyncio.Semaphore(MAX_LOGINS_IN_FLIGHT)}
        self._waiting = 0  # requests waiting for their min_position
        self.head = HeadWatch(self.store.recorder.max_notification_id, timeout=HEALTH_READ_SECONDS)
        # Logins read and append on threads of their own; argon2 runs in the gate, fairly.
        # A failed password is recorded on a thread apart, so a flood of failures never
        # queues ahead of a login that succeeds.
        self._logins = ThreadPoolExecutor(max_workers=2, thread_name_prefix="authbus-logins")
        self._failures = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authbus-login-failures")
        self._password_commands = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authbus-password-commands")
        self.gate = PasswordGate(Passwords(), workers=max(1, (os.cpu_count() or 2) - 1))

    async def _log_disconnect(self) -> None:
        if not self._stopping:
            log.warning("NATS disconnected; reconnecting")

    def now(self) -> float:
        return time.time()

    async def start(self) -> Node:
        """Start the parts in order; each one started is stopped by ``stop()`` in the reverse
        order, and a start that fails stops at once what it had started."""
        try:
            await self._start(self._parts)
        except BaseException:  # leave nothing listening or running behind a failed start
            await self._parts.aclose()
            raise
        return self

    async def _start(self, parts: AsyncExitStack) -> None:
        loop = asyncio.get_running_loop()
        started = self._started = time.monotonic()
        if self.settings.metrics_port is not None:  # first: a port taken fails the start at once
            self.metrics = await MetricsServer(
                self.settings.metrics_host, self.settings.metrics_port, self.stats, self.gauges
            ).start()
            parts.push_async_callback(self.metrics.stop)
        parts.callback(self._release_threads)
        tail = await loop.run_in_executor(self._worker, self._restore)
        # What is loaded by now (the code, the restored read model) lives as long as the
        # process: the collector's full passes need not walk it again and again.  Each such
        # walk was a pause in every reply under way (bench: create_pat p99 121 → 66 ms).
        gc.collect()
        gc.freeze()
        await self.gate.calibrate()
        log.info(
            "read model at position %d in %.2f s, from snapshot at %d + %d tail events",
            self.model.position,
            time.monotonic() - started,
            self.model.position - tail,
            tail,
        )
        follower = self._follower = Follower(self.store, self.model, loop, listen=is_postgres(self.settings.database_url))
        follower.listeners.append(self._forget_deleted)
        follower.start()
        parts.push_async_callback(self._stop_following, follower)
        nc = self.nc = await nats.connect(
            self.settings.nats_url,
            name="authbus",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=_log_nats_error,
            disconnected_cb=self._log_disconnect,
            reconnected_cb=_log_reconnect,
        )
        parts.push_async_callback(self._stop_serving, nc)
        if self.settings.event_feed:  # before serving: it notes the position it starts from
            self.publisher = Publisher(
                nc,
                self.store,
                self.model,
                self.settings.subject_prefix,
                follower.advanced,
                lease_seconds=self.settings.feed_lease_seconds,
            )
            follower.listeners.append(self.publisher.offer)
        self.service = await start_service(nc, self, self.settings.subject_prefix)
        if self.callout_keys is not None:
            await self.service.add_endpoint(
                name=callout.ENDPOINT,
                subject=callout.SUBJECT,
                handler=callout.callout(self, self.callout_keys),
                queue_group=QUEUE_GROUP,
            )
            await self._guard_the_bus(parts, follower, self.callout_keys)
        await sync_with_server(nc)  # the server holds every subscription before start() returns
        if self.settings.http_port is not None:
            self.http = await HttpEdge(self, self.settings.http_host, self.settings.http_port).start()
            parts.push_async_callback(self.http.stop)
        if self.publisher is not None:
            self._background(parts, self.publisher.stop, self.publisher.run(), "authbus-event-feed")
        if self.settings.seal_interval > 0:
            # Nudged like a command's write: the read model folds the checkpoint at once
            # rather than at the next poll, so health shows no lag that is only the sealer's.
            self.sealer = CheckpointSealer(
                self.store, self.app.keys.audit_seed, self.settings.seal_interval, sealed=follower.nudge
            )
            self._background(parts, self.sealer.stop, self.sealer.run(), "authbus-sealer")
        if self.settings.use_interval > 0:
            self.uses = UseRecorder(self.bearers, self.perform, self.settings.use_interval)
            self._background(parts, self.uses.stop, self.uses.run(), "authbus-uses")

    @staticmethod
    def _background(parts: AsyncExitStack, stop: Callable[[], None], run: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``run`` as a task until stop(): then ``stop`` asks it to end, and it has 10 s."""
        task = asyncio.create_task(run, name=name)

        async def stopped() -> None:
            stop()
            await wait_until(asyncio.shield(task), 10.0)
            task.cancel()

        parts.push_async_callback(stopped)

    def _forget_deleted(self, batch: list[tuple[int, Any]]) -> None:
        """A user deleted through another instance: its data key, cached here, is gone too."""
        deleted = [event.originator_id for _, event in batch if isinstance(event, User.UserDeleted)]
        if deleted:
            self.store.personal_keys.forget(deleted)

    def on_fold(self, listener: Callable[[list[tuple[int, Any]]], None]) -> None:
        """Call ``listener`` on the loop with every batch folded into the read model, once
        the model holds it (the bench times convergence with it)."""
        assert self._follower is not None, "start the node first"
        self._follower.listeners.append(listener)

    async def _guard_the_bus(self, parts: AsyncExitStack, follower: Follower, keys: callout.CalloutKeys) -> None:
        if not self.settings.nats_system_url:
            log.warning(
                "no AUTHBUS_NATS_SYSTEM_URL: a revoked credential's bus connections stay open until their JWT "
                "expires (at most %s s)",
                self.settings.callout_lifetime,
            )
            return

        async def resync() -> None:
            if self.guard is not None:
                await self.guard.resync()

        system_nc = await nats.connect(
            self.settings.nats_system_url,
            name="authbus-system",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=_log_nats_error,
            reconnected_cb=resync,
        )
        parts.push_async_callback(system_nc.close)
        self.guard = BusGuard(system_nc, self.model, (keys.client_account, keys.service_account), lambda: self.now())
        await self.guard.start()
        parts.push_async_callback(self.guard.stop)
        follower.listeners.append(self.guard.offer)

    async def stop(self) -> None:
        """Stop taking requests, let in-flight ones finish, then release the store."""
        self._stopping = True
        await self._parts.aclose()
        self.store.close()

    async def _stop_serving(self, nc: Client) -> None:
        try:
            if self.service is not None:
                await self.service.stop()
            if self._in_flight:  # let commands under way finish and answer
                await asyncio.wait(set(self._in_flight), timeout=30)
            if not nc.is_closed:
                await nc.drain()
        except Exception as error:  # NATS already gone: nothing left to drain
            log.warning("NATS was not drained cleanly: %s", error)
            await nc.close()

    async def _stop_following(self, follower: Follower) -> None:
        quiescent = await asyncio.to_thread(follower.stop)
        # Pickled in a thread while the loop runs on: only once nothing applies events to it.
        if quiescent and self.settings.snapshot_every > 0 and self.model.position > self._snapshot_position:
            try:
                await asyncio.to_thread(self._write_snapshot)
            except Exception as error:  # the next start folds a longer tail, nothing worse
                log.warning("read-model snapshot not written: %s", error)

    def _release_threads(self) -> None:
        for pool in (self._worker, self._logins, self._failures, self._password_commands):
            pool.shutdown(wait=True)
        self.gate.close()

    async def health(self) -> dict[str, Any]:
        """``auth.v1.health``: the read model's position, the store's head and the lag between."""
        follower = self._follower
        reachable = follower is not None and follower.store_reachable
        head: int | None = None
        if reachable:  # else reading would only wait out the pool's retries
            reading = asyncio.ensure_future(asyncio.to_thread(self.store.recorder.max_notification_id))
            done, _ = await asyncio.wait({reading}, timeout=HEALTH_READ_SECONDS)
            if reading in done and reading.exception() is None:
                head = reading.result() or 0
            reachable = head is not None
        position = self.model.position
        publisher = self.publisher
        reasons = [] if reachable else ["the event store cannot be reached"]
        stalls = self.store.stalls
        if stalls.recent():
            reasons.append(
                f"a write waited out its bound on the event store {time.monotonic() - stalls.last:.0f} s ago "
                f"({stalls.count} since start)"
            )
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "position": position,
            "store": {"reachable": reachable, "head": head, "lag": None if head is None else max(0, head - position)},
            "feed": None if publisher is None else {"leading": publisher.leading, "published": max(0, publisher.published)},
            "in_flight": len(self._in_flight),
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "version": VERSION,
        }

    def gauges(self) -> dict[str, tuple[str, float]]:
        """For the Prometheus endpoint: cheap readings only (health asks the store; this does not)."""
        follower, publisher = self._follower, self.publisher
        return {
            "read_model_position": ("Position of the last event folded into this instance's read model.", self.model.position),
            "store_reachable": (
                "1 while the event store answers, else 0.",
                float(follower is not None and follower.store_reachable),
            ),
            "requests_in_flight": ("Requests running apart (commands, logins, admin reads) right now.", len(self._in_flight)),
            "feed_leading": (
                "1 while this instance publishes the event feed.",
                float(publisher is not None and publisher.leading),
            ),
            "store_head": (
                "The event store's head as this instance last read it (twice a second).",
                float(0 if follower is None else follower.head_seen),
            ),
            "store_write_stalls": (
                "Writes that waited out their bound on the event store (write lock or statement timeout) since start.",
                float(self.store.stalls.count),
            ),
            "store_write_stalled": (
                "1 while a write waited out its bound on the event store in the last 10 s (health says degraded).",
                float(self.store.stalls.recent()),
            ),
            "store_stuck_writers_ended": (
                "Sessions ended for holding the event log's write lock too long, since start.",
                float(self.store.stalls.writers_ended),
            ),
            "follower_missed_wakeups": (
                "Times the follower found the log's head ahead with no wake-up, and read again.",
                float(0 if follower is None else follower.missed_wakeups),
            ),
            "uptime_seconds": ("Seconds since this instance started.", round(time.monotonic() - self._started, 3)),
        }

    async def admit(self, work: Awaitable[None], lane: str = "default") -> None:
        slots = self._lanes[lane]
        await slots.acquire()
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(lambda done: self._finished(done, slots))

    def _finished(self, task: asyncio.Task[None], slots: asyncio.Semaphore) -> None:
        self._in_flight.discard(task)
        slots.release()

    def _restore(self) -> int:
        """Snapshot plus tail; a long tail is snapshotted at once, while nothing else touches the model."""
        self.model, tail = restore_read_model(self.store, self.settings.snapshot_file, self.app.keys.snapshot_key)
        # Deleted users' data keys, should a crash have come between a delete and its shredding.
        self.store.personal_keys.destroy(p.id for p in self.model.principals.values() if p.deleted)
        self._snapshot_position = self.model.position - tail
        if 0 < self.settings.snapshot_every <= tail:
            self._write_snapshot()
        return tail

    def _write_snapshot(self) -> None:
        started = time.monotonic()
        write_snapshot(self.model, self.store, self.settings.snapshot_file, self.app.keys.snapshot_key)
        self._snapshot_position = self.model.position
        log.info("read-model snapshot at position %d written in %.2f s", self.model.position, time.monotonic() - started)

    async def reached(self, position: int, timeout: float) -> bool:
        """For a request's ``min_position``: False at once for a position past the log's
        head (no instance has it) or when the waiting requests' own budget is spent, so a
        flood of them holds up nothing else; otherwise whether it came within ``timeout``."""
        assert self._follower is not None
        if self.model.position >= position:
            return True
        if self._waiting >= MAX_WAITING:
            return False
        self._waiting += 1
        try:
            return not await self.head.beyond(position) and await self._follower.reached(position, timeout)
        finally:
            self._waiting -= 1

    async def execute(self, command: Command, actor: Actor) -> tuple[dict[str, Any], int]:
        """Decide and append; a decision that comes to a password gets its hash or check done
        through the gate, fair by the calling credential, and is made again: the writer never
        waits on argon2, and one caller's registrations delay no other caller's commands."""
        if not command.secret_fields:  # no password in it: to the writer's next group
            return await self._grouped(Submitted(command, actor))
        work = PasswordWork()
        # Commands that carry passwords decide on a thread of their own: a flood of them
        # (and their rounds for password work) never queues ahead of the others.
        for _ in range(PASSWORD_ROUNDS):
            try:
                return await self._settled(self._password_commands, self.app.execute, command, actor, work)
            except PasswordWorkNeeded as needed:
                caller = f"credential/{actor.credential_id}"
                if needed.password_hash is None:
                    work.hashes[needed.password] = await self.gate.hash(caller, needed.password)
                else:
                    key = (needed.password, needed.password_hash)
                    work.checks[key] = await self.gate.matches(caller, *key)
        raise Unavailable("the password changed while it was checked; send the command again")

    async def _read(self, look: Callable[[StoreUnitOfWork], T]) -> T:
        if self._follower is not None and not self._follower.store_reachable:
            raise Unavailable("the event store is unavailable; retry")
        return await asyncio.get_running_loop().run_in_executor(self._logins, self.app.read, look)

    def admit_signup(self, tenant_id: UUID, caller: str, switch: str) -> None:
        """A self-service sign-up of the kind ``switch`` names may go on: the tenant takes
        them and neither the caller nor the tenant has reached its bound for the minute."""
        tenant = self.model.tenants.get(tenant_id)
        signups.require_open(tenant, switch)
        assert tenant is not None
        self.signups.admit(tenant_id, caller, tenant.policy["registrations_per_minute"], time.monotonic())

    async def register(
        self, tenant_id: UUID, username: str, password: str, source: str, caller: str
    ) -> tuple[logins.Started, int]:
        """Open registration: checked, counted and the username looked up before the slow
        hash, so a closed tenant or a taken name costs no argon2."""
        self.admit_signup(tenant_id, caller, "open_registration")
        if (tenant_id, username.casefold()) in self.model.users_by_name:
            raise Conflict("username is already taken", field="username")
        with self.gate.caller_slot(caller):
            password_hash = await self.gate.hash(caller, password)
        decide = functools.partial(
            signups.register, tenant_id=tenant_id, username=username, password_hash=password_hash, source=source
        )
        return await self.perform("register", signups.SIGNUP_ACTOR, decide)

    async def login(
        self, tenant_id: UUID, username: str, password: str, source: str, caller: str, scopes: list[Scope] | None = None
    ) -> tuple[logins.Outcome, int]:
        """A password login: one per username at a time, the check fair across callers and
        done outside any transaction, the outcome decided on the store as it is then."""
        user_id = self.model.users_by_name.get((tenant_id, username.casefold()))
        throttle_id = self.app.keys.throttle_id(tenant_id, username)
        with self.gate.caller_slot(caller):
            return await self._login(user_id, throttle_id, tenant_id, username, password, source, caller, scopes)

    async def _login(
        self,
        user_id: UUID | None,
        throttle_id: UUID,
        tenant_id: UUID,
        username: str,
        password: str,
        source: str,
        caller: str,
        scopes: list[Scope] | None,
    ) -> tuple[logins.Outcome, int]:
        async with self.gate.exclusive((str(tenant_id), username.casefold())):
            for _ in range(3):  # again only if the password changed under way
                check = await self._read(lambda uow: logins.password_check(uow, user_id, throttle_id))
                if check.locked:
                    return logins.Refused("rate_limited"), self.model.position
                if check.password_hash is None:
                    matched = await self.gate.decoy(caller)
                else:
                    matched = await self.gate.matches(caller, password, check.password_hash)
                conclude = functools.partial(
                    logins.password_login,
                    user_id=user_id,
                    throttle_id=throttle_id,
                    tenant_id=tenant_id,
                    checked=check.password_hash,
                    matched=matched,
                    source=source,
                    scopes=scopes,
                )
                pool = self._logins if matched else self._failures
                outcome, position = await self.perform("login", str(user_id or "anonymous"), conclude, pool=pool)
                if outcome != logins.Refused("recheck"):
                    return outcome, position
        raise Unavailable("the password changed while it was checked; try again")

    async def perform(
        self, name: str, actor_id: str, decide: Callable[[UnitOfWork], R], pool: ThreadPoolExecutor | None = None
    ) -> tuple[R, int]:
        """A login-family decision: no bearer, and decided again whenever it loses a race, so
        a login never answers ``conflict`` (each attempt is fast: no argon2 in it)."""
        run = functools.partial(self.app.perform, name, actor_id, decide, self._sign, LOGIN_ATTEMPTS)
        return await self._settled(pool or self._logins, run)

    async def read_log(self, start: int, limit: int) -> list[tuple[int, Any]]:
        """Up to ``limit`` stored events from position ``start`` on, read and decoded in a thread."""
        return await asyncio.to_thread(self.store.read_events, start, limit)

    async def _settled(self, pool: ThreadPoolExecutor, fn: Callable[..., tuple[R, int]], *args: Any) -> tuple[R, int]:
        self._require_store()
        return await self._folded(await asyncio.get_running_loop().run_in_executor(pool, fn, *args))

    async def _grouped(self, submitted: Submitted) -> Decided:
        self._require_store()
        return await self._folded(await self._commands.submit(submitted))

    def _require_store(self) -> None:
        if self._follower is not None and not self._follower.store_reachable:
            raise Unavailable(f"the event store is unavailable; {AGAIN}")

    async def _folded(self, reply: tuple[R, int]) -> tuple[R, int]:
        """Answer only once this instance's read model holds the events, so a caller's next
        request here already sees them."""
        assert self._follower is not None
        await self._follower.reached(reply[1], self.consistency_wait)
        return reply

    def _sign(self, tenant_id: UUID, claims: dict[str, Any]) -> str:
        key = signing_key_for(self.model, tenant_id)
        if key is None:
            raise Unavailable("no active signing key: create one with create_signing_key")
        return self.keys.sign(key, claims)
