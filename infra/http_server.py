"""``--http-port``: the HTTP edge (handlers/http_edge.py) over HTTP/1.1, on asyncio streams
of the node's own event loop, so it answers from the same read model as the NATS endpoints.

The protocol is h11's (python-hyper's sans-I/O HTTP/1.1: parsing, framing, keep-alive, and
bounds on what it buffers), the I/O asyncio's.  Why not a framework: the edge has eight
routes and no middleware to speak of, and the obvious one, aiohttp, cannot be installed
beside nats-py without cost: nats-py imports it whenever it is there (for its websocket
transport), and every CLI call then spends 150 ms more before it sends anything.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import h11

from authbus.handlers.backend import Backend
from authbus.handlers.http_edge import HttpRequest, HttpResponse, answer, problem

Respond = Callable[[HttpRequest], Awaitable[HttpResponse]]

log = logging.getLogger("authbus.http")
MAX_BODY = 16 * 1024  # an introspection form holds one token
MAX_HEAD = 32 * 1024  # the request line and headers: a bearer is at most 8 KiB
READ_SECONDS = 10.0  # a client that sends nothing for this long is dropped (an idle keep-alive too)
CHUNK = 64 * 1024


class _TooLarge(Exception):
    pass


class HttpEdge:
    """``respond``: what answers a request, the edge's routes unless a caller (the bench's
    no-op baseline) gives its own."""

    def __init__(self, backend: Backend | None, host: str, port: int, respond: Respond | None = None) -> None:
        self.host, self.port = host, port
        if respond is None:
            assert backend is not None
            respond = functools.partial(answer, backend)
        self.respond = respond
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> HttpEdge:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the port taken, when 0 asked for any
        log.info("HTTP edge at http://%s:%d", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._open):  # idle keep-alive connections would hold the close up
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while await self._one(conn, reader, writer):
                conn.start_next_cycle()
        except h11.RemoteProtocolError as error:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send(conn, writer, problem(error.error_status_hint, "the request is not HTTP/1.1 this edge reads"))
        except _TooLarge:
            await self._send(conn, writer, problem(413, f"a request body is at most {MAX_BODY} bytes"))
        except (TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def _one(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection goes on to another."""
        request = await _next(conn, reader)
        if not isinstance(request, h11.Request):
            return False
        headers: dict[str, str] = {}
        for name, value in request.headers:  # a repeated field is one, its lines joined (RFC 9110 §5.3)
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if len(request.target) + sum(len(n) + len(v) for n, v in request.headers) > MAX_HEAD:  # h11 bounds only a partial head
            await self._send(conn, writer, problem(431, f"the request line and headers are at most {MAX_HEAD} bytes"))
            return False
        if int(headers.get("content-length", "0") or 0) > MAX_BODY:
            raise _TooLarge
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while not isinstance(event := await _next(conn, reader), h11.EndOfMessage):
            if isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _TooLarge
        target = urlsplit(request.target.decode("latin-1"))
        asked = HttpRequest(
            method=request.method.decode("latin-1"),
            path=target.path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers=headers,
            body=bytes(body),
            origin=f"http://{headers.get('host', f'{self.host}:{self.port}')}",
        )
        try:
            response = await self.respond(asked)
        except Exception:  # a bug: said once in the log, never to the client
            log.exception("the HTTP edge failed to answer %s %s", asked.method, asked.path)
            response = problem(500, "the request could not be answered")
        await self._send(conn, writer, response, head_only=asked.method == "HEAD")
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: HttpResponse, head_only: bool = False) -> None:
        headers = [*response.headers.items(), ("Content-Length", str(len(response.body)))]
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        if response.body and not head_only:
            writer.write(conn.send(h11.Data(data=response.body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


async def _next(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await asyncio.wait_for(reader.read(CHUNK), READ_SECONDS))
    return event
