"""nats-server's auth callout: the server asks authbus whether a connecting client may in.

A server configured for it (``authbus dev --callout``, or docs/operations.md §4) sends each
client's CONNECT to ``$SYS.REQ.USER.AUTH`` as an authorization request JWT, signed by the
server and sealed to our xkey when one is configured.  The client's token (its
``auth_token``, or the password of a user/password login) is verified on the read model
as ``verify`` does; the answer is a user JWT signed by the account issuer that places the
client in an account (root in authbus's own, everyone else in the client account) with
the permissions of projections/bus_access.py, or an error naming the reason, which the
server logs and the client sees as an authorization violation.  The JWT's ``name`` is the
connection's identity: infra/nats/bus_guard.py closes connections whose credential no longer
admits them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from nats.micro.request import Request

from authbus.handlers.backend import Backend
from authbus.handlers.metrics import OK
from authbus.handlers.natsauth.claims import (
    AUTH_CALLOUT_SUBJECT,
    ResponsePermission,
    authorization_response,
    decode_authorization_request,
    response_payload,
    user_claims,
)
from authbus.handlers.natsauth.jwt import JWTError, encode_jwt
from authbus.handlers.natsauth.nkeys import NKey, NKeyError, XKey
from authbus.projections.bus_access import BusGrant, BusLayout, bus_grant
from authbus.projections.inboxes import private_inbox

log = logging.getLogger("authbus.callout")
SUBJECT = AUTH_CALLOUT_SUBJECT
ENDPOINT = "auth_callout"  # its name in the request stats (nats micro, Prometheus)


@dataclass(frozen=True)
class CalloutKeys:
    issuer: NKey  # the account key the server trusts to sign users (config ``issuer``)
    xkey: XKey | None  # ours, when the server seals requests to it (config ``xkey``)
    layout: BusLayout  # authbus's own subjects, as the client account sees them
    client_account: str = "APP"  # where every client but root goes
    service_account: str = "AUTHBUS"  # authbus's own: root goes here
    lifetime: float = 3600.0  # longest a connection lives before it must authenticate again


def token_of(connect_opts: dict[str, Any]) -> str | None:
    """``nats://<token>@host`` sends ``auth_token``; ``nats://<any user>:<token>@host`` a password."""
    token = connect_opts.get("auth_token") or connect_opts.get("pass")
    return token if isinstance(token, str) and token else None


def user_jwt(grant: BusGrant, token: str, user_nkey: str, keys: CalloutKeys, now: float) -> str | None:
    """The user JWT for a granted connection; None when its credential ends within this second.

    A connection outlives no credential, and lives at most ``lifetime``.  The server counts
    ``exp`` in whole seconds: it is the credential's end rounded down, so the connection is
    closed no later than the credential ends, and a reconnect in what is left of that
    second is refused here as ``expired`` rather than let in again.
    """
    expires = now + keys.lifetime
    if grant.expires_ts is not None:
        expires = min(expires, grant.expires_ts)
    exp = int(expires)
    if exp <= now:
        return None
    if grant.root:
        claims = user_claims(user_nkey, keys.service_account, name=grant.name, expires=exp)
    else:
        allowed = grant.permissions(keys.layout, private_inbox(token))
        claims = user_claims(
            user_nkey,
            keys.client_account,
            name=grant.name,
            pub_allow=allowed.pub_allow,
            sub_allow=allowed.sub_allow,
            pub_deny=allowed.pub_deny,
            sub_deny=allowed.sub_deny,
            # A subscriber may answer requests it receives, without publish rights on inboxes.
            allow_responses=ResponsePermission(max_msgs=1) if allowed.answers_requests else None,
            expires=exp,
        )
    return encode_jwt(claims, keys.issuer)


def callout(backend: Backend, keys: CalloutKeys) -> Callable[[Request], Awaitable[None]]:
    """The handler of the ``auth_callout`` endpoint, answered inline: read model only."""
    seen = backend.stats.endpoints[ENDPOINT]

    async def answer(msg: Request) -> None:
        started = perf_counter()
        outcome, message = await respond(msg)
        seen.record(outcome, perf_counter() - started, message)

    async def respond(msg: Request) -> tuple[str, str | None]:
        """Answers the server; the outcome and error message for the request stats."""
        now = backend.now()
        try:
            request = decode_authorization_request(msg.data, msg.headers, keys.xkey, now=now)
        except (JWTError, NKeyError) as error:
            # Not from a server configured as we are: no answer of ours could be read.  The
            # messages name no value from the request.
            log.warning("auth callout: ignored a request: %s", error)
            return "invalid_request", str(error)
        except Exception as error:  # a shape no server sends
            log.warning("auth callout: ignored a malformed request (%s)", type(error).__name__)
            return "invalid_request", "malformed request"
        try:
            host = request.client_info.get("host")
            token = token_of(request.connect_opts)
            grant: BusGrant | str = "no_token"
            if token:
                grant = bus_grant(backend.model, token, now, backend.keys, backend.bearers)
            if isinstance(grant, BusGrant) and token:
                user = user_jwt(grant, token, request.user_nkey, keys, now)
                if user is None:
                    grant = "expired"
            if isinstance(grant, BusGrant):
                response = authorization_response(request.user_nkey, request.server_id, keys.issuer, jwt=user)
                log.info(
                    "auth callout: let in principal %s with %s %s from %.64s",
                    grant.principal.id,
                    grant.credential.kind,
                    grant.credential.id,
                    host,
                )
            else:
                response = authorization_response(request.user_nkey, request.server_id, keys.issuer, error=grant)
                log.info("auth callout: refused a client from %.64s: %s", host, grant)
        except Exception:
            log.exception("auth callout: unexpected error")
            grant = "internal"
            response = authorization_response(request.user_nkey, request.server_id, keys.issuer, error="internal error")
        await msg.respond(response_payload(response, request, keys.xkey))
        if isinstance(grant, BusGrant):
            return OK, None
        return ("internal" if grant == "internal" else "unauthenticated"), grant

    return answer
