"""The ``authbus`` nats.micro service: one endpoint per subject, all in queue group ``authbus``."""

from __future__ import annotations

import logging

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.service import Service

from authbus.domain.commands import COMMANDS
from authbus.handlers import sessions
from authbus.handlers.admin import ADMIN_READS, admin_read
from authbus.handlers.audit import AUDIT_READS, audit_read
from authbus.handlers.audit_key import audit_public_key
from authbus.handlers.commands import command, redeem
from authbus.handlers.health import health
from authbus.handlers.queries import authorize, jwks, verify
from authbus.handlers.wire import Backend, endpoint

QUEUE_GROUP = "authbus"
# Answered from the read model without waiting: no task of their own (see wire.endpoint).
INLINE = frozenset({"verify", "authorize", "jwks", "audit_public_key"})
QUIET = frozenset({"health"})  # asked every few seconds by probes: logged at debug level only
# Requests anyone may send that wait on argon2 or a session: bounded apart from the rest.
LOGIN_LANE = frozenset({"login", "refresh", "logout", "challenge_answer", "redeem"})
VERSION = "0.1.0"


def subjects(prefix: str) -> dict[str, str]:
    """Endpoint name → subject, for every endpoint this service answers."""
    names = {
        "verify": f"{prefix}.v1.verify",
        "authorize": f"{prefix}.v1.authorize",
        "jwks": f"{prefix}.v1.jwks",
        "login": f"{prefix}.v1.login",
        "refresh": f"{prefix}.v1.refresh",
        "logout": f"{prefix}.v1.logout",
        "challenge": f"{prefix}.v1.challenge",
        "challenge_answer": f"{prefix}.v1.challenge.answer",
        "redeem": f"{prefix}.v1.redeem",
        "audit_public_key": f"{prefix}.v1.audit.public_key",
        "health": f"{prefix}.v1.health",
    }
    names.update({f"cmd_{name}": f"{prefix}.v1.cmd.{name}" for name in COMMANDS})
    names.update({f"admin_{name}": f"{prefix}.v1.admin.{name}" for name in ADMIN_READS})
    names.update({f"admin_{name}": f"{prefix}.v1.admin.{name}" for name in AUDIT_READS})
    return names


async def start_service(nc: Client, backend: Backend, prefix: str) -> Service:
    service = await add_service(
        nc,
        name="authbus",
        version=VERSION,
        description="event-sourced authentication and authorization",
        queue_group=QUEUE_GROUP,
        stats_handler=backend.stats.micro,
    )
    handlers = {
        "verify": verify(backend),
        "authorize": authorize(backend),
        "jwks": jwks(backend),
        "login": sessions.login_endpoint(backend),
        "refresh": sessions.refresh_endpoint(backend),
        "logout": sessions.logout_endpoint(backend),
        "challenge": sessions.challenge_endpoint(backend),
        "challenge_answer": sessions.answer_endpoint(backend),
        "redeem": redeem(backend),
        "audit_public_key": audit_public_key(backend),
        "health": health(backend),
    }
    handlers.update({f"cmd_{name}": command(backend, cls) for name, cls in COMMANDS.items()})
    handlers.update({f"admin_{name}": admin_read(backend, name) for name in ADMIN_READS})
    handlers.update({f"admin_{name}": audit_read(backend, name) for name in AUDIT_READS})
    for name, subject in subjects(prefix).items():
        handler = endpoint(
            backend,
            name,
            handlers[name],
            concurrent=name not in INLINE,
            access_log=logging.DEBUG if name in QUIET else logging.INFO,
            lane="login" if name in LOGIN_LANE else "default",
        )
        await service.add_endpoint(name=name, subject=subject, handler=handler, queue_group=QUEUE_GROUP)
    return service
