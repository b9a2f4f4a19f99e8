"""The HTTP edge: what software that speaks HTTP, not NATS, asks of authbus, answered from
the same read model on the same event loop (docs/wire.md §11).

* OIDC discovery and JWKS, for JWT libraries (``jose.createRemoteJWKSet``, PyJWT's
  ``PyJWKClient``), for all tenants and per tenant;
* RFC 7662 token introspection, for every credential kind;
* forward auth, for gateways (nginx ``auth_request``, Traefik ForwardAuth, Envoy
  ``ext_authz``): 200 with the principal in headers, or 401 / 403 saying why;
* liveness and readiness.

Requests and responses are plain values here; infra/http_server.py speaks HTTP/1.1.  Errors
are RFC 7807 problem details; nothing echoes a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from authbus.domain.scopes import parse_scope, scope_text
from authbus.domain.signing import ASYMMETRIC_ALGS
from authbus.handlers.backend import Backend
from authbus.handlers.wire import MAX_TOKEN
from authbus.projections import queries

JWKS_MAX_AGE = 60  # seconds: a verifier meets a rotated-in key within a minute, and at once on an unknown kid
BEARERS = frozenset({"pat", "api_key", "access_token", "tenant_token"})
# The principal a gateway hands on to the service behind it.
PRINCIPAL_HEADERS = ("X-Authbus-Principal", "X-Authbus-Tenant", "X-Authbus-Kind", "X-Authbus-Roles", "X-Authbus-Credential")
WANTED = {"scope": "x-authbus-scope", "min_role": "x-authbus-min-role", "tenant_id": "x-authbus-tenant"}
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]  # each parameter's values, in order
    headers: dict[str, str]  # names in lower case; a repeated field's lines joined with ", " (RFC 9110 §5.3)
    body: bytes = b""
    origin: str = ""  # http://<Host>, as the client reached this edge


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": content_type, **(headers or {})}, json.dumps(data, sort_keys=True).encode())


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> HttpResponse:
    """An RFC 7807 problem: ``title`` the status's phrase, ``detail`` what was wrong here."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail, **extra}
    return json_response(body, status, headers, "application/problem+json")


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


def _base(backend: Backend, request: HttpRequest) -> str:
    """Where this edge is as clients reach it: the issuer when it is a URL, else the request's origin."""
    issuer = backend.issuer
    return issuer.rstrip("/") if issuer.startswith(("http://", "https://")) else request.origin


def discovery(backend: Backend, request: HttpRequest, tenant_id: UUID | None) -> HttpResponse:
    """``/.well-known/openid-configuration``: where the keys and introspection are."""
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
    return json_response(document, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


def jwks(backend: Backend, request: HttpRequest, tenant_id: UUID | None) -> HttpResponse:
    """The public keys that verify access tokens; an ETag lets a verifier ask again cheaply."""
    body = json.dumps({"keys": queries.jwks(backend.model, tenant_id)}, sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}, must-revalidate", "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return HttpResponse(304, headers)
    return HttpResponse(200, {"Content-Type": "application/jwk-set+json", **headers}, body)


async def introspect(backend: Backend, request: HttpRequest) -> HttpResponse:
    """RFC 7662.  The caller authenticates with its own authbus credential (Bearer, or the
    password of HTTP Basic) and learns about tokens of its own tenant (root: of any); any
    other token, like an invalid one, is ``{"active": false}``."""
    caller = bearer_of(request.headers.get("authorization", ""))
    actor = None
    if caller is not None and len(caller) <= MAX_TOKEN:
        actor = queries.actor_for(backend.model, caller, backend.now(), backend.keys, backend.bearers)
    if actor is None:
        return problem(401, "authenticate with an authbus credential", challenge("invalid_client"))
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return problem(400, "send the token as application/x-www-form-urlencoded (RFC 7662 §2.1)")
    given = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).get("token", [])
    if len(given) != 1 or not 0 < len(given[0]) <= MAX_TOKEN:
        return problem(400, f"give one token of 1–{MAX_TOKEN} characters", invalid_params=[{"name": "token"}])
    return json_response(introspection(backend, given[0], None if actor.is_root else actor.tenant_id), headers=NO_STORE)


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
    expires = queries.expires_ts(credential)
    if expires is not None:
        answer["exp"] = int(expires)
    if credential.scopes is not None:
        answer["scope"] = " ".join(scope_text(scope) for scope in credential.scopes.values())
    if getattr(principal, "username", None):
        answer["username"] = principal.username
    return answer


