"""An async client for the wire protocol (docs/wire.md), with typed results; also used by
the CLI and the tests.

    client = await AuthbusClient.connect("nats://127.0.0.1:4222", token=admin_key)
    verdict = await client.verify(token)              # Verified
    decision = await client.authorize(token, entity_type="doc", operation="read", entity_id="42")  # Decision
    pair = await client.login(tenant_id, "alice", password)   # Tokens
    reply = await client.command("create_pat", user_id=user_id, name="ci")  # the reply as a dict
    typed = await client.command_as(NewPat, "create_pat", user_id=user_id, name="ci")  # CommandReply[NewPat]
    users = await client.admin_as(Page[UserDetail], "list_users")  # an admin read as its struct (handlers/replies.py)

Read-your-writes (§1): the client remembers the highest ``position`` any reply carried,
errors included (``client.position``). Every request that reads the model (``verify``,
``authorize``, ``jwks``, ``admin``, ``login``, ``refresh``, ``logout``, ``challenge``,
``answer_challenge``, ``redeem``) sends it as ``min_position`` unless the caller gives one, so a verify right after a
revocation answered by one instance is never served by another instance's older read
model (it waits, or raises ``stale``). ``min_position=0`` asks for no wait on one request;
``read_your_writes=False`` turns it off for the client. ``call`` and ``raw`` send exactly
the body they are given.

Failover: ``verify``, ``authorize``, ``jwks`` and ``admin`` reads (but the audit reads that
replay the log, LONG_READS) are sent once more when no answer came within ``repeat_after``
(0.25 s), so a request lost with an instance that died
is answered by another; a command is sent again only when it carries a ``command_id``
(after ``command_repeat_after``, 3 s), which makes the repeat a replay.  ``login``,
``refresh`` and ``logout`` are never repeated: a refresh token sent twice revokes its
session.  ``repeat_after=None`` turns repeats off.

Over 300 lines because it is the protocol's one client: a method per endpoint family, all
sharing the position, repeat and error handling above, so a user reads it in one file.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from authbus.domain.errors import AuthbusError as AuthbusError  # the one hierarchy, re-exported for callers
from authbus.domain.errors import from_reply
from authbus.handlers.replies import CommandReply, Decision, Tokens, Verified
from authbus.handlers.replies import Credential as Credential  # re-exported: the replies' parts, for callers
from authbus.handlers.replies import Principal as Principal
from authbus.handlers.replies import Scope as Scope
from authbus.projections.inboxes import private_inbox

T = TypeVar("T")
# A request that is safe to repeat (verify, authorize, jwks, admin reads) is sent once more
# when no answer came within REPEAT_AFTER: one lost on an instance that died reaches another
# (NATS drops a dead instance's subscriptions), and the first answer of the two is taken.
# A command is repeated only when it carries a command_id, which makes the repeat a replay.
REPEAT_AFTER = 0.25
COMMAND_REPEAT_AFTER = 3.0
# Reads that replay or digest the whole log: they outlast REPEAT_AFTER by design, and a
# repeat would only double their cost.
LONG_READS = frozenset({"audit_as_of", "audit_log", "rebuild_check"})
CORRELATION = "Correlation-Id"  # handlers.wire.CORRELATION_HEADER
PLAIN_CORRELATION = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # what authbus echoes


def raise_error(reply: Any) -> None:
    """For an error reply (§2), the AuthbusError of its code (domain/errors.py: ``Conflict``,
    ``NotFound``, …), with the answering instance's read-model position."""
    error = reply.get("error") if isinstance(reply, dict) else None
    if error is not None:
        raise from_reply(error["code"], error["message"], error.get("details") or {}, reply.get("position"))


class _Refusal:
    """An error callback noting whether the server refused us for lack of credentials
    (nats.py then gives up with NoServersError, which no longer says why)."""

    refused = False

    async def seen(self, error: Exception) -> None:
        if "authorization violation" in str(error).lower():
            self.refused = True


class CredentialsRefused(ConnectionError):
    """NATS answered, and refused the connection's credentials (or wanted some): not the
    same trouble as no server at all."""


