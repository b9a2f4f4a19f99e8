"""Each connection's private inbox, derived from the bearer it presents: the Python client
asks for replies there, and the auth callout allows that connection no other inbox
(projections/bus_access.py).  Pure and light: the client imports it."""

from __future__ import annotations

import hashlib

INBOX_ROOT = "_I"
INBOX_BITS = 64  # two connections of different principals sharing an inbox: ~n²/2^65
EVERY_SUBJECT = ">"


def private_inbox(token: str) -> str:
    """The inbox prefix of the connection that presents ``token`` (with nats.py:
    ``nats.connect(..., inbox_prefix=private_inbox(token))``)."""
    digest = hashlib.sha256(b"authbus/v1/inbox\0" + token.encode()).digest()
    bits = format(int.from_bytes(digest[: INBOX_BITS // 8], "big"), f"0{INBOX_BITS}b")
    return ".".join((INBOX_ROOT, *bits))


def others_inboxes(inbox: str) -> tuple[str, ...]:
    """Patterns matching every private inbox but ``inbox``: the sibling of each step of its
    path.  (A pattern names no "all but", so the complement is spelt out, 64 patterns.)"""
    root, *bits = inbox.split(".")
    return tuple(".".join((root, *bits[:i], "1" if bit == "0" else "0", EVERY_SUBJECT)) for i, bit in enumerate(bits))
