"""One load-generating process of ``authbus bench``.

It runs apart from the server so the two never share an interpreter: it reads a
``LoadSpec`` as JSON on stdin, keeps ``concurrency`` requests in flight until it has sent
``requests`` (after ``warmup`` unmeasured ones), and prints a ``LoadResult`` as JSON.
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgspec
import nats

from authbus.infra.client import AuthbusClient
from authbus.infra.client.verify_cache import CachedVerifier


class LoadSpec(msgspec.Struct):
    nats_url: str
    subject: str
    payloads: list[bytes]  # sent in turn
    requests: int
    concurrency: int
    warmup: int = 0
    headers: dict[str, str] | None = None
    expect: bytes = b""  # every reply must contain this, or it counts as an error
    timeout: float = 10.0
    # Verify through infra.client.verify_cache.CachedVerifier instead: each payload is a bare token,
    # ``subject`` is the subject prefix, and a valid answer is the expected one.
    cached_verify: bool = False
    # Over HTTP instead: GET ``subject`` (a path) on 127.0.0.1:``http_port``, each payload a
    # bearer token for the Authorization header, a reply fine when its status line holds ``expect``.
    http_port: int | None = None


class LoadResult(msgspec.Struct):
    started: float  # wall clock, so several processes' results can be merged
    finished: float
    latencies_us: list[int]
    errors: int
    first_error: str | None


class _HttpConnection:
    """One keep-alive connection, a request at a time: the least an HTTP client can do."""

    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, token: bytes) -> bytes:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n" % (self.path.encode(), token))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
        )
        if length:
            await reader.readexactly(length)
        return head.split(b"\r\n", 1)[0]


async def _drive(
    nc: nats.NATS, spec: LoadSpec, count: int, latencies: list[int] | None, verifier: CachedVerifier | None
) -> tuple[int, str | None]:
    remaining = count
    errors = 0
    first_error: str | None = None
    payloads, n = spec.payloads, len(spec.payloads)

    async def worker() -> None:
        nonlocal remaining, errors, first_error
        http = _HttpConnection(spec.http_port, spec.subject) if spec.http_port is not None else None
        while remaining > 0:
            remaining -= 1
            payload = payloads[remaining % n]
            started = time.perf_counter()
            try:
                if http is not None:
                    status = await http.get(payload)
                    ok, detail = spec.expect in status, status.decode(errors="replace")
                elif verifier is not None:
                    verdict = await verifier.verify(payload.decode())
                    ok, detail = verdict.valid, repr(verdict)[:200]
                else:
                    reply = await nc.request(spec.subject, payload, timeout=spec.timeout, headers=spec.headers)
                    ok = spec.expect in reply.data
                    detail = reply.data[:200].decode(errors="replace")
            except Exception as error:  # a timeout or a lost connection is a measured failure
                ok, detail = False, repr(error)
            if latencies is not None:
                latencies.append(int((time.perf_counter() - started) * 1e6))
            if not ok:
                errors += 1
                first_error = first_error or detail

    await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, count) or 1)))
    return errors, first_error


async def run(spec: LoadSpec) -> LoadResult:
    nc = await nats.connect(spec.nats_url, name="authbus-bench-load", max_reconnect_attempts=0)
    verifier = await CachedVerifier.start(AuthbusClient(nc, spec.subject)) if spec.cached_verify else None
    try:
        if spec.warmup:
            await _drive(nc, spec, spec.warmup, None, verifier)
        latencies: list[int] = []
        started = time.time()
        errors, first_error = await _drive(nc, spec, spec.requests, latencies, verifier)
        return LoadResult(started, time.time(), latencies, errors, first_error)
    finally:
        await nc.close()


def main() -> None:
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=LoadSpec)
    sys.stdout.buffer.write(msgspec.json.encode(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
