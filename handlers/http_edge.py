"""The HTTP edge: what software that speaks HTTP, not NATS, asks of authbus, answered from
the same read model on the same event loop (docs/wire.md §11).

* OIDC discovery and JWKS, for JWT libraries (``jose.createRemoteJWKSet``, PyJWT's
  ``PyJWKClient``), for all tenants and per tenant;
* RFC 7662 token introspection, for every credential kind;
* forward auth, for gateways (nginx ``auth_request``, Traefik ForwardAuth, Envoy
  ``ext_authz``): 200 with the principal in headers, or 401 / 403 saying why;
* liveness and readiness.

Errors are RFC 7807 problem details; nothing echoes a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from aiohttp import web

from authbus.domain.scopes import parse_scope, scope_text
from authbus.domain.signing import ASYMMETRIC_ALGS
from authbus.handlers.backend import Backend
from authbus.handlers.wire import MAX_TOKEN
from authbus.projections import queries

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JWKS_MAX_AGE = 60  # seconds: a verifier meets a rotated-in key within a minute, and at once on an unknown kid
PROBLEM = "application/problem+json"
BEARERS = frozenset({"pat", "api_key", "access_token", "tenant_token"})
# The principal a gateway hands on to the service behind it.
PRINCIPAL_HEADERS = ("X-Authbus-Principal", "X-Authbus-Tenant", "X-Authbus-Kind", "X-Authbus-Roles", "X-Authbus-Credential")


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    """An RFC 7807 problem: ``title`` the kind of problem, ``detail`` what was wrong here."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM, headers=headers)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (no such path, another method, a body too large) as problems too."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return problem(error.status, HTTPStatus(error.status).phrase, error.reason, allow)


def challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> dict[str, str]:
    """``WWW-Authenticate`` as RFC 6750 §3 writes it."""
    parts = ['Bearer realm="authbus"']
    parts += [
        f'{name}="{value}"' for name, value in (("error", error), ("error_description", description), ("scope", scope)) if value
    ]
    return {"WWW-Authenticate": ", ".join(parts)}


def bearer_of(header: str) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or the password of HTTP Basic (as
    RFC 7662 clients authenticate); None when there is none."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _base(backend: Backend, request: web.Request) -> str:
    """Where this edge is as clients reach it: the issuer when it is a URL, else the request's origin."""
    issuer = backend.issuer
    return issuer.rstrip("/") if issuer.startswith(("http://", "https://")) else str(request.url.origin())


def _tenant(backend: Backend, request: web.Request) -> UUID | None:
    """The tenant a per-tenant path names; None for the all-tenants one."""
    raw = request.match_info.get("tenant_id")
    if raw is None:
        return None
    try:
        tenant_id = UUID(raw)
    except ValueError:
        raise web.HTTPNotFound(reason="no such tenant") from None
    if tenant_id not in backend.model.tenants:
        raise web.HTTPNotFound(reason="no such tenant")
    return tenant_id


def discovery(backend: Backend) -> Handler:
    """``/.well-known/openid-configuration``: where the keys and introspection are."""

    async def handle(request: web.Request) -> web.Response:
        tenant_id = _tenant(backend, request)
        base = _base(backend, request)
        keys_at = f"{base}/tenants/{tenant_id}" if tenant_id is not None else base
        document = {
            "issuer": backend.issuer,
            "jwks_uri": f"{keys_at}/.well-known/jwks.json",
            "introspection_endpoint": f"{base}/oauth2/introspect",
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted(ASYMMETRIC_ALGS),
            "grant_types_supported": ["password", "refresh_token"],
        }
        return web.json_response(document, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})

    return handle


def jwks(backend: Backend) -> Handler:
    """The public keys that verify access tokens; an ETag lets a verifier ask again cheaply."""

    async def handle(request: web.Request) -> web.Response:
        body = json.dumps({"keys": queries.jwks(backend.model, _tenant(backend, request))}, sort_keys=True)
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
        headers = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}, must-revalidate", "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(text=body, content_type="application/jwk-set+json", headers=headers)

    return handle


def introspect(backend: Backend) -> Handler:
    """RFC 7662.  The caller authenticates with its own authbus credential (Bearer, or the
    password of HTTP Basic) and learns about tokens of its own tenant (root: of any); any
    other token, like an invalid one, is ``{"active": false}``."""

    async def handle(request: web.Request) -> web.Response:
        caller = bearer_of(request.headers.get("Authorization", ""))
        actor = None
        if caller is not None and len(caller) <= MAX_TOKEN:
            actor = queries.actor_for(backend.model, caller, backend.now(), backend.keys, backend.bearers)
        if actor is None:
            return problem(401, "Unauthorized", "authenticate with an authbus credential", challenge("invalid_client"))
        if request.content_type != "application/x-www-form-urlencoded":
            return problem(400, "Bad Request", "send the token as application/x-www-form-urlencoded (RFC 7662 §2.1)")
        form = parse_qs((await request.read()).decode("utf-8", "replace"), keep_blank_values=True)
        given = form.get("token", [])
        if len(given) != 1 or not 0 < len(given[0]) <= MAX_TOKEN:
            return problem(400, "Bad Request", f"give one token of 1–{MAX_TOKEN} characters", invalid_params=[{"name": "token"}])
        answer = introspection(backend, given[0], None if actor.is_root else actor.tenant_id)
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    return handle


