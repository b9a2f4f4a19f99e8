"""What ``authbus bench`` loads: a seeded tenant, the echo baseline and the SuperMQ-style peer.

Everything is set up through the real wire protocol as root would, so the bench measures
the same read model a production instance serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import msgspec
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from authbus.infra.bench.report import ScenarioFailed
from authbus.infra.client import AuthbusClient
from authbus.infra.crypto.keys import unb64url
from authbus.infra.nats.sync import sync_with_server
from authbus.infra.store import with_database

CREDENTIALS = 100  # PATs and API keys each, so lookups are spread over many entries
PASSWORD = "bench-password-1234"
EXACT_SCOPES = 999  # plus one wildcard scope: 1,000 in all
CREATE_CHUNK = 400  # scopes per create_pat/add_scope body, well under the 64 KiB limit


def _scope(entity_type: str, entity_id: str) -> dict[str, Any]:
    return {"domain": None, "entity_type": entity_type, "operation": "read", "entity_id": entity_id}


@dataclass
class World:
    tenant_id: str
    admin_key: str  # unscoped API key of an admin, for commands
    user_id: str
    pats: list[str] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)
    access_token: str = ""  # EdDSA JWT from a password login
    tenant_token: str = ""  # HS256 JWT minted by the tenant
    one_scope_pat: str = ""  # holds document/read/*
    many_scopes_pat: str = ""  # holds document/read/doc-0..998 and folder/read/*

    @staticmethod
    def verify_payloads(tokens: list[str]) -> list[bytes]:
        return [msgspec.json.encode({"token": t}) for t in tokens]

    def authorize_payloads(self, token: str, mixed: bool, count: int = 1000) -> list[bytes]:
        """Requests every one of which is allowed: with ``mixed``, alternately an exact match
        (document/doc-i) and a wildcard one (folder/f-i); otherwise document/doc-i only."""
        bodies = []
        for i in range(count):
            exact = i % 2 == 0 or not mixed
            entity_type, entity_id = ("document", f"doc-{i % EXACT_SCOPES}") if exact else ("folder", f"f-{i}")
            bodies.append(
                msgspec.json.encode({"token": token, "entity_type": entity_type, "operation": "read", "entity_id": entity_id})
            )
        return bodies


async def seed_world(client: AuthbusClient) -> World:
    """A tenant with an admin and one user holding every kind of credential the bench verifies."""
    tenant = await client.command("create_tenant", name=f"bench-{uuid.uuid4().hex[:12]}")
    tenant_id = tenant["result"]["tenant_id"]
    admin = await client.command("register_user", tenant_id=tenant_id, username="admin", roles=["admin"])
    admin_key = (await client.command("issue_key", user_id=admin["result"]["user_id"], kind="api_key", name="bench admin"))[
        "result"
    ]["token"]
    # alice holds what her PATs are given: a credential never carries more than its owner.
    await client.command(
        "create_role",
        tenant_id=tenant_id,
        name="reader",
        scopes=[_scope("document", "*"), _scope("folder", "*")],
        token=admin_key,
    )
    user = await client.command(
        "register_user", tenant_id=tenant_id, username="alice", password=PASSWORD, roles=["user", "reader"], token=admin_key
    )
    world = World(tenant_id, admin_key, user["result"]["user_id"])

    async def mint(command: str, /, **fields: Any) -> str:
        reply = await client.command(command, user_id=world.user_id, token=admin_key, **fields)
        return reply["result"]["token"]

    # Unscoped credentials act with the owner's own authority; verify does not care.
    world.pats = [await mint("create_pat", name=f"pat-{i}") for i in range(CREDENTIALS)]
    world.api_keys = [await mint("issue_key", kind="api_key", name=f"key-{i}") for i in range(CREDENTIALS)]
    world.one_scope_pat = await mint("create_pat", name="one scope", scopes=[_scope("document", "*")])
    world.many_scopes_pat = await _many_scopes_pat(client, world)
    login = await client.call("login", {"tenant_id": tenant_id, "username": "alice", "password": PASSWORD}, token="")
    world.access_token = login["access_token"]
    world.tenant_token = await _tenant_token(client, world)
    return world


async def _many_scopes_pat(client: AuthbusClient, world: World) -> str:
    scopes = [_scope("document", f"doc-{i}") for i in range(EXACT_SCOPES)] + [_scope("folder", "*")]
    created = await client.command(
        "create_pat", user_id=world.user_id, name="many scopes", scopes=scopes[:CREATE_CHUNK], token=world.admin_key
    )
    pat_id = created["result"]["pat_id"]
    for scope in scopes[CREATE_CHUNK:]:
        await client.command("add_scope", pat_id=pat_id, scope=scope, token=world.admin_key)
    return created["result"]["token"]


async def _tenant_token(client: AuthbusClient, world: World) -> str:
    """An HS256 JWT the tenant mints itself with ``per`` claims (Hivekit style)."""
    created = await client.command("create_signing_key", tenant_id=world.tenant_id, alg="HS256", token=world.admin_key)
    now = int(time.time())
    claims = {
        "tnd": world.tenant_id,
        "sub": "device-7",
        "iat": now,
        "exp": now + 24 * 3600,
        "jti": str(uuid.uuid4()),
        "per": {"docs": {"document/*": "CR"}},
    }
    key = unb64url(created["result"]["secret"])  # the bytes the secret encodes, as Hivekit's client keys it
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": created["result"]["kid"]})


async def start_echo(nc: Client, subject: str) -> Service:
    """The limit of the stack: a nats.micro responder with the same client library that does nothing."""
    service = await add_service(nc, name="bench-echo", version="0.1.0", queue_group="bench-echo")

    async def echo(request: Request) -> None:
        await request.respond(b'{"ok":true}')

    await service.add_endpoint(name="echo", subject=subject, handler=echo)
    await sync_with_server(nc)
    return service


PEER_TABLE = "bench_peer_keys"


class PeerVerifyRequest(msgspec.Struct):
    token: str


class Peer:
    """A SuperMQ-style verifier: every request looks its key up in PostgreSQL by id and
    compares a hash (SHA-256 rather than SuperMQ's scrypt, to be fair to it)."""

    def __init__(self, database_url: str, pool_size: int = 4) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(database_url, min_size=pool_size, max_size=pool_size, open=False)
        self.tokens: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, nc: Client, subject: str, keys: int = CREDENTIALS) -> Service:
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {PEER_TABLE}")
            await conn.execute(
                f"CREATE TABLE {PEER_TABLE} (id uuid PRIMARY KEY, owner_id uuid NOT NULL, secret_hash bytea NOT NULL, revoked boolean NOT NULL)"
            )
            for _ in range(keys):
                key_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
                await conn.execute(
                    f"INSERT INTO {PEER_TABLE} VALUES (%s, %s, %s, false)",
                    (key_id, uuid.uuid4(), hashlib.sha256(secret.encode()).digest()),
                )
                self.tokens.append(f"{key_id}.{secret}")
        service = await add_service(nc, name="bench-peer", version="0.1.0", queue_group="bench-peer")
        await service.add_endpoint(name="verify", subject=subject, handler=self._handle)
        await sync_with_server(nc)
        return service

    async def _handle(self, request: Request) -> None:
        # A Go service answers each request on its own goroutine; a task each is the same here.
        task = asyncio.create_task(self._verify(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verify(self, request: Request) -> None:
        req = msgspec.json.decode(request.data, type=PeerVerifyRequest)
        key_id, _, secret = req.token.partition(".")
        async with self.pool.connection() as conn:
            cursor = await conn.execute(f"SELECT owner_id, secret_hash, revoked FROM {PEER_TABLE} WHERE id = %s", (key_id,))
            row = await cursor.fetchone()
        valid = row is not None and not row[2] and hmac.compare_digest(bytes(row[1]), hashlib.sha256(secret.encode()).digest())
        reply = {"valid": valid, "owner_id": str(row[0]) if valid and row else None}
        await request.respond(msgspec.json.encode(reply))

    async def close(self) -> None:
        await self.pool.close()


class ScratchPostgres:
    """Scratch databases for the PostgreSQL scenarios, dropped afterwards: in the server at
    ``--database-url`` (AUTHBUS_BENCH_DATABASE_URL) or in a private one from pgserver."""

    def __init__(self, base_url: str | None, tmp: Path) -> None:
        self.base_url = base_url
        self.tmp = tmp
        self.names: list[str] = []
        self._server: Any = None

    def start(self) -> str:
        if self.base_url is None:
            try:
                import pgserver
            except ImportError:
                raise ScenarioFailed(
                    "the PostgreSQL scenarios need a server: pass --database-url or pip install 'authbus[bench]'"
                ) from None
            self._server = pgserver.get_server(self.tmp / "pg", cleanup_mode="stop")
            self.base_url = self._server.get_uri()
        return self.database()

    def database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        assert self.base_url is not None
        name = f"authbus_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return with_database(self.base_url, name)

    def stop(self) -> None:
        import psycopg

        if self.base_url is not None:
            with psycopg.connect(self.base_url, autocommit=True) as conn:
                for name in self.names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._server is not None:
            self._server.cleanup()
