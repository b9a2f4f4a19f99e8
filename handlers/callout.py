"""nats-server's auth callout: the server asks authbus whether a connecting client may in.

A server configured for it (``authbus dev --callout``, or docs/operations.md §4) sends each
client's CONNECT to ``$SYS.REQ.USER.AUTH`` as an authorization request JWT, signed by the
server and sealed to our xkey when one is configured.  The client's token (its
``auth_token``, or the password of a user/password login) is verified on the read model
as ``verify`` does; the answer is a user JWT signed by the account issuer whose allow
lists come from the credential's subject scopes (projections/bus_access.py), or an error
naming the reason, which the server logs and the client sees as an authorization violation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from nats.micro.request import Request

from authbus.handlers.nats_jwt import (
    AUTH_CALLOUT_SUBJECT,
    GLOBAL_ACCOUNT,
    JWTError,
    NKey,
    NKeyError,
    ResponsePermission,
    XKey,
    authorization_response,
    decode_authorization_request,
    encode_jwt,
    response_payload,
    user_claims,
)
from authbus.handlers.metrics import OK
from authbus.handlers.wire import Backend
from authbus.projections.bus_access import EVERY_SUBJECT, BusGrant, Reserved, bus_grant

log = logging.getLogger("authbus.callout")
SUBJECT = AUTH_CALLOUT_SUBJECT
ENDPOINT = "auth_callout"  # its name in the request stats (nats micro, Prometheus)


@dataclass(frozen=True)
class CalloutKeys:
    issuer: NKey  # the account key the server trusts to sign users (config ``issuer``)
    xkey: XKey | None  # ours, when the server seals requests to it (config ``xkey``)
    reserved: Reserved  # authbus's own subjects, denied to all but root
    account: str = GLOBAL_ACCOUNT
    lifetime: float = 3600.0  # longest a connection lives before it must authenticate again


def token_of(connect_opts: dict[str, Any]) -> str | None:
    """``nats://<token>@host`` sends ``auth_token``; ``nats://<any user>:<token>@host`` a password."""
    token = connect_opts.get("auth_token") or connect_opts.get("pass")
    return token if isinstance(token, str) and token else None


def user_jwt(grant: BusGrant, user_nkey: str, keys: CalloutKeys, now: float) -> str:
    # A connection outlives no credential, and lives at most ``lifetime``: at its end the
    # server disconnects the client, whose reconnect is checked afresh (so a revocation
    # reaches connected clients within ``lifetime``).
    expires = now + keys.lifetime
    if grant.expires_ts is not None:
        expires = min(expires, grant.expires_ts)
    # An empty allow list is left out of the JWT, and a missing list means "no limit" to
    # the server: a side granted nothing is denied everything instead.
    claims = user_claims(
        user_nkey,
        keys.account,
        name=str(grant.principal.id),
        pub_allow=grant.publish,
        sub_allow=grant.subscribe,
        pub_deny=grant.denied.publish if grant.publish else (EVERY_SUBJECT,),
        sub_deny=grant.denied.subscribe if grant.subscribe else (EVERY_SUBJECT,),
        # A subscriber may answer requests it receives, without publish rights on inboxes.
        allow_responses=ResponsePermission(max_msgs=1) if grant.subscribe else None,
        expires=max(int(expires), int(now) + 1),
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
            grant = bus_grant(backend.model, token, now, backend.keys, keys.reserved) if token else "no_token"
            if isinstance(grant, BusGrant):
                response = authorization_response(
                    request.user_nkey, request.server_id, keys.issuer, jwt=user_jwt(grant, request.user_nkey, keys, now)
                )
                log.info(
                    "auth callout: let in principal %s with %s %s from %.64s", grant.principal.id,
                    grant.credential.kind, grant.credential.id, host,
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
