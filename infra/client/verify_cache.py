"""A service's local verify cache that the event feed keeps honest.

A service that verifies the same bearer on every request can keep authbus's answer and
skip the round trip. The risk is a revoked credential that stays trusted. To avoid it, the
cache listens to the event feed (`<prefix>.v1.events.>`, docs/wire.md §9.1) and evicts an
answer as soon as an event touches what it vouched for:
- the credential itself;
- its owner;
- anything tenant-wide in its tenant: the tenant, sessions, signing keys.
A recorded use of a PAT or key (PATUsed, KeyUsed) changes no answer and evicts nothing.

Without the feed it trusts nothing: answers are kept only while this connection is up,
and the whole cache is dropped after a reconnect, because events may have gone by
unheard. A TTL bounds every answer as well. Only `valid: true` answers are kept, so a
credential created a moment ago verifies at once.

    verifier = await CachedVerifier.start(client)
    verdict = await verifier.verify(token)  # a Verified struct
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# The typed answers live with the client; imported from here as well, as they always were.
from authbus.infra.client import AuthbusClient, Verified, raise_error
from authbus.infra.client import Credential as Credential
from authbus.infra.client import Principal as Principal
from authbus.infra.nats.sync import sync_with_server

# Events of these aggregates are matched by id: their aggregate_id is the credential's or
# the principal's.  Any other aggregate's events (tenant, session, signing_key, …) evict
# the whole tenant; uniqueness claims, command records and checkpoints change no answer.
BY_ID = frozenset({"pat", "key", "user"})
HARMLESS = frozenset({"claim", "command", "checkpoint", "login"})  # login: failed logins of unknown usernames
# A recorded use (at most one a minute per credential in use) changes no verify answer.
USES = frozenset({"PATUsed", "KeyUsed"})


class FeedEvent(msgspec.Struct):
    aggregate: str
    aggregate_id: str
    tenant_id: str
    type: str = ""


class _Entry(msgspec.Struct):
    verdict: Verified
    until: float
    keys: tuple[str, ...]  # the ids an event may name to evict it


class CachedVerifier:
    def __init__(self, client: AuthbusClient, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self.client = client
        self.ttl = ttl
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_key: dict[str, set[str]] = {}
        self._reconnects = client.nc.stats["reconnects"]
        self._subscription: Subscription | None = None
        self._decode = msgspec.json.Decoder(Verified).decode
        self._decode_event = msgspec.json.Decoder(FeedEvent).decode

    @classmethod
    async def start(cls, client: AuthbusClient, **options: Any) -> CachedVerifier:
        verifier = cls(client, **options)
        verifier._subscription = await client.nc.subscribe(f"{client.prefix}.v1.events.>", cb=verifier._on_event)
        await sync_with_server(client.nc)  # listening before the first answer is kept
        return verifier

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        self.clear()

    async def verify(self, token: str) -> Verified:
        if self._trusting():
            entry = self._entries.get(token)
            if entry is not None and entry.until > time.monotonic():
                self.hits += 1
                return entry.verdict
        self.misses += 1
        msg = await self.client.exchange("verify", msgspec.json.encode({"token": token}), repeat_after=self.client.repeat_after)
        try:
            verdict = self._decode(msg.data)
        except msgspec.ValidationError:  # an error reply (a token too long, rate_limited, …)
            raise_error(msgspec.json.decode(msg.data))
            raise
        if verdict.valid and verdict.credential is not None and verdict.principal is not None and self._trusting():
            self._keep(token, verdict)
        return verdict

    def clear(self) -> None:
        self._entries.clear()
        self._by_key.clear()

    def _trusting(self) -> bool:
        """Only while the feed is surely heard: connected, and no reconnect since the last look."""
        nc = self.client.nc
        if nc.stats["reconnects"] != self._reconnects:
            self._reconnects = nc.stats["reconnects"]
            self.clear()
        return nc.is_connected and self._subscription is not None

    def _keep(self, token: str, verdict: Verified) -> None:
        assert verdict.credential is not None and verdict.principal is not None
        keys = (verdict.credential.id, verdict.principal.id, f"tenant:{verdict.principal.tenant_id}")
        self._forget(token)
        self._entries[token] = _Entry(verdict, time.monotonic() + self.ttl, keys)
        for key in keys:
            self._by_key.setdefault(key, set()).add(token)
        while len(self._entries) > self.max_entries:
            self._forget(next(iter(self._entries)))

    def _forget(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return
        for key in entry.keys:
            tokens = self._by_key.get(key)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._by_key[key]

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = self._decode_event(msg.data)
        except msgspec.DecodeError:  # not ours to judge: drop everything rather than guess
            self.clear()
            return
        if event.aggregate in HARMLESS or event.type in USES:
            return
        key = event.aggregate_id if event.aggregate in BY_ID else f"tenant:{event.tenant_id}"
        for token in list(self._by_key.get(key, ())):
            self._forget(token)
            self.evictions += 1
