"""Knowing that a NATS server has processed everything a nats.py client has sent.

``Client.flush()`` is not enough for that. nats.py (2.15, 2.16) writes the flush's PING
straight to the socket, while ``subscribe()`` and ``publish()`` leave their SUB and PUB in
a buffer that a flusher task writes on the next turn of the event loop. So the PING can
reach the server first and its PONG proves nothing about the SUB. A message that another
connection publishes right after ``flush()`` returned can then find no subscriber. That
happened to 3 to 6 in a hundred fresh connections on a loopback server.

The flusher is woken by the SUB or PUB itself, so it has handed the buffer to the socket
before the first PONG can be read (the socket not being backed up); a second PING then
travels behind it.
"""

from __future__ import annotations

from nats.aio.client import Client


async def sync_with_server(nc: Client, timeout: float = 10) -> None:
    """Return once the server has processed every SUB, UNSUB and PUB sent on ``nc`` before
    the call."""
    await nc.flush(timeout)
    await nc.flush(timeout)