def introspection(backend: Backend, token: str, tenant_id: UUID | None) -> dict[str, Any]:
    """The RFC 7662 answer about ``token`` for a caller of ``tenant_id`` (None: root)."""
    verdict = queries.verify(backend.model, token, backend.now(), backend.keys, backend.bearers)
    credential, principal = verdict.credential, verdict.principal
    if not verdict.valid or credential.kind not in BEARERS or tenant_id not in (None, principal.tenant_id):
        return {"active": False}
    answer: dict[str, Any] = {
        "active": True,
        "token_type": credential.kind,
        "sub": getattr(principal, "subject", None) or str(principal.id),
        "iss": backend.issuer,
        "tnd": str(principal.tenant_id),
        "jti": str(credential.id),
    }
    if credential.expires_at is not None:
        answer["exp"] = int(datetime.fromisoformat(credential.expires_at.replace("Z", "+00:00")).timestamp())
    if credential.scopes is not None:
        answer["scope"] = " ".join(scope_text(scope) for scope in credential.scopes.values())
    if getattr(principal, "username", None):
        answer["username"] = principal.username
    return answer


def forward_auth(backend: Backend) -> Handler:
    """For a gateway: the request's bearer, and what it must hold (``scope`` and
    ``min_role``, as query parameters or ``X-Authbus-Scope`` / ``X-Authbus-Min-Role``
    headers; ``tenant_id`` / ``X-Authbus-Tenant`` for the tenant the request concerns).
    Nothing wanted: any valid bearer passes."""

    async def handle(request: web.Request) -> web.Response:
        wanted = {name: request.query.get(name) or request.headers.get(header) for name, header in WANTED.items()}
        scope = parse_scope(wanted["scope"]) if wanted["scope"] else None
        if wanted["scope"] and scope is None:
            return problem(
                400,
                "Bad Request",
                "scope is written [domain/]entity_type:operation:entity_id",
                invalid_params=[{"name": "scope"}],
            )
        try:
            tenant_id = UUID(wanted["tenant_id"]) if wanted["tenant_id"] else None
        except ValueError:
            return problem(400, "Bad Request", "tenant_id is not a UUID", invalid_params=[{"name": "tenant_id"}])
        token = bearer_of(request.headers.get("Authorization", ""))
        if token is None or len(token) > MAX_TOKEN:
            return problem(401, "Unauthorized", "a bearer token is needed", challenge())
        triple = (None, None, None) if scope is None else (scope.entity_type, scope.operation, scope.entity_id)
        decision = (
            queries.authorize(
                backend.model,
                token,
                backend.now(),
                backend.keys,
                scope.domain if scope else None,
                *triple,
                tenant_id,
                backend.bearers,
                wanted["min_role"],
            )
            if scope or wanted["min_role"]
            else None
        )
        verdict = (
            decision.verdict
            if decision is not None
            else queries.verify(backend.model, token, backend.now(), backend.keys, backend.bearers)
        )
        if not verdict.valid:
            return problem(401, "Unauthorized", f"the token is {verdict.reason}", challenge("invalid_token", verdict.reason))
        if verdict.credential.kind not in BEARERS:
            return problem(401, "Unauthorized", "not a bearer credential", challenge("invalid_token", "not_a_bearer_credential"))
        if decision is not None and not decision.allowed:
            shown = wanted["scope"] or f"min_role:{wanted['min_role']}"
            return problem(403, "Forbidden", decision.reason, challenge("insufficient_scope", decision.reason, shown))
        principal, credential = verdict.principal, verdict.credential
        values = (str(principal.id), str(principal.tenant_id), principal.kind, ",".join(principal.roles), str(credential.id))
        return web.Response(
            status=200, headers={**dict(zip(PRINCIPAL_HEADERS, values, strict=True)), "Cache-Control": "no-store"}
        )

    return handle


WANTED = {"scope": "X-Authbus-Scope", "min_role": "X-Authbus-Min-Role", "tenant_id": "X-Authbus-Tenant"}


def healthz(backend: Backend) -> Handler:
    """Liveness: the process answers."""

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    return handle


def readyz(backend: Backend) -> Handler:
    """Readiness: ``auth.v1.health``'s answer, 200 when ``ok`` and 503 when ``degraded``."""

    async def handle(request: web.Request) -> web.Response:
        health = await backend.health()
        return web.json_response(health, status=200 if health["status"] == "ok" else 503, headers={"Cache-Control": "no-store"})

    return handle


def routes(backend: Backend) -> list[web.RouteDef]:
    return [
        web.get("/.well-known/openid-configuration", discovery(backend)),
        web.get("/.well-known/jwks.json", jwks(backend)),
        web.get("/tenants/{tenant_id}/.well-known/openid-configuration", discovery(backend)),
        web.get("/tenants/{tenant_id}/.well-known/jwks.json", jwks(backend)),
        web.post("/oauth2/introspect", introspect(backend)),
        web.route("*", "/forward-auth", forward_auth(backend)),
        web.get("/healthz", healthz(backend)),
        web.get("/readyz", readyz(backend)),
    ]
