"""One authbus instance: event store, read model, follower, command worker, NATS service."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats
from nats.aio.client import Client
from nats.micro.service import Service

from authbus.domain.commands import Command, bootstrap
from authbus.domain.policy import Actor
from authbus.handlers.service import start_service
from authbus.infra.follower import Follower, fold
from authbus.infra.runner import SYSTEM_ACTOR, CommandRunner
from authbus.infra.secrets import Passwords, SecretSource, load_kek
from authbus.infra.settings import Settings
from authbus.infra.store import EventStore, is_postgres, open_store
from authbus.projections.read_model import ReadModel

log = logging.getLogger("authbus")


def open_runner(settings: Settings, create_kek: bool = False, need_kek: bool = True) -> CommandRunner:
    """The command runner over the configured store.  Only commands sent with a command_id
    derive secrets from the KEK, so ``bootstrap`` alone may run without one."""
    kek = load_kek(settings.kek, settings.default_kek_file, create=create_kek) if need_kek else os.urandom(32)
    return CommandRunner(open_store(settings.database_url), SecretSource(kek), Passwords())


def run_bootstrap(runner: CommandRunner) -> dict[str, Any]:
    """Create the system tenant and root; raises Conflict when that was done before."""
    result, _ = runner.run_function("bootstrap", lambda _, uow: bootstrap(uow), None, SYSTEM_ACTOR, None, "")
    return result


async def _log_nats_error(error: Exception) -> None:
    log.warning("NATS: %s", error)


async def _log_reconnect() -> None:
    log.warning("NATS reconnected")


class Node:
    """Implements handlers.wire.Backend."""

    def __init__(self, settings: Settings, runner: CommandRunner) -> None:
        self.settings = settings
        self.runner = runner
        self.store: EventStore = runner.store
        self.model = ReadModel()
        self.consistency_wait = settings.consistency_wait
        self.nc: Client | None = None
        self.service: Service | None = None
        self._follower: Follower | None = None
        self._stopping = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authbus-commands")

    async def _log_disconnect(self) -> None:
        if not self._stopping:
            log.warning("NATS disconnected; reconnecting")

    def now(self) -> float:
        return time.time()

    async def start(self) -> Node:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        await loop.run_in_executor(self._worker, fold, self.store, self.model)
        log.info("read model at position %d in %.2f s", self.model.position, time.monotonic() - started)
        self._follower = Follower(self.store, self.model, loop, listen=is_postgres(self.settings.database_url))
        self._follower.start()
        self.nc = await nats.connect(
            self.settings.nats_url,
            name="authbus",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=_log_nats_error,
            disconnected_cb=self._log_disconnect,
            reconnected_cb=_log_reconnect,
        )
        self.service = await start_service(self.nc, self, self.settings.subject_prefix)
        return self

    async def stop(self) -> None:
        """Stop taking requests, let in-flight ones finish, then release the store."""
        self._stopping = True
        try:
            if self.service is not None:
                await self.service.stop()
            if self.nc is not None and not self.nc.is_closed:
                await self.nc.drain()
        except Exception as error:  # NATS already gone: nothing left to drain
            log.warning("NATS was not drained cleanly: %s", error)
            if self.nc is not None:
                await self.nc.close()
        if self._follower is not None:
            await asyncio.to_thread(self._follower.stop)
        self._worker.shutdown(wait=True)
        self.store.close()

    async def reached(self, position: int, timeout: float) -> bool:
        assert self._follower is not None
        return await self._follower.reached(position, timeout)

    async def execute(self, command: Command, actor: Actor) -> tuple[dict[str, Any], int]:
        loop = asyncio.get_running_loop()
        result, position = await loop.run_in_executor(self._worker, self.runner.run, command, actor)
        # Answer only once this instance's read model holds the command's events, so a
        # caller's next request here already sees them.
        await self.reached(position, self.consistency_wait)
        return result, position
