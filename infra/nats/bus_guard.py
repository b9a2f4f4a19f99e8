"""Closes bus connections whose credential no longer admits them.

nats-server fixes a connection's permissions when it connects, so a credential revoked,
expired early, reset or narrowed afterwards would keep its connection.  Every instance
keeps a registry of the connections the auth callout admitted, keyed by server and client
id, holding the identity the callout wrote into the user JWT's name
(projections/bus_access.py): learned from the system account's CONNECT and DISCONNECT
events, and from CONNZ at start and after a reconnect.  When the read model moves on (at
most every ``interval``) it asks of each connection an event may concern — those of a
credential, session or signing key the events name, or all of them after an event on a
user, a tenant or a role — whether it would still be admitted with the same grant, and
closes those that would not (``$SYS.REQ.SERVER.<id>.KICK``); every ``sweep`` seconds it
asks of all of them, a stretch at a time so the loop answers meanwhile.  The client reconnects and the callout decides afresh: a
revoked credential stays out, a narrowed one comes back with its narrower grant.  A
connection whose credential simply expires is closed by the server at its JWT's ``exp``.

Every instance does this for every connection, whichever instance admitted it: an
instance that restarted, or lags, leaves none open.  A connection closed twice is closed
once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from authbus.infra.follower import wait_until
from authbus.projections.bus_access import still_admitted
from authbus.projections.event_feed import aggregate_of
from authbus.projections.read_model import ReadModel

log = logging.getLogger("authbus.bus_guard")
CONNZ_PAGE = 1024
CHECK_STRETCH = 256  # connections asked about between two turns of the event loop
# Events on these may change what any connection of a principal or tenant is admitted with;
# on these others, only the connections of the credential, session or key they name.
EVERY_CONNECTION = frozenset({"user", "tenant", "role"})
BY_ID = frozenset({"pat", "key", "session", "signing_key"})
GATHER_SECONDS = 1.0  # how long CONNZ replies from the servers of a cluster are collected
REQUEST_SECONDS = 2.0

Key = tuple[str, int]  # (server id, client id)


class BusGuard:
    def __init__(
        self,
        nc: Client,
        model: ReadModel,
        accounts: Iterable[str],
        now: Callable[[], float],
        interval: float = 0.1,
        sweep: float = 30.0,
    ) -> None:
        self.nc = nc  # a connection to the system account
        self.model = model
        self.accounts = tuple(accounts)
        self.now = now
        self.interval = interval
        self.sweep = sweep
        self.connections: dict[Key, str] = {}
        self._by_id: dict[str, set[Key]] = {}  # credential, session and signing key ids → their connections
        self._touched: set[Key] = set()
        self._everything = False
        self.kicked = 0
        self._moved = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def offer(self, batch: list[tuple[int, Any]]) -> None:
        """A batch the follower just folded (Follower.listeners)."""
        for _, event in batch:
            aggregate = aggregate_of(event)
            if aggregate in EVERY_CONNECTION:
                self._everything = True
            elif aggregate in BY_ID:
                self._touched.update(self._by_id.get(str(event.originator_id), ()))
        self._moved.set()

    def _register(self, key: Key, name: str) -> None:
        self.connections[key] = name
        for ident in name.split(":")[2:-1]:  # the credential or session id, and a signing key's
            self._by_id.setdefault(ident, set()).add(key)
        self._touched.add(key)  # admitted by an instance that may know more, or less, than this one
        self._moved.set()

    def _forget(self, key: Key) -> str | None:
        name = self.connections.pop(key, None)
        for ident in (name or "").split(":")[2:-1]:
            keys = self._by_id.get(ident)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_id[ident]
        return name

    async def start(self) -> BusGuard:
        for account in self.accounts:  # before the census, so no connection falls between
            await self.nc.subscribe(f"$SYS.ACCOUNT.{account}.CONNECT", cb=self._connected)
            await self.nc.subscribe(f"$SYS.ACCOUNT.{account}.DISCONNECT", cb=self._disconnected)
        await self._census()
        self._task = asyncio.create_task(self._run(), name="authbus-bus-guard")
        return self

    async def stop(self) -> None:
        self._stopped.set()
        self._moved.set()
        if self._task is not None:
            await wait_until(asyncio.shield(self._task), 5.0)
            self._task.cancel()

    async def _connected(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        client = event.get("client") or {}
        if isinstance(client.get("user"), str) and "id" in client:
            self._register((event["server"]["id"], client["id"]), client["user"])

    async def _disconnected(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        self._forget((event["server"]["id"], (event.get("client") or {}).get("id")))

    async def resync(self) -> None:
        """After the system connection was away: connection events went by unheard."""
        self.connections.clear()
        self._by_id.clear()
        await self._census()
        self._everything = True
        self._moved.set()

    async def _census(self) -> None:
        """The connections already there: CONNZ of every server, a page at a time."""
        for account in self.accounts:
            for reply in await self._gather("$SYS.REQ.SERVER.PING.CONNZ", self._connz(account, 0)):
                server_id, data = reply["server"]["id"], reply.get("data") or {}
                while True:
                    listed = data.get("connections") or []
                    for conn in listed:
                        if isinstance(conn.get("authorized_user"), str):
                            self._register((server_id, conn["cid"]), conn["authorized_user"])
                    offset = data.get("offset", 0) + len(listed)
                    if not listed or offset >= data.get("total", 0):
                        break
                    page = await self.nc.request(
                        f"$SYS.REQ.SERVER.{server_id}.CONNZ", self._connz(account, offset), timeout=REQUEST_SECONDS
                    )
                    data = json.loads(page.data).get("data") or {}

    @staticmethod
    def _connz(account: str, offset: int) -> bytes:
        return json.dumps({"acc": account, "auth": True, "offset": offset, "limit": CONNZ_PAGE}).encode()

    async def _gather(self, subject: str, body: bytes) -> list[dict[str, Any]]:
        """Every server's reply to a PING request, collected for a while."""
        replies: list[dict[str, Any]] = []

        async def collect(msg: Msg) -> None:
            replies.append(json.loads(msg.data))

        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            await self.nc.publish(subject, body, reply=inbox)
            await wait_until(self._stopped.wait(), GATHER_SECONDS)
        finally:
            await sub.unsubscribe()
        return replies

    async def _run(self) -> None:
        swept = time.monotonic()
        while not self._stopped.is_set():
            await wait_until(self._moved.wait(), self.sweep)
            self._moved.clear()
            if self._stopped.is_set():
                return
            started = time.monotonic()
            if self._everything or started - swept >= self.sweep:
                self._everything, self._touched, swept = False, set(), started
                await self.check(list(self.connections))
            else:
                touched, self._touched = self._touched, set()
                await self.check(touched)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def check(self, keys: Iterable[Key]) -> None:
        """Close those of ``keys`` their credential no longer admits as they were."""
        for count, key in enumerate(keys, 1):
            name = self.connections.get(key)
            if name is not None and still_admitted(self.model, name, self.now()) is False:
                await self._kick(*key)
            if count % CHECK_STRETCH == 0:
                await asyncio.sleep(0)  # verify answers between stretches

    async def _kick(self, server_id: str, cid: int) -> None:
        name = self._forget((server_id, cid))
        try:
            reply = await self.nc.request(
                f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": cid}).encode(), timeout=REQUEST_SECONDS
            )
        except Exception as error:  # the server or the connection is gone already
            log.info("bus: closing connection %s on %s failed: %s", cid, server_id, error)
            return
        if b'"error"' in reply.data:
            log.info("bus: connection %s on %s was already gone", cid, server_id)
            return
        self.kicked += 1
        log.info("bus: closed connection %s on %s (%s): its credential no longer admits it", cid, server_id, name)