async def forward_auth(backend: Backend, request: HttpRequest) -> HttpResponse:
    """For a gateway: the request's bearer, and what it must hold (``scope`` and
    ``min_role``, as query parameters or ``X-Authbus-Scope`` / ``X-Authbus-Min-Role``
    headers; ``tenant_id`` / ``X-Authbus-Tenant`` for the tenant the request concerns).
    Nothing wanted: any valid bearer passes. A want given twice, differently, is refused:
    the gateway's and a client's copy cannot be told apart, so neither may win."""
    wanted: dict[str, str | None] = {}
    for name, header in WANTED.items():
        given = {*request.query.get(name, ()), *filter(None, [request.headers.get(header)])}
        if len(given) > 1:
            detail = f"{name} is given more than once, differently (as a query parameter or the {header} header)"
            return problem(400, detail, invalid_params=[{"name": name}])
        wanted[name] = next(iter(given), None) or None
    scope = parse_scope(wanted["scope"]) if wanted["scope"] else None
    if wanted["scope"] and scope is None:
        return problem(400, "scope is written [domain/]entity_type:operation:entity_id", invalid_params=[{"name": "scope"}])
    try:
        tenant_id = UUID(wanted["tenant_id"]) if wanted["tenant_id"] else None
    except ValueError:
        return problem(400, "tenant_id is not a UUID", invalid_params=[{"name": "tenant_id"}])
    token = bearer_of(request.headers.get("authorization", ""))
    if token is None or len(token) > MAX_TOKEN:
        return problem(401, "a bearer token is needed", challenge())
    model, now = backend.model, backend.now()
    decision = None
    if scope is not None or wanted["min_role"]:
        triple = (None, None, None) if scope is None else (scope.entity_type, scope.operation, scope.entity_id)
        domain = scope.domain if scope is not None else None
        decision = queries.authorize(
            model, token, now, backend.keys, domain, *triple, tenant_id, backend.bearers, wanted["min_role"]
        )
    verdict = decision.verdict if decision is not None else queries.verify(model, token, now, backend.keys, backend.bearers)
    if not verdict.valid:
        return problem(401, f"the token is {verdict.reason}", challenge("invalid_token", verdict.reason))
    if verdict.credential.kind not in BEARERS:
        return problem(401, "not a bearer credential", challenge("invalid_token", "not_a_bearer_credential"))
    if decision is not None and not decision.allowed:
        asked = wanted["scope"] or f"min_role:{wanted['min_role']}"
        return problem(403, decision.reason, challenge("insufficient_scope", decision.reason, asked))
    principal, credential = verdict.principal, verdict.credential
    values = (str(principal.id), str(principal.tenant_id), principal.kind, ",".join(principal.roles), str(credential.id))
    return HttpResponse(200, {**dict(zip(PRINCIPAL_HEADERS, values, strict=True)), **NO_STORE})


async def readyz(backend: Backend) -> HttpResponse:
    """Readiness: ``auth.v1.health``'s answer, 200 when ``ok`` and 503 when ``degraded``."""
    health = await backend.health()
    return json_response(health, 200 if health["status"] == "ok" else 503, NO_STORE)


_PER_TENANT = re.compile(r"/tenants/(?P<tenant>[^/]+)(?P<rest>/\.well-known/(?:openid-configuration|jwks\.json))\Z")
_KEYS = {"/.well-known/openid-configuration": discovery, "/.well-known/jwks.json": jwks}


async def answer(backend: Backend, request: HttpRequest) -> HttpResponse:
    """The route for ``request``: its answer, 404 for no such path, 405 for another method."""
    path, tenant_id = request.path, None
    per_tenant = _PER_TENANT.match(path)
    if per_tenant:
        try:
            tenant_id = UUID(per_tenant["tenant"])
        except ValueError:
            return problem(404, "no such tenant")
        if tenant_id not in backend.model.tenants:
            return problem(404, "no such tenant")
        path = per_tenant["rest"]
    allowed = "POST" if path == "/oauth2/introspect" else None if path == "/forward-auth" else "GET, HEAD"
    if path not in (*_KEYS, "/oauth2/introspect", "/forward-auth", "/healthz", "/readyz"):
        return problem(404, "no such path; see docs/wire.md §11")
    if allowed is not None and request.method not in allowed.split(", "):
        return problem(405, f"{request.path} takes {allowed}", {"Allow": allowed})
    if path in _KEYS:
        return _KEYS[path](backend, request, tenant_id)
    if path == "/oauth2/introspect":
        return await introspect(backend, request)
    if path == "/forward-auth":
        return await forward_auth(backend, request)
    if path == "/healthz":
        return json_response({"status": "ok"}, headers=NO_STORE)
    return await readyz(backend)
