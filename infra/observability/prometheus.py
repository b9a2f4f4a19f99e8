"""``--metrics-port``: the request stats and a few gauges in Prometheus' text format, served
over plain HTTP by asyncio itself (one path, GET only, no dependency)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from authbus.handlers.metrics import BUCKETS, RequestStats

log = logging.getLogger("authbus.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READ_SECONDS = 5.0  # a scraper that sends no request line in this long is dropped
MAX_REQUEST = 8 * 1024

# name → (help, value); see Node.gauges
Gauges = Callable[[], dict[str, tuple[str, float]]]


def render(stats: RequestStats, gauges: dict[str, tuple[str, float]]) -> str:
    lines = [
        "# HELP authbus_requests_total Requests answered, by endpoint and outcome (ok or the error code).",
        "# TYPE authbus_requests_total counter",
    ]
    for endpoint, seen in stats.endpoints.items():
        for outcome, count in sorted(seen.outcomes.items()):
            lines.append(f'authbus_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}} {count}')
    lines += [
        "# HELP authbus_request_duration_seconds Time from receiving a request to sending its reply.",
        "# TYPE authbus_request_duration_seconds histogram",
    ]
    for endpoint, seen in stats.endpoints.items():
        if not seen.count:
            continue
        cumulative = 0
        for bound, count in zip((*map(repr, BUCKETS), "+Inf"), seen.buckets, strict=False):
            cumulative += count
            lines.append(f'authbus_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{bound}"}} {cumulative}')
        lines.append(f'authbus_request_duration_seconds_sum{{endpoint="{endpoint}"}} {seen.seconds!r}')
        lines.append(f'authbus_request_duration_seconds_count{{endpoint="{endpoint}"}} {seen.count}')
    for name, (help_text, value) in gauges.items():
        lines += [f"# HELP authbus_{name} {help_text}", f"# TYPE authbus_{name} gauge", f"authbus_{name} {value!r}"]
    return "\n".join(lines) + "\n"


class MetricsServer:
    def __init__(self, host: str, port: int, stats: RequestStats, gauges: Gauges) -> None:
        self.host, self.port = host, port
        self.stats, self.gauges = stats, gauges
        self._server: asyncio.Server | None = None

    async def start(self) -> MetricsServer:
        self._server = await asyncio.start_server(self._answer, self.host, self.port, limit=MAX_REQUEST)
        self.port = self._server.sockets[0].getsockname()[1]  # the one chosen, when asked for 0
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            method, path, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if not version.startswith("HTTP/1."):
                return
            if path.split("?", 1)[0] != "/metrics":
                status, body = "404 Not Found", b"try /metrics\n"
            elif method not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", b"GET only\n"
            else:
                status, body = "200 OK", render(self.stats, self.gauges()).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # not HTTP/1, too slow or too big: nothing to answer
        finally:
            writer.close()
