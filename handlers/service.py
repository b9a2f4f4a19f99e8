"""The ``authbus`` nats.micro service: one endpoint per subject, all in queue group ``authbus``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from authbus.domain.commands import COMMANDS
from authbus.handlers import sessions
from authbus.handlers.admin_reads import ADMIN_READS, admin_read
from authbus.handlers.audit_key import audit_public_key
from authbus.handlers.audit_reads import AUDIT_READS, audit_read
from authbus.handlers.backend import Backend
from authbus.handlers.command_endpoints import command, redeem
from authbus.handlers.health import health
from authbus.handlers.verification import authorize, jwks, verify
from authbus.handlers.wire import Reply, endpoint

QUEUE_GROUP = "authbus"
# Answered from the read model without waiting: no task of their own (see wire.endpoint).
INLINE = frozenset({"verify", "authorize", "jwks", "audit_public_key"})
QUIET = frozenset({"health"})  # asked every few seconds by probes: logged at debug level only
# Requests anyone may send that wait on argon2 or a session: bounded apart from the rest.
LOGIN_LANE = frozenset({"login", "register", "refresh", "logout", "challenge_answer", "redeem"})
VERSION = "0.1.0"


# Each endpoint's group under ``<prefix>.v1`` (a nats.micro group: "" is the group itself)
# and its subject there.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "verify": ("", "verify"),
    "authorize": ("", "authorize"),
    "jwks": ("", "jwks"),
    "login": ("", "login"),
    "register": ("", "register"),
    "refresh": ("", "refresh"),
    "logout": ("", "logout"),
    "challenge": ("", "challenge"),
    "challenge_answer": ("", "challenge.answer"),
    "redeem": ("", "redeem"),
    "audit_public_key": ("", "audit.public_key"),
    "health": ("", "health"),
    **{f"cmd_{name}": ("cmd", name) for name in COMMANDS},
    **{f"admin_{name}": ("admin", name) for name in (*ADMIN_READS, *AUDIT_READS)},
}


def subjects(prefix: str) -> dict[str, str]:
    """Endpoint name → subject, for every endpoint this service answers."""
    return {
        name: ".".join(part for part in (prefix, "v1", group, subject) if part) for name, (group, subject) in ENDPOINTS.items()
    }


def handlers(backend: Backend) -> dict[str, Callable[[Request], Awaitable[Reply]]]:
    made = {
        "verify": verify(backend),
        "authorize": authorize(backend),
        "jwks": jwks(backend),
        "login": sessions.login_endpoint(backend),
        "register": sessions.register_endpoint(backend),
        "refresh": sessions.refresh_endpoint(backend),
        "logout": sessions.logout_endpoint(backend),
        "challenge": sessions.challenge_endpoint(backend),
        "challenge_answer": sessions.answer_endpoint(backend),
        "redeem": redeem(backend),
        "audit_public_key": audit_public_key(backend),
        "health": health(backend),
    }
    made.update({f"cmd_{name}": command(backend, cls) for name, cls in COMMANDS.items()})
    made.update({f"admin_{name}": admin_read(backend, name) for name in ADMIN_READS})
    made.update({f"admin_{name}": audit_read(backend, name) for name in AUDIT_READS})
    return made


async def start_service(nc: Client, backend: Backend, prefix: str) -> Service:
    service = await add_service(
        nc,
        name="authbus",
        version=VERSION,
        description="event-sourced authentication and authorization",
        queue_group=QUEUE_GROUP,
        stats_handler=backend.stats.micro,
    )
    api = service.add_group(name=f"{prefix}.v1", queue_group=QUEUE_GROUP)
    groups = {"": api, "cmd": api.add_group(name="cmd"), "admin": api.add_group(name="admin")}
    for name, handle in handlers(backend).items():
        group, subject = ENDPOINTS[name]
        handler = endpoint(
            backend,
            name,
            handle,
            concurrent=name not in INLINE,
            access_log=logging.DEBUG if name in QUIET else logging.INFO,
            lane="login" if name in LOGIN_LANE else "default",
        )
        await groups[group].add_endpoint(name=name, subject=subject, handler=handler)
    return service
