"""A small async client for the wire protocol, used by the CLI and the tests."""

from __future__ import annotations

from typing import Any

import msgspec
import nats
from nats.aio.client import Client


class AuthbusError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details = code, message, details


async def _quiet(error: Exception) -> None:
    """nats.py logs every connection error with a traceback by default; callers see the exception."""


class AuthbusClient:
    def __init__(self, nc: Client, prefix: str = "auth", token: str | None = None, timeout: float = 10.0) -> None:
        self.nc = nc
        self.prefix = prefix
        self.token = token
        self.timeout = timeout

    @classmethod
    async def connect(cls, url: str, prefix: str = "auth", token: str | None = None) -> AuthbusClient:
        nc = await nats.connect(
            # allow_reconnect=False makes nats.py retry a refused first connect forever.
            url, name="authbus-client", connect_timeout=5, max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=_quiet
        )
        return cls(nc, prefix, token)

    async def close(self) -> None:
        await self.nc.drain()

    async def raw(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        msg = await self.nc.request(f"{self.prefix}.v1.{subject}", body, timeout=self.timeout, headers=headers)
        return msgspec.json.decode(msg.data), dict(msg.headers or {})

    async def call(self, subject: str, body: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        reply, _ = await self.raw(subject, msgspec.json.encode(body or {}), headers)
        error = reply.get("error")
        if error is not None:
            raise AuthbusError(error["code"], error["message"], error.get("details") or {})
        return reply

    async def command(self, name: str, /, token: str | None = None, **fields: Any) -> dict[str, Any]:
        return await self.call(f"cmd.{name}", fields, token)

    async def admin(self, name: str, /, token: str | None = None, **fields: Any) -> dict[str, Any]:
        return await self.call(f"admin.{name}", fields, token)

    async def verify(self, token: str, **fields: Any) -> dict[str, Any]:
        return await self.call("verify", {"token": token, **fields}, token="")

    async def authorize(self, token: str, **fields: Any) -> dict[str, Any]:
        return await self.call("authorize", {"token": token, **fields}, token="")