async def _connect(url: str, refusal: _Refusal, token: str | None = None) -> Client:
    # With a token (an auth callout server), replies come to the connection's private
    # inbox: no other inbox may be listened to there (docs/wire.md §6.9).
    inbox = {"inbox_prefix": private_inbox(token)} if token else {}
    return await nats.connect(
        # allow_reconnect=False makes nats.py retry a refused first connect forever.
        url,
        name="authbus-client",
        connect_timeout=5,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        error_cb=refusal.seen,
        token=token,
        **inbox,
    )


class AuthbusClient:
    def __init__(
        self,
        nc: Client,
        prefix: str = "auth",
        token: str | None = None,
        timeout: float = 10.0,
        *,
        read_your_writes: bool = True,
        repeat_after: float | None = REPEAT_AFTER,
        command_repeat_after: float | None = COMMAND_REPEAT_AFTER,
    ) -> None:
        self.nc = nc
        self.prefix = prefix
        self.token = token  # the bearer for commands and admin reads
        self.timeout = timeout
        self.read_your_writes = read_your_writes
        self.repeat_after = repeat_after  # None: never send a request twice
        self.command_repeat_after = command_repeat_after
        self.repeated = 0  # requests sent a second time
        self._position = 0
        self._inbox = nc.new_inbox()
        self._requests = itertools.count()

    @classmethod
    async def connect(
        cls, url: str, prefix: str = "auth", token: str | None = None, *, timeout: float = 10.0, **options: Any
    ) -> AuthbusClient:
        """A NATS server that lets clients in through authbus's auth callout (operations.md §4)
        refuses a connection without credentials; then ``token`` is presented to it as the
        connection token, and only then."""
        refusal = _Refusal()
        try:
            nc = await _connect(url, refusal)
        except Exception:
            if not refusal.refused:
                raise
            if not token:
                raise CredentialsRefused(f"NATS at {url} lets clients in only with a credential") from None
            again = _Refusal()
            try:
                nc = await _connect(url, again, token=token)
            except Exception:
                if again.refused:
                    raise CredentialsRefused(f"NATS at {url} refused the credential") from None
                raise
        try:
            return cls(nc, prefix, token, timeout, **options)
        except BaseException:  # a mistyped option leaves no connection open
            await nc.close()
            raise

    async def close(self) -> None:
        await self.nc.drain()

    @property
    def position(self) -> int:
        """The highest ``position`` seen in any reply to this client (0: none yet)."""
        return self._position

    # Raw access: bodies sent exactly as given, replies as dicts.

    async def exchange(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None, *, repeat_after: float | None = None
    ) -> Msg:
        """One request to ``<prefix>.v1.<subject>``; the reply only if it is authbus's answer
        to it: each request carries a fresh ``Correlation-Id`` (or the caller's, a plain token
        of up to 64 characters) that authbus echoes, so a message planted in this client's
        inbox (a forged ``valid: true``) is refused, never taken for the answer.  With
        ``repeat_after``, sent once more when no answer came by then."""
        headers = {CORRELATION: secrets.token_hex(16), **(headers or {})}  # the caller's own, when it sends one
        if not PLAIN_CORRELATION.fullmatch(headers[CORRELATION]):  # authbus would answer under a fresh one
            raise ValueError("a Correlation-Id is 1 to 64 of A-Z a-z 0-9 . _ : -")
        return await self._answer(f"{self.prefix}.v1.{subject}", body, headers, repeat_after)

    async def raw(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None, *, repeat_after: float | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """As ``exchange``, the reply decoded, with its headers."""
        msg = await self.exchange(subject, body, headers, repeat_after=repeat_after)
        reply = msgspec.json.decode(msg.data)
        if isinstance(reply, dict):
            position = reply.get("position")
            if type(position) is int and position > self._position:
                self._position = position
        return reply, dict(msg.headers or {})

    async def _answer(self, subject: str, body: bytes, headers: dict[str, str], repeat_after: float | None = None) -> Msg:
        """Send, then wait on an inbox of this request's own for the reply that echoes its
        ``Correlation-Id``, passing over anything else (nats.py's ``request`` takes the first
        message, which anyone able to publish there could plant).  A repeat goes out under
        the same inbox and Correlation-Id: whichever answer comes first is the answer."""
        inbox = f"{self._inbox}.{next(self._requests)}"  # under one root: authbus tells callers apart by it
        sub = await self.nc.subscribe(inbox)
        clock = asyncio.get_running_loop().time
        try:
            await self.nc.publish(subject, body, reply=inbox, headers=headers)
            deadline = clock() + self.timeout
            # A repeat due at or after the deadline would never go out: none is planned.
            repeat_at = None if repeat_after is None or clock() + repeat_after >= deadline else clock() + repeat_after
            repeating = repeat_at is not None
            first_unheard = False  # the first send found no responders
            while True:
                until = deadline if repeat_at is None else repeat_at
                try:
                    msg = await sub.next_msg(timeout=max(0.001, until - clock()))
                except nats.errors.TimeoutError:
                    if repeat_at is None or clock() >= deadline:
                        raise
                    repeat_at = None
                    self.repeated += 1
                    await self.nc.publish(subject, body, reply=inbox, headers=headers)
                    continue
                replied = msg.headers or {}
                if replied.get("Status") == "503" and not msg.data:
                    if repeat_at is not None:  # to the first send: the repeat may find one
                        first_unheard = True
                    elif not repeating or first_unheard:  # nobody took the only send, or either
                        raise nats.errors.NoRespondersError
                    continue  # to the repeat: an instance that took the first may still answer
                if replied.get(CORRELATION) == headers[CORRELATION]:
                    return msg
        finally:
            await sub.unsubscribe()

    async def call(
        self, subject: str, body: dict[str, Any] | None = None, token: str | None = None, *, repeat_after: float | None = None
    ) -> dict[str, Any]:
        """Send ``body`` to ``<prefix>.v1.<subject>``; the reply, or AuthbusError.  ``token``:
        the bearer (default: the client's; ``""`` sends no Authorization header)."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        reply, _ = await self.raw(subject, msgspec.json.encode(body or {}), headers, repeat_after=repeat_after)
        raise_error(reply)
        return reply

    # Queries: min_position defaults to the highest position seen (read-your-writes).

    async def _read(
        self, subject: str, body: dict[str, Any], min_position: int | None, token: str | None = "", *, repeat: bool = False
    ) -> dict[str, Any]:
        """A request that reads the model: it carries ``min_position`` (the caller's, else the
        highest seen), and is sent once more after ``repeat_after`` only when ``repeat``
        (safe to repeat: it changes nothing)."""
        if min_position is None and self.read_your_writes and self._position > 0:
            min_position = self._position
        if min_position is not None:
            body = {**body, "min_position": min_position}
        return await self.call(subject, body, token, repeat_after=self.repeat_after if repeat else None)

    async def verify(self, token: str, *, min_position: int | None = None) -> Verified:
        """§6.1. A token that does not verify is an answer (``valid`` False, ``reason``), not an error."""
        reply = await self._read("verify", {"token": token}, min_position, repeat=True)
        return msgspec.convert(reply, Verified)

    async def authorize(
        self,
        token: str,
        *,
        entity_type: str | None = None,
        operation: str | None = None,
        entity_id: str | None = None,
        domain: str | None = None,
        tenant_id: str | None = None,
        min_role: str | None = None,
        min_position: int | None = None,
    ) -> Decision:
        """§6.2: may the holder of ``token`` do ``operation`` on ``entity_type``/``entity_id``,
        and (with ``min_role``) does it hold a role ranked at least that?"""
        asked = {
            "entity_type": entity_type,
            "operation": operation,
            "entity_id": entity_id,
            "domain": domain,
            "tenant_id": tenant_id,
            "min_role": min_role,
        }
        body = {"token": token, **{k: v for k, v in asked.items() if v is not None}}
        reply = await self._read("authorize", body, min_position, repeat=True)
        return msgspec.convert(reply, Decision)

    async def jwks(self, tenant_id: str | None = None, *, min_position: int | None = None) -> dict[str, Any]:
        """The JWK Set (§6.3): ``{"keys": [...], "position": N}``."""
        body = {} if tenant_id is None else {"tenant_id": tenant_id}
        return await self._read("jwks", body, min_position, repeat=True)

    async def admin(self, name: str, /, token: str | None = None, **fields: Any) -> dict[str, Any]:
        """An admin read (§8, §9.2), e.g. ``admin("get_user", user_id=...)``: fields are sent as
        given, plus ``min_position`` when none (or None) is given."""
        min_position = fields.pop("min_position", None)
        return await self._read(f"admin.{name}", fields, min_position, token, repeat=name not in LONG_READS)

    async def admin_as(self, reply_type: type[T], name: str, /, token: str | None = None, **fields: Any) -> T:
        """As ``admin``, the reply converted to ``reply_type``: the read's struct in
        authbus.handlers.replies (``admin_as(Page[UserDetail], "list_users")``, ``admin_as(PatReply,
        "get_pat", pat_id=…)``), or a type of the caller's; msgspec.ValidationError when it does not fit."""
        return msgspec.convert(await self.admin(name, token=token, **fields), reply_type)

    # Login family (§6.4–6.5) and redeem: read-your-writes too (a user, key or public key
    # registered a moment ago through another instance is waited for), never repeated.

    async def login(
        self, tenant_id: str, username: str, password: str, *, source: str | None = None, min_position: int | None = None
    ) -> Tokens:
        return await self._with_password("login", tenant_id, username, password, source, min_position)

    async def register(
        self, tenant_id: str, username: str, password: str, *, source: str | None = None, min_position: int | None = None
    ) -> Tokens:
        """Open registration, where the tenant's policy allows it: a new user, logged in."""
        return await self._with_password("register", tenant_id, username, password, source, min_position)

    async def _with_password(
        self, subject: str, tenant_id: str, username: str, password: str, source: str | None, min_position: int | None
    ) -> Tokens:
        body = {"tenant_id": tenant_id, "username": username, "password": password}
        if source is not None:
            body["source"] = source
        return msgspec.convert(await self._read(subject, body, min_position), Tokens)

    async def refresh(self, refresh_token: str, *, source: str | None = None, min_position: int | None = None) -> Tokens:
        """Rotates the pair: ``refresh_token`` is spent, sending it again revokes the session."""
        body = {"refresh_token": refresh_token}
        if source is not None:
            body["source"] = source
        return msgspec.convert(await self._read("refresh", body, min_position), Tokens)

    async def logout(self, refresh_token: str, *, min_position: int | None = None) -> int:
        """Ends the session; the position of its end."""
        reply = await self._read("logout", {"refresh_token": refresh_token}, min_position)
        return int(reply["position"])

    async def challenge(self, tenant_id: str, public_key: str, *, min_position: int | None = None) -> str:
        """§6.5: a challenge for ``public_key`` (base64url Ed25519) to sign."""
        body = {"tenant_id": tenant_id, "public_key": public_key}
        return str((await self._read("challenge", body, min_position))["challenge"])

    async def answer_challenge(
        self, challenge: str, signature: str, *, source: str | None = None, min_position: int | None = None
    ) -> Tokens:
        """§6.5: the signed challenge (base64url signature over the challenge's bytes) for a pair."""
        body = {"challenge": challenge, "signature": signature}
        if source is not None:
            body["source"] = source
        return msgspec.convert(await self._read("challenge.answer", body, min_position), Tokens)

    async def redeem(
        self, key: str, password: str, *, command_id: str | None = None, min_position: int | None = None
    ) -> dict[str, Any]:
        """§7: a recovery or invitation key sets a password; the reply as a dict."""
        body: dict[str, Any] = {"token": key, "password": password}
        if command_id is not None:
            body["command_id"] = command_id
        return await self._read("redeem", body, min_position)

    # Commands (§7): no min_position (each re-reads the store); the reply's position is remembered.

    async def command(self, name: str, /, token: str | None = None, **fields: Any) -> dict[str, Any]:
        """``{"ok": true, "result": {...}, "position": N}`` as a dict.  Sent once more after
        ``command_repeat_after`` without an answer only when it carries a ``command_id``."""
        repeat_after = self.command_repeat_after if fields.get("command_id") else None
        return await self.call(f"cmd.{name}", fields, token, repeat_after=repeat_after)

    async def command_as(self, result_type: type[T], name: str, /, token: str | None = None, **fields: Any) -> CommandReply[T]:
        """As ``command``, with ``result`` converted to ``result_type`` (a msgspec Struct, a
        dataclass, ``dict``…; msgspec.ValidationError when it does not fit)."""
        reply = await self.command(name, token=token, **fields)
        return msgspec.convert(reply, CommandReply[result_type])  # type: ignore[valid-type]
