"""Bad input through the real NATS interface, on SQLite and PostgreSQL (DESIGN §5).

Every endpoint the service answers gets every kind of bad request: not JSON, JSON that is
not an object, a missing required field, a wrong type, an unknown enum value, an unknown
field, a value out of range, an oversized body or token, a bad ``Authorization`` header,
unknown ids, ids of the wrong kind, and ids of another tenant.  Each must come back as a
well-formed error with the right code, naming the field, with the micro error header set,
and the event store must not have moved, except by the audit record a refusal is meant to
leave (a failed login's ``LoginFailed``, a reused refresh token's ``SessionRevoked``): a
case names those.  A malformed token sent to verify or authorize is an answer, not an
error.  No reply may carry a secret (a token's, a password, a refresh token, an access
token's signature, an HS256 key, a sealed private key, a password hash), a SHA-256
digest, a traceback or a file path.

The matrix is generated from data tables: ``BASE`` holds one valid body per endpoint, built
from a tenant (``tests.helpers.make_tenant``; fresh for a case that changes the store, shared
otherwise, see ``world``), and every case is a change to it.  A
tenant gets a password, a session and signing material only for the cases that read them
(argon2 is slow on purpose), see ``Case.options``.
``test_the_tables_cover_every_endpoint`` fails when an endpoint, field, enum, id or token
field is added without a row here.
"""

from __future__ import annotations

import functools
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.domain import tokens
from authbus.domain.commands import COMMANDS
from authbus.domain.errors import InvalidRequest
from authbus.domain.tenant import SYSTEM_TENANT_ID
from authbus.handlers.admin_reads import ADMIN_READS
from authbus.handlers.audit_key import PublicKeyRequest
from authbus.handlers.audit_reads import AUDIT_READS
from authbus.handlers.command_endpoints import RedeemRequest
from authbus.handlers.health import HealthRequest
from authbus.handlers.service import subjects
from authbus.handlers.sessions import (
    WRONG_CREDENTIALS,
    AnswerRequest,
    ChallengeRequest,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
)
from authbus.handlers.verification import AuthorizeRequest, JwksRequest, VerifyRequest
from authbus.handlers.wire import MAX_BODY, MAX_TOKEN, decode
from tests.conftest import quick_to_stale
from tests.helpers import PASSWORD, PAT_SCOPE, TenantWorld, b64url, device, make_tenant, secret_of, store_position

Body = dict[str, Any]
W = TenantWorld

# ---------------------------------------------------------------------------------------
# One valid request per endpoint.  Every field of the request struct appears, so that
# "wrong type" reaches every field; ``test_base_bodies_are_accepted`` proves they are valid.

SCOPE_NEW = {"domain": "docs", "entity_type": "doc", "operation": "update", "entity_id": "42"}


def cmd(**fields: Any) -> Body:
    return {**fields, "command_id": str(uuid.uuid4())}


def pem(private: Any, password: bytes | None = None) -> str:
    """A private key as a tenant brings it to create_signing_key."""
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def new_public_key() -> str:
    """A public key nobody has registered (any 32 bytes will do for registering)."""
    return b64url(os.urandom(32))


def signed(w: W, challenge: str | None = None, key: Ed25519PrivateKey | None = None) -> str:
    """The user's device key's (or ``key``'s) signature over ``challenge`` (the world's)."""
    message = (w.challenge if challenge is None else challenge).encode()
    return b64url((key or device(w.device_seed)).sign(message))


BASE: dict[str, Callable[[W], Body]] = {
    "verify": lambda w: {"token": w.pat_token, "min_position": 0},
    "authorize": lambda w: {
        "token": w.pat_token,
        "domain": "docs",
        "entity_type": "doc",
        "operation": "read",
        "entity_id": "42",
        "tenant_id": w.tenant_id,
        "min_position": 0,
        "min_role": "editors",
    },
    "redeem": lambda w: cmd(token=w.recovery_token, password="a new password", min_position=0),
    "jwks": lambda w: {"tenant_id": w.tenant_id, "min_position": 0},
    "audit.public_key": lambda w: {"min_position": 0},
    "health": lambda w: {},
    "login": lambda w: {
        "tenant_id": w.tenant_id,
        "username": "user-1",
        "password": w.password,
        "source": "bad-input",
        "min_position": 0,
        "scopes": [dict(PAT_SCOPE)],
    },
    "register": lambda w: {
        "tenant_id": w.tenant_id,
        "username": f"self-{uuid.uuid4().hex}",
        "password": PASSWORD,
        "source": "bad-input",
        "min_position": 0,
    },
    "refresh": lambda w: {
        "refresh_token": w.refresh_token,
        "source": "bad-input",
        "min_position": 0,
        "scopes": [dict(PAT_SCOPE)],
    },
    "logout": lambda w: {"refresh_token": w.refresh_token, "source": "bad-input", "min_position": 0},
    "challenge": lambda w: {"tenant_id": w.tenant_id, "public_key": new_public_key(), "min_position": 0},
    "challenge.answer": lambda w: {"challenge": w.challenge, "signature": signed(w), "source": "bad-input", "min_position": 0},
    "cmd.create_tenant": lambda w: cmd(name=f"new-{uuid.uuid4().hex}"),
    "cmd.disable_tenant": lambda w: cmd(tenant_id=w.tenant_id, reason="audit"),
    "cmd.enable_tenant": lambda w: cmd(tenant_id=w.tenant_id),
    "cmd.register_user": lambda w: cmd(
        tenant_id=w.tenant_id, username="bob", password="bob's password", kind="user", roles=["user"]
    ),
    "cmd.change_password": lambda w: cmd(user_id=w.user_id, password="a new password", old_password="whatever"),
    "cmd.delete_user": lambda w: cmd(user_id=w.user_id, reason="asked to be forgotten"),
    "cmd.update_user": lambda w: cmd(
        user_id=w.user_id,
        username=f"renamed-{uuid.uuid4().hex}",
        display_name="Ada Lovelace",
        email="ada@example.com",
        metadata={"team": "engines"},
    ),
    "cmd.disable_user": lambda w: cmd(user_id=w.user_id, reason="left"),
    "cmd.enable_user": lambda w: cmd(user_id=w.user_id),
    "cmd.grant_role": lambda w: cmd(user_id=w.user_id, role="auditor"),
    "cmd.revoke_role": lambda w: cmd(user_id=w.user_id, role="user", reason="demoted"),
    "cmd.create_role": lambda w: cmd(
        tenant_id=w.tenant_id, name=f"r{uuid.uuid4().hex[:12]}", description="d", scopes=[dict(PAT_SCOPE)]
    ),
    "cmd.add_role_scopes": lambda w: cmd(role_id=w.role_id, scopes=[dict(SCOPE_NEW)]),
    "cmd.remove_role_scopes": lambda w: cmd(role_id=w.role_id, scopes=[dict(PAT_SCOPE)]),
    "cmd.delete_role": lambda w: cmd(role_id=w.role_id, reason="reorg"),
    "cmd.set_role_order": lambda w: cmd(tenant_id=w.tenant_id, order=["user", "editors", "admin", "root"]),
    "cmd.create_pat": lambda w: cmd(user_id=w.user_id, name="deploy", description="d", expires_in=3600, scopes=[dict(PAT_SCOPE)]),
    "cmd.add_scope": lambda w: cmd(pat_id=w.pat_id, scope=dict(SCOPE_NEW)),
    "cmd.remove_scope": lambda w: cmd(pat_id=w.pat_id, scope=dict(PAT_SCOPE)),
    "cmd.revoke_pat": lambda w: cmd(pat_id=w.pat_id, reason="leaked"),
    "cmd.reset_pat_secret": lambda w: cmd(pat_id=w.pat_id, expires_in=3600),
    "cmd.update_pat": lambda w: cmd(pat_id=w.pat_id, name="ci, renamed", description="the nightly build"),
    "cmd.issue_key": lambda w: cmd(user_id=w.user_id, kind="api_key", name="k", expires_in=3600, scopes=[dict(PAT_SCOPE)]),
    "cmd.revoke_key": lambda w: cmd(key_id=w.key_id, reason="rotated"),
    "cmd.create_signing_key": lambda w: cmd(tenant_id=w.tenant_id, alg="EdDSA", private_key=pem(Ed25519PrivateKey.generate())),
    "cmd.retire_signing_key": lambda w: cmd(kid=w.signing_kid),
    "cmd.revoke_signing_key": lambda w: cmd(kid=w.signing_kid, reason="leaked"),
    "cmd.register_public_key": lambda w: cmd(user_id=w.user_id, public_key=new_public_key()),
    "cmd.remove_public_key": lambda w: cmd(user_id=w.user_id, public_key=w.public_key),
    "cmd.revoke_session": lambda w: cmd(session_id=w.session_id, reason="stolen laptop"),
    "admin.get_user": lambda w: {"user_id": w.user_id, "min_position": 0},
    "admin.list_users": lambda w: {"tenant_id": w.tenant_id, "limit": 10, "after": w.admin_id, "min_position": 0},
    "admin.search_users": lambda w: {
        "tenant_id": w.tenant_id,
        "username_prefix": "USER",
        "role": "user",
        "status": "active",
        "limit": 10,
        "after": w.admin_id,
        "min_position": 0,
    },
    "admin.get_pat": lambda w: {"pat_id": w.pat_id, "min_position": 0},
    "admin.list_pats": lambda w: {"user_id": w.user_id, "limit": 10, "after": w.pat_id, "min_position": 0},
    "admin.list_keys": lambda w: {"user_id": w.user_id, "limit": 10, "after": w.key_id, "min_position": 0},
    "admin.list_signing_keys": lambda w: {"tenant_id": w.tenant_id, "limit": 10, "after": w.signing_kid, "min_position": 0},
    "admin.list_sessions": lambda w: {"user_id": w.user_id, "limit": 10, "after": w.session_id, "min_position": 0},
    "admin.login_activity": lambda w: {"user_id": w.user_id, "min_position": 0},
    "admin.get_role": lambda w: {"role_id": w.role_id, "min_position": 0},
    "admin.list_roles": lambda w: {"tenant_id": w.tenant_id, "limit": 10, "after": w.role_id, "min_position": 0},
    "admin.audit_log": lambda w: {
        "tenant_id": w.tenant_id,
        "since_position": 1,
        "until_position": 10**9,
        "type": ["PATCreated"],
        "principal_id": w.user_id,
        "limit": 10,
        "after": 1,
        "min_position": 0,
    },
    "admin.audit_as_of": lambda w: {
        "at_position": 10**9,
        "at_time": "2100-01-01T00:00:00Z",
        "credential_id": w.pat_id,
        "token": w.pat_token,
        "min_position": 0,
    },
    "admin.rebuild_check": lambda w: {"min_position": 0},
    "cmd.rename_tenant": lambda w: cmd(tenant_id=w.tenant_id, name=f"renamed-{uuid.uuid4().hex}"),
    "cmd.update_tenant": lambda w: cmd(tenant_id=w.tenant_id, tags=["eu"], metadata={"plan": "pro"}),
    "cmd.set_tenant_policy": lambda w: cmd(
        tenant_id=w.tenant_id,
        access_token_seconds=300,
        session_seconds=86400,
        audience="https://api.example.com",
        open_registration=True,
        keypair_signup=True,
        registrations_per_minute=5,
    ),
    "admin.get_tenant": lambda w: {"tenant_id": w.tenant_id, "min_position": 0},
    "admin.list_tenants": lambda w: {"limit": 10, "after": w.tenant_id, "min_position": 0},
    "cmd.add_scopes": lambda w: cmd(pat_id=w.pat_id, scopes=[dict(SCOPE_NEW)]),
    "cmd.remove_scopes": lambda w: cmd(pat_id=w.pat_id, scopes=[dict(PAT_SCOPE)]),
    "admin.get_key": lambda w: {"key_id": w.key_id, "min_position": 0},
}

STRUCTS: dict[str, type] = {
    "verify": VerifyRequest,
    "authorize": AuthorizeRequest,
    "redeem": RedeemRequest,
    "jwks": JwksRequest,
    "audit.public_key": PublicKeyRequest,
    "health": HealthRequest,
    "login": LoginRequest,
    "register": RegisterRequest,
    "refresh": RefreshRequest,
    "logout": LogoutRequest,
    "challenge": ChallengeRequest,
    "challenge.answer": AnswerRequest,
    **{f"cmd.{name}": cls for name, cls in COMMANDS.items()},
    **{f"admin.{name}": cls for name, (cls, _) in ADMIN_READS.items()},
    **{f"admin.{name}": cls for name, (cls, _) in AUDIT_READS.items()},
}
ENDPOINTS = list(BASE)
AUTHENTICATED = [e for e in ENDPOINTS if e.startswith(("cmd.", "admin."))]
# Authenticated, and naming no entity of a tenant: a caller gets what its own tenant allows
# whatever it sends (list_tenants: root every tenant, an admin or auditor its own), which
# tests/e2e/test_tenants.py shows.
NAMES_NO_TENANT = {"admin.list_tenants"}
# ids that name an entity (not the ``after`` cursor)
ID_FIELDS = ("tenant_id", "user_id", "pat_id", "key_id", "kid", "session_id", "credential_id", "role_id")
# Answer a request with no body at all: like an HTTP GET, an empty body means ``{}``.
EMPTY_BODY_IS_EMPTY_OBJECT = {"jwks", "audit.public_key", "health"}
# Endpoints with no bearer that still change the store when they succeed.
UNAUTHENTICATED_WRITES = {"redeem", "login", "register", "refresh", "logout", "challenge.answer"}

STATUS = {
    "invalid_request": "400",
    "unauthenticated": "401",
    "forbidden": "403",
    "not_found": "404",
    "conflict": "409",
    "rate_limited": "429",
    "stale": "503",
}

# Set up before a base body can succeed on its own (the control test only).
PREPARE: dict[str, Callable[[W], tuple[str, Body]]] = {
    "cmd.enable_tenant": lambda w: ("disable_tenant", {"tenant_id": w.tenant_id}),
    "cmd.enable_user": lambda w: ("disable_user", {"user_id": w.user_id}),
    "register": lambda w: ("set_tenant_policy", {"tenant_id": w.tenant_id, "open_registration": True}),
}

# ---------------------------------------------------------------------------------------
# Cases.  A case is an endpoint, a request (body bytes and headers, from a TenantWorld and
# the root token) and the error it must produce.

Headers = Callable[[W, str], "dict[str, str] | None"]


def as_root(w: W, root: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {root}"}


def default_headers(endpoint: str, w: W, root: str) -> dict[str, str] | None:
    return as_root(w, root) if endpoint in AUTHENTICATED else None


@dataclass(frozen=True)
class Step:
    """A request sent before the case's own (as root where a bearer is needed), and the
    error code it must end in (None: it succeeds)."""

    endpoint: str
    body: Callable[[W], Body]
    refused: str | None = None


@dataclass(frozen=True)
class Case:
    endpoint: str
    label: str
    body: Callable[[W], bytes]
    code: str
    field: str | None
    headers: Headers | None = None  # None: root's bearer on authenticated endpoints, nothing otherwise
    steps: tuple[Step, ...] = ()  # the world is changed so first
    records: tuple[str, ...] = ()  # the events the refusal itself appends (an audit record), in order
    message: str | None = None  # the exact message, where it must not tell refusals apart

    def request_headers(self, w: W, root: str) -> dict[str, str] | None:
        if self.headers is not None:
            return self.headers(w, root)
        return default_headers(self.endpoint, w, root)

    @functools.cached_property
    def options(self) -> dict[str, bool]:
        """The ``make_tenant`` options for the world fields this case reads."""
        return world_options(self.body, lambda w: self.request_headers(w, "root"), *(s.body for s in self.steps))

    def param(self):
        return pytest.param(self, id=f"{self.endpoint}:{self.label}")


LOGIN_FIELDS = frozenset({"password", "session_id", "access_token", "refresh_token"})
KEY_FIELDS = frozenset({"signing_kid", "hs256_secret", "public_key", "device_seed", "challenge"})


class _Reads:
    """A stand-in world that notes the fields read from it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.names.add(name)
        return getattr(_PLACEHOLDER, name)


def world_options(*builders: Callable[[Any], Any]) -> dict[str, bool]:
    """The ``make_tenant`` options that give the world fields ``builders`` read."""
    reads = _Reads()
    for build in builders:
        build(reads)
    return {"login": bool(reads.names & LOGIN_FIELDS), "keys": bool(reads.names & KEY_FIELDS)}


def changed(endpoint: str, change: Callable[[Body, W], Any]) -> Callable[[W], bytes]:
    """The base body of ``endpoint`` after ``change(body, world)`` edited it in place."""

    def build(w: W) -> bytes:
        body = BASE[endpoint](w)
        change(body, w)
        return msgspec.json.encode(body)

    return build


def put(path: str, value: Any) -> Callable[[Body, W], None]:
    """Set a dotted path (``scope.operation``, ``scopes.0.domain``); a callable value gets the world."""

    def change(body: Body, w: W) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value(w) if callable(value) else value

    return change


def drop(path: str) -> Callable[[Body, W], None]:
    def change(body: Body, w: W) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return change


def raw(data: bytes) -> Callable[[W], bytes]:
    return lambda w: data


def required(endpoint: str) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(STRUCTS[endpoint]) if f.required]


def null_refused(endpoint: str) -> list[str]:
    """The fields that do not take ``null`` (required or not)."""
    nullable = (msgspec.inspect.NoneType, msgspec.inspect.AnyType)
    refused = []
    for f in msgspec.inspect.type_info(STRUCTS[endpoint]).fields:
        options = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if not any(isinstance(t, nullable) for t in options):
            refused.append(f.encode_name)
    return refused


def flip(token: str, index: int) -> str:
    """``token`` with the character at ``index`` replaced by another letter: a one-character typo."""
    index %= len(token)
    return token[:index] + ("B" if token[index] != "B" else "C") + token[index + 1 :]


NOT_JSON: dict[str, bytes] = {
    "empty": b"",
    "garbage": b"{not json}",
    "truncated": b'{"token": "abc',
    "trailing-data": b"{} {}",
    "not-utf8": b'{"token": "\xff\xfe"}',
    "lone-surrogate": b'{"token": "\\ud800"}',
}
NOT_OBJECT: dict[str, bytes] = {
    "list": b"[]",
    "list-of-object": b'[{"token": "x"}]',
    "string": b'"{}"',
    "number": b"42",
    "null": b"null",
}

# (endpoint, field path, bad values, field named in the error)
ENUMS: list[tuple[str, str, list[Any], str]] = [
    ("cmd.register_user", "kind", ["robot", "User", ""], "kind"),
    ("cmd.issue_key", "kind", ["pat", "refresh", "API_KEY"], "kind"),
    ("cmd.create_signing_key", "alg", ["none", "HS512", "eddsa", "RS256 ", ""], "alg"),
    ("admin.search_users", "status", ["Active", "Deleted", ""], "status"),
]


def _recovery_for_two_days(b: Body, w: W) -> None:
    b.update(kind="recovery", scopes=None, expires_in=2 * 86400)  # recovery keys live a day at most


TOO_LONG_TEXT = "x" * 1025
LONG_NAME = "n" * 129
OVER_A_YEAR = 367 * 86400
LONG_SOURCE = "s" * 257


def _non_canonical(key: str) -> str:
    """The same 32 bytes spelt differently: the last character's two unused bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return key[:-1] + alphabet[alphabet.index(key[-1]) | 1]


def _forged_challenge(b: Body, w: W) -> None:
    """A challenge whose MAC is wrong, signed by the right key: the MAC is what counts."""
    forged = flip(w.challenge, -3)
    b.update(challenge=forged, signature=signed(w, forged))


def _tampered_challenge(b: Body, w: W) -> None:
    """The payload changed (the MAC kept), signed by the right key."""
    forged = flip(w.challenge, 5)
    b.update(challenge=forged, signature=signed(w, forged))


def _unmacked_challenge(b: Body, w: W) -> None:
    bare = w.challenge.partition(".")[0]
    b.update(challenge=bare, signature=signed(w, bare))


# (endpoint, label, change, code, field): values of the right type that are still wrong,
# in the request's constraints or in the domain's rules.
CONSTRAINTS: list[tuple[str, str, Callable[[Body, W], None], str, str | None]] = [
    ("verify", "min_position-negative", put("min_position", -1), "invalid_request", "min_position"),
    ("verify", "min_position-float", put("min_position", 1.5), "invalid_request", "min_position"),
    ("verify", "min_position-string", put("min_position", "1"), "invalid_request", "min_position"),
    ("authorize", "operation-uppercase", put("operation", "READ"), "invalid_request", "operation"),
    ("authorize", "operation-empty", put("operation", ""), "invalid_request", "operation"),
    ("authorize", "entity_type-space", put("entity_type", "a doc"), "invalid_request", "entity_type"),
    ("authorize", "operation-trailing-newline", put("operation", "read\n"), "invalid_request", "operation"),
    ("authorize", "entity_id-empty", put("entity_id", ""), "invalid_request", "entity_id"),
    ("authorize", "entity_id-too-long", put("entity_id", LONG_NAME), "invalid_request", "entity_id"),
    ("authorize", "domain-empty", put("domain", ""), "invalid_request", "domain"),
    ("authorize", "min_role-bad-name", put("min_role", "app admin"), "invalid_request", "min_role"),
    (
        "authorize",
        "no-question",
        lambda b, w: [b.pop(f) for f in ("entity_type", "operation", "entity_id", "min_role")],
        "invalid_request",
        "entity_type",
    ),
    ("authorize", "scope-without-operation", drop("operation"), "invalid_request", "operation"),
    (
        "authorize",
        "domain-without-scope",
        lambda b, w: [b.pop(f) for f in ("entity_type", "operation", "entity_id")],
        "invalid_request",
        "entity_type",
    ),
    ("redeem", "password-short", put("password", "1234567"), "invalid_request", "password"),
    ("redeem", "token-a-pat", put("token", lambda w: w.pat_token), "unauthenticated", "token"),
    ("redeem", "token-malformed", put("token", "rec_nope"), "unauthenticated", "token"),
    ("redeem", "token-bad-checksum", put("token", lambda w: flip(w.recovery_token, 40)), "unauthenticated", "token"),
    ("redeem", "command_id-empty", put("command_id", ""), "invalid_request", "command_id"),
    ("cmd.create_tenant", "name-empty", put("name", ""), "invalid_request", "name"),
    ("cmd.create_tenant", "name-padded", put("name", " acme"), "invalid_request", "name"),
    ("cmd.create_tenant", "name-newline", put("name", "ac\nme"), "invalid_request", "name"),
    ("cmd.create_tenant", "name-trailing-newline", put("name", "system\n"), "invalid_request", "name"),
    ("cmd.create_tenant", "name-too-long", put("name", LONG_NAME), "invalid_request", "name"),
    ("cmd.create_tenant", "command_id-empty", put("command_id", ""), "invalid_request", "command_id"),
    ("cmd.create_tenant", "command_id-too-long", put("command_id", LONG_NAME), "invalid_request", "command_id"),
    ("cmd.create_tenant", "name-taken", put("name", "system"), "conflict", "name"),
    ("cmd.disable_tenant", "tenant_id-not-a-uuid", put("tenant_id", "acme"), "invalid_request", "tenant_id"),
    ("cmd.disable_tenant", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.enable_tenant", "not-disabled", lambda b, w: None, "conflict", "tenant_id"),
    ("cmd.register_user", "username-space", put("username", "bo b"), "invalid_request", "username"),
    ("cmd.register_user", "username-leading-dot", put("username", ".bob"), "invalid_request", "username"),
    ("cmd.register_user", "username-trailing-newline", put("username", "user-1\n"), "invalid_request", "username"),
    ("cmd.register_user", "username-too-long", put("username", LONG_NAME), "invalid_request", "username"),
    ("cmd.register_user", "password-short", put("password", "1234567"), "invalid_request", "password"),
    ("cmd.register_user", "password-too-long", put("password", TOO_LONG_TEXT), "invalid_request", "password"),
    ("cmd.register_user", "roles-2nd-unknown", put("roles", ["user", "superuser"]), "not_found", "roles[1]"),
    ("cmd.register_user", "roles-too-many", put("roles", ["user"] * 33), "invalid_request", "roles"),
    ("cmd.register_user", "roles-bad-name", put("roles", ["user", "a role"]), "invalid_request", "roles[1]"),
    ("cmd.grant_role", "role-unknown", put("role", "superuser"), "not_found", "role"),
    ("cmd.grant_role", "role-empty", put("role", ""), "invalid_request", "role"),
    ("cmd.grant_role", "role-digit-first", put("role", "1st"), "invalid_request", "role"),
    ("cmd.revoke_role", "role-unknown", put("role", "superuser"), "not_found", "role"),
    ("cmd.create_role", "name-builtin", put("name", "Admin"), "conflict", "name"),
    ("cmd.create_role", "name-taken", put("name", "EDITORS"), "conflict", "name"),
    ("cmd.create_role", "name-too-long", put("name", "r" * 65), "invalid_request", "name"),
    ("cmd.create_role", "scopes-bad-operation", put("scopes.0.operation", "Read"), "invalid_request", "scopes[0].operation"),
    ("cmd.set_role_order", "order-empty", put("order", []), "invalid_request", "order"),
    ("cmd.set_role_order", "order-bad-name", put("order.1", "app admin"), "invalid_request", "order[1]"),
    ("cmd.set_role_order", "order-unknown-role", put("order.1", "nobody"), "not_found", "order[1]"),
    ("cmd.set_role_order", "order-duplicate", put("order", ["user", "editors", "EDITORS"]), "invalid_request", "order[2]"),
    ("cmd.set_role_order", "order-builtins-reversed", put("order", ["admin", "editors", "user"]), "invalid_request", "order[2]"),
    ("cmd.set_role_order", "order-root-not-last", put("order", ["user", "root", "editors"]), "invalid_request", "order[1]"),
    ("cmd.add_role_scopes", "scopes-empty", put("scopes", []), "invalid_request", "scopes"),
    ("cmd.add_role_scopes", "scopes-held", put("scopes", [dict(PAT_SCOPE)]), "conflict", "scopes"),
    ("cmd.remove_role_scopes", "scopes-2nd-not-held", put("scopes", [dict(PAT_SCOPE), dict(SCOPE_NEW)]), "conflict", "scopes[1]"),
    (
        "cmd.create_pat",
        "scopes-not-held",
        put("scopes", [dict(PAT_SCOPE), dict(SCOPE_NEW, operation="delete")]),
        "forbidden",
        "scopes[1]",
    ),
    ("cmd.issue_key", "scopes-not-held", put("scopes", [dict(SCOPE_NEW, operation="delete")]), "forbidden", "scopes[0]"),
    ("cmd.add_scope", "scope-not-held", put("scope", dict(SCOPE_NEW, operation="delete")), "forbidden", "scope"),
    ("cmd.register_user", "root-outside-system", put("roles", ["root"]), "forbidden", "roles"),
    ("cmd.register_user", "username-taken", put("username", "user-1"), "conflict", "username"),
    ("cmd.change_password", "password-short", put("password", "short"), "invalid_request", "password"),
    ("cmd.update_user", "username-space", put("username", "a b"), "invalid_request", "username"),
    ("cmd.delete_user", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.update_user", "username-too-long", put("username", LONG_NAME), "invalid_request", "username"),
    ("cmd.update_user", "username-taken", put("username", "ADMIN-1"), "conflict", "username"),
    ("cmd.update_user", "email-no-at", put("email", "ada.example.com"), "invalid_request", "email"),
    ("cmd.update_user", "email-two-words", put("email", "ada lovelace@example.com"), "invalid_request", "email"),
    ("cmd.update_user", "display_name-too-long", put("display_name", "x" * 257), "invalid_request", "display_name"),
    ("cmd.update_user", "metadata-bad-key", put("metadata", {"a b": "c"}), "invalid_request", "metadata"),
    ("cmd.update_tenant", "metadata-bad-key", put("metadata", {"a b": "c"}), "invalid_request", "metadata"),
    ("cmd.update_user", "metadata-not-text", put("metadata", {"a": 1}), "invalid_request", "metadata"),
    (
        "cmd.update_user",
        "nothing-to-change",
        lambda b, w: [b.pop(f) for f in ("username", "display_name", "email", "metadata")],
        "invalid_request",
        "username",
    ),
    ("admin.search_users", "username_prefix-empty", put("username_prefix", ""), "invalid_request", "username_prefix"),
    ("admin.search_users", "role-bad-name", put("role", "1st"), "invalid_request", "role"),
    ("admin.search_users", "limit-zero", put("limit", 0), "invalid_request", "limit"),
    ("cmd.change_password", "old_password-long", put("old_password", TOO_LONG_TEXT), "invalid_request", "old_password"),
    ("cmd.disable_user", "user_id-not-a-uuid", put("user_id", "alice"), "invalid_request", "user_id"),
    ("cmd.disable_user", "user_id-empty", put("user_id", ""), "invalid_request", "user_id"),
    ("cmd.enable_user", "not-disabled", lambda b, w: None, "conflict", "user_id"),
    ("cmd.grant_role", "root-outside-system", put("role", "root"), "forbidden", "role"),
    ("cmd.grant_role", "already-held", put("role", "user"), "conflict", "role"),
    ("cmd.revoke_role", "not-held", put("role", "admin"), "conflict", "role"),
    ("cmd.create_pat", "name-empty", put("name", ""), "invalid_request", "name"),
    ("cmd.create_pat", "description-long", put("description", TOO_LONG_TEXT), "invalid_request", "description"),
    ("cmd.create_pat", "expires_in-zero", put("expires_in", 0), "invalid_request", "expires_in"),
    ("cmd.create_pat", "expires_in-negative", put("expires_in", -60), "invalid_request", "expires_in"),
    ("cmd.create_pat", "expires_in-float", put("expires_in", 60.5), "invalid_request", "expires_in"),
    ("cmd.create_pat", "expires_in-huge", put("expires_in", 10**30), "invalid_request", "expires_in"),
    ("cmd.create_pat", "expires_in-over-maximum", put("expires_in", OVER_A_YEAR), "invalid_request", "expires_in"),
    ("cmd.create_pat", "scope-operation-upper", put("scopes.0.operation", "READ"), "invalid_request", "scopes[0].operation"),
    ("cmd.create_pat", "scope-entity_id-space", put("scopes.0.entity_id", "4 2"), "invalid_request", "scopes[0].entity_id"),
    ("cmd.create_pat", "scope-domain-empty", put("scopes.0.domain", ""), "invalid_request", "scopes[0].domain"),
    ("cmd.create_pat", "scope-no-entity_id", drop("scopes.0.entity_id"), "invalid_request", "scopes[0].entity_id"),
    ("cmd.create_pat", "scope-unknown-field", put("scopes.0.bogus", 1), "invalid_request", "scopes[0].bogus"),
    ("cmd.create_pat", "scope-not-object", put("scopes", ["doc:read"]), "invalid_request", "scopes[0]"),
    ("cmd.add_scope", "operation-uppercase", put("scope.operation", "Read"), "invalid_request", "scope.operation"),
    ("cmd.add_scope", "operation-wrong-type", put("scope.operation", 7), "invalid_request", "scope.operation"),
    ("cmd.add_scope", "operation-missing", drop("scope.operation"), "invalid_request", "scope.operation"),
    ("cmd.add_scope", "entity_type-empty", put("scope.entity_type", ""), "invalid_request", "scope.entity_type"),
    ("cmd.add_scope", "entity_type-trailing-newline", put("scope.entity_type", "doc\n"), "invalid_request", "scope.entity_type"),
    ("cmd.add_scope", "scope-unknown-field", put("scope.bogus", True), "invalid_request", "scope.bogus"),
    ("cmd.add_scope", "already-held", put("scope", dict(PAT_SCOPE)), "conflict", "scope"),
    ("cmd.remove_scope", "not-held", put("scope", dict(SCOPE_NEW)), "conflict", "scope"),
    ("cmd.remove_scope", "operation-missing", drop("scope.operation"), "invalid_request", "scope.operation"),
    ("cmd.revoke_pat", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.reset_pat_secret", "expires_in-zero", put("expires_in", 0), "invalid_request", "expires_in"),
    ("cmd.update_pat", "name-empty", put("name", ""), "invalid_request", "name"),
    ("cmd.update_pat", "name-too-long", put("name", "n" * 255), "invalid_request", "name"),
    ("cmd.update_pat", "name-leading-space", put("name", " ci"), "invalid_request", "name"),
    ("cmd.update_pat", "description-too-long", put("description", TOO_LONG_TEXT), "invalid_request", "description"),
    ("cmd.update_pat", "nothing-to-change", lambda b, w: [b.pop("name"), b.pop("description")], "invalid_request", "name"),
    ("cmd.reset_pat_secret", "expires_in-over-maximum", put("expires_in", OVER_A_YEAR), "invalid_request", "expires_in"),
    ("cmd.issue_key", "name-too-long", put("name", LONG_NAME), "invalid_request", "name"),
    ("cmd.issue_key", "recovery-with-scopes", put("kind", "recovery"), "invalid_request", "scopes"),
    ("cmd.issue_key", "recovery-over-a-day", _recovery_for_two_days, "invalid_request", "expires_in"),
    ("cmd.issue_key", "scope-operation-upper", put("scopes.0.operation", "X"), "invalid_request", "scopes[0].operation"),
    ("cmd.revoke_key", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.revoke_key", "key_id-not-a-uuid", put("key_id", "key_1"), "invalid_request", "key_id"),
    ("admin.get_user", "min_position-negative", put("min_position", -1), "invalid_request", "min_position"),
    ("admin.list_users", "limit-zero", put("limit", 0), "invalid_request", "limit"),
    ("admin.list_users", "limit-over-500", put("limit", 501), "invalid_request", "limit"),
    ("admin.list_users", "after-not-a-uuid", put("after", "next"), "invalid_request", "after"),
    ("admin.list_pats", "limit-negative", put("limit", -1), "invalid_request", "limit"),
    ("admin.list_keys", "limit-string", put("limit", "10"), "invalid_request", "limit"),
    ("jwks", "tenant_id-not-a-uuid", put("tenant_id", "system"), "invalid_request", "tenant_id"),
    ("jwks", "min_position-negative", put("min_position", -1), "invalid_request", "min_position"),
    ("audit.public_key", "min_position-negative", put("min_position", -1), "invalid_request", "min_position"),
    ("login", "tenant_id-not-a-uuid", put("tenant_id", "acme"), "invalid_request", "tenant_id"),
    ("login", "username-empty", put("username", ""), "invalid_request", "username"),
    ("login", "username-too-long", put("username", LONG_NAME), "invalid_request", "username"),
    ("login", "password-empty", put("password", ""), "invalid_request", "password"),
    ("login", "password-too-long", put("password", TOO_LONG_TEXT), "invalid_request", "password"),
    ("login", "source-too-long", put("source", LONG_SOURCE), "invalid_request", "source"),
    ("register", "tenant_id-not-a-uuid", put("tenant_id", "acme"), "invalid_request", "tenant_id"),
    ("register", "username-leading-dot", put("username", ".alice"), "invalid_request", "username"),
    ("register", "username-space", put("username", "al ice"), "invalid_request", "username"),
    ("register", "username-too-long", put("username", LONG_NAME), "invalid_request", "username"),
    ("register", "password-too-short", put("password", "short"), "invalid_request", "password"),
    ("register", "password-too-long", put("password", TOO_LONG_TEXT), "invalid_request", "password"),
    ("register", "source-too-long", put("source", LONG_SOURCE), "invalid_request", "source"),
    # Closed (the default), unknown and disabled tenants answer alike.
    ("register", "tenant-closed", lambda b, w: None, "forbidden", "tenant_id"),
    ("register", "unknown-tenant_id", put("tenant_id", lambda w: str(uuid.uuid4())), "forbidden", "tenant_id"),
    ("register", "system-tenant", put("tenant_id", str(SYSTEM_TENANT_ID)), "forbidden", "tenant_id"),
    ("refresh", "source-too-long", put("source", LONG_SOURCE), "invalid_request", "source"),
    ("logout", "source-too-long", put("source", LONG_SOURCE), "invalid_request", "source"),
    ("challenge", "tenant_id-not-a-uuid", put("tenant_id", "acme"), "invalid_request", "tenant_id"),
    ("challenge", "public_key-short", put("public_key", "A" * 42), "invalid_request", "public_key"),
    ("challenge", "public_key-long", put("public_key", "A" * 44), "invalid_request", "public_key"),
    ("challenge", "public_key-padded", put("public_key", lambda w: new_public_key() + "="), "invalid_request", "public_key"),
    ("challenge", "public_key-standard-base64", put("public_key", "+" * 43), "invalid_request", "public_key"),
    (
        "challenge",
        "public_key-non-canonical",
        put("public_key", lambda w: _non_canonical(new_public_key())),
        "invalid_request",
        "public_key",
    ),
    (
        "challenge",
        "public_key-trailing-newline",
        put("public_key", lambda w: new_public_key() + "\n"),
        "invalid_request",
        "public_key",
    ),
    ("challenge.answer", "challenge-empty", put("challenge", ""), "invalid_request", "challenge"),
    ("challenge.answer", "challenge-too-long", put("challenge", "c" * 1025), "invalid_request", "challenge"),
    ("challenge.answer", "signature-empty", put("signature", ""), "invalid_request", "signature"),
    ("challenge.answer", "signature-too-long", put("signature", "s" * 257), "invalid_request", "signature"),
    ("challenge.answer", "source-too-long", put("source", LONG_SOURCE), "invalid_request", "source"),
    # Not of the shape auth.v1.challenge issues (<payload>.<MAC>, base64url): not a challenge.
    ("challenge.answer", "challenge-without-mac", _unmacked_challenge, "invalid_request", "challenge"),
    ("challenge.answer", "challenge-non-ascii", put("challenge", lambda w: w.challenge + "ä"), "invalid_request", "challenge"),
    (
        "challenge.answer",
        "challenge-trailing-newline",
        put("challenge", lambda w: w.challenge + "\n"),
        "invalid_request",
        "challenge",
    ),
    ("challenge.answer", "challenge-two-dots", put("challenge", lambda w: w.challenge + ".x"), "invalid_request", "challenge"),
    ("cmd.create_signing_key", "tenant_id-not-a-uuid", put("tenant_id", "acme"), "invalid_request", "tenant_id"),
    ("login", "scopes-not-held", put("scopes", [dict(SCOPE_NEW, operation="delete")]), "forbidden", "scopes[0]"),
    ("login", "scopes-bad-operation", put("scopes.0.operation", "Read"), "invalid_request", "scopes[0].operation"),
    ("refresh", "scopes-not-held", put("scopes", [dict(SCOPE_NEW, operation="delete")]), "forbidden", "scopes[0]"),
    ("cmd.create_signing_key", "private_key-empty", put("private_key", ""), "invalid_request", "private_key"),
    ("cmd.create_signing_key", "private_key-too-long", put("private_key", "A" * 6001), "invalid_request", "private_key"),
    ("cmd.create_signing_key", "private_key-not-pem", put("private_key", "not a key"), "invalid_request", "private_key"),
    (
        "cmd.create_signing_key",
        "private_key-encrypted",
        put("private_key", lambda w: pem(Ed25519PrivateKey.generate(), b"a passphrase")),
        "invalid_request",
        "private_key",
    ),
    (
        "cmd.create_signing_key",
        "private_key-of-another-alg",
        put("private_key", lambda w: pem(ec.generate_private_key(ec.SECP256R1()))),
        "invalid_request",
        "private_key",
    ),
    (
        "cmd.create_signing_key",
        "private_key-ec-not-p256",
        lambda b, w: b.update(alg="ES256", private_key=pem(ec.generate_private_key(ec.SECP384R1()))),
        "invalid_request",
        "private_key",
    ),
    (
        "cmd.create_signing_key",
        "private_key-rsa-1024",
        lambda b, w: b.update(alg="RS256", private_key=pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))),
        "invalid_request",
        "private_key",
    ),
    (
        "cmd.create_signing_key",
        "private_key-rsa-exponent-3",
        lambda b, w: b.update(alg="RS256", private_key=pem(rsa.generate_private_key(public_exponent=3, key_size=2048))),
        "invalid_request",
        "private_key",
    ),
    ("cmd.create_signing_key", "private_key-for-hs256", put("alg", "HS256"), "invalid_request", "private_key"),
    ("cmd.retire_signing_key", "kid-not-a-uuid", put("kid", "key-1"), "invalid_request", "kid"),
    ("cmd.revoke_signing_key", "kid-empty", put("kid", ""), "invalid_request", "kid"),
    ("cmd.revoke_signing_key", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.register_public_key", "public_key-short", put("public_key", "A" * 42), "invalid_request", "public_key"),
    (
        "cmd.register_public_key",
        "public_key-padded",
        put("public_key", lambda w: new_public_key() + "="),
        "invalid_request",
        "public_key",
    ),
    ("cmd.register_public_key", "public_key-standard-base64", put("public_key", "/" * 43), "invalid_request", "public_key"),
    (
        "cmd.register_public_key",
        "public_key-non-canonical",
        put("public_key", lambda w: _non_canonical(w.public_key)),
        "invalid_request",
        "public_key",
    ),
    (
        "cmd.register_public_key",
        "public_key-trailing-newline",
        put("public_key", lambda w: w.public_key + "\n"),
        "invalid_request",
        "public_key",
    ),
    ("cmd.register_public_key", "already-registered", put("public_key", lambda w: w.public_key), "conflict", "public_key"),
    (
        "cmd.register_public_key",
        "another-users-key",
        lambda b, w: b.update(user_id=w.admin_id, public_key=w.public_key),
        "conflict",
        "public_key",
    ),
    ("cmd.remove_public_key", "public_key-long", put("public_key", "A" * 44), "invalid_request", "public_key"),
    ("cmd.remove_public_key", "not-registered", put("public_key", lambda w: new_public_key()), "conflict", "public_key"),
    ("cmd.remove_public_key", "another-users-key", put("user_id", lambda w: w.admin_id), "conflict", "public_key"),
    ("cmd.revoke_session", "session_id-not-a-uuid", put("session_id", "s1"), "invalid_request", "session_id"),
    ("cmd.revoke_session", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("admin.list_signing_keys", "limit-zero", put("limit", 0), "invalid_request", "limit"),
    ("admin.list_signing_keys", "limit-over-500", put("limit", 501), "invalid_request", "limit"),
    ("admin.list_signing_keys", "after-not-a-uuid", put("after", "next"), "invalid_request", "after"),
    ("admin.list_sessions", "limit-string", put("limit", "10"), "invalid_request", "limit"),
    ("admin.list_sessions", "after-not-a-uuid", put("after", "next"), "invalid_request", "after"),
    ("admin.login_activity", "user_id-not-a-uuid", put("user_id", "user-1"), "invalid_request", "user_id"),
    ("admin.login_activity", "min_position-negative", put("min_position", -1), "invalid_request", "min_position"),
    *(
        ("cmd.set_tenant_policy", f"{field}-{value}", put(field, value), "invalid_request", field)
        for field, value in (
            ("access_token_seconds", 59),
            ("access_token_seconds", 86401),
            ("session_seconds", 299),
            ("session_seconds", 366 * 86400 + 1),
            ("registrations_per_minute", 0),
            ("registrations_per_minute", 10_001),
            ("audience", ""),
            ("audience", "two words"),
        )
    ),
    (
        "cmd.set_tenant_policy",
        "session-shorter-than-access",
        lambda b, w: b.update(access_token_seconds=3600, session_seconds=300),
        "invalid_request",
        "session_seconds",
    ),
]


def _other_key_signature(b: Body, w: W) -> None:
    b["signature"] = signed(w, key=Ed25519PrivateKey.generate())


def _wrong_password(b: Body, w: W) -> None:
    b["password"] = "wrong password"


def _wrong_login(w: W) -> Body:
    body = BASE["login"](w)
    _wrong_password(body, w)
    return body


def _refresh_token(w: W) -> Body:
    return {"refresh_token": w.refresh_token}


def _unknown_refresh(w: W) -> str:
    return tokens.mint("refresh", uuid.uuid4(), os.urandom(32))


def _refresh_wrong_secret(w: W) -> str:
    return tokens.mint("refresh", uuid.UUID(w.session_id), os.urandom(32))


def as_is(b: Body, w: W) -> None:
    """No change: the base body, refused because of what the steps did first."""


def refusal(
    e: str,
    label: str,
    change: Callable[[Body, W], Any],
    code: str,
    field: str,
    *,
    message: str | None = None,
    records: tuple[str, ...] = (),
    steps: tuple[Step, ...] = (),
) -> Case:
    return Case(e, label, changed(e, change), code, field, steps=steps, records=records, message=message)


def bad_login(label: str, change: Callable[[Body, W], Any], records: tuple[str, ...] = ()) -> Case:
    """Unknown user and wrong password alike: one message, whatever was wrong."""
    return refusal("login", label, change, "unauthenticated", "password", message=WRONG_CREDENTIALS, records=records)


def bad_refresh(e: str, label: str, change: Callable[[Body, W], Any], **more: Any) -> Case:
    return refusal(e, label, change, "unauthenticated", "refresh_token", **more)


def bad_answer(label: str, change: Callable[[Body, W], Any], field: str = "signature", **more: Any) -> Case:
    return refusal("challenge.answer", label, change, "unauthenticated", field, **more)


def conflict(e: str, label: str, field: str, *steps: Step) -> Case:
    return refusal(e, label, as_is, "conflict", field, steps=steps)


def root_step(e: str, **fields: str) -> Step:
    """A command as root, its fields taken from the world by name (``kid="signing_kid"``)."""
    return Step(e, lambda w: {f: getattr(w, name) for f, name in fields.items()})


DISABLE_USER = root_step("cmd.disable_user", user_id="user_id")
DISABLE_TENANT = root_step("cmd.disable_tenant", tenant_id="tenant_id")
DELETE_USER = root_step("cmd.delete_user", user_id="user_id")
REFRESH_ONCE = Step("refresh", _refresh_token)
LOGOUT = Step("logout", _refresh_token)
RETIRE_KEY = root_step("cmd.retire_signing_key", kid="signing_kid")
REVOKE_KEY = root_step("cmd.revoke_signing_key", kid="signing_kid")
REMOVE_PUBLIC_KEY = root_step("cmd.remove_public_key", user_id="user_id", public_key="public_key")
FAILED = ("LoginFailed",)
OPEN_REGISTRATION = Step("cmd.set_tenant_policy", lambda w: cmd(tenant_id=w.tenant_id, open_registration=True))
CLOSE_REGISTRATION = Step("cmd.set_tenant_policy", lambda w: cmd(tenant_id=w.tenant_id))
ONE_A_MINUTE = Step(
    "cmd.set_tenant_policy", lambda w: cmd(tenant_id=w.tenant_id, open_registration=True, registrations_per_minute=1)
)
UNKNOWN_FAILED = ("FirstLoginFailed",)

# Refusals of a request that is well-formed: by the credentials it presents (a password, a
# refresh token, a signature) or by the state the steps left.  Some leave an audit record.
REFUSALS: list[Case] = [
    # A username no user holds fails like a wrong password: one event, on a keyed throttle.
    bad_login("unknown-tenant_id", put("tenant_id", lambda w: str(uuid.uuid4()))),  # a made-up tenant: nothing written
    bad_login("system-tenant", put("tenant_id", str(SYSTEM_TENANT_ID)), UNKNOWN_FAILED),
    bad_login("unknown-username", put("username", "nobody"), UNKNOWN_FAILED),
    bad_login("username-trailing-newline", put("username", "user-1\n"), UNKNOWN_FAILED),
    bad_login("token-as-username", put("username", lambda w: w.pat_token), UNKNOWN_FAILED),
    bad_login("wrong-password", _wrong_password, FAILED),
    bad_login("password-case", put("password", PASSWORD.upper()), FAILED),
    bad_login("no-password-set", put("username", "admin-1"), FAILED),
    refusal("login", "user-disabled", as_is, "unauthenticated", "password", records=FAILED, steps=(DISABLE_USER,)),
    refusal("login", "tenant-disabled", as_is, "unauthenticated", "password", records=FAILED, steps=(DISABLE_TENANT,)),
    # Five failures lock the user out, even with the right password (and that appends nothing).
    refusal(
        "login", "rate-limited", as_is, "rate_limited", "username", steps=(Step("login", _wrong_login, "unauthenticated"),) * 5
    ),
    *(
        case
        for e in ("refresh", "logout")
        for case in (
            bad_refresh(e, "refresh_token-empty", put("refresh_token", "")),
            bad_refresh(e, "refresh_token-a-pat", put("refresh_token", lambda w: w.pat_token)),
            bad_refresh(e, "refresh_token-access-token", put("refresh_token", lambda w: w.access_token)),
            bad_refresh(e, "refresh_token-bad-checksum", put("refresh_token", lambda w: flip(w.refresh_token, 40))),
            bad_refresh(e, "refresh_token-unknown-session", put("refresh_token", _unknown_refresh)),
            bad_refresh(e, "refresh_token-wrong-secret", put("refresh_token", _refresh_wrong_secret)),
        )
    ),
    # A refresh token used twice leaked: the refusal ends the session.
    bad_refresh("refresh", "refresh_token-reused", as_is, records=("SessionRevoked",), steps=(REFRESH_ONCE,)),
    bad_refresh("refresh", "after-logout", as_is, steps=(LOGOUT,)),
    bad_refresh("refresh", "session-revoked", as_is, steps=(root_step("cmd.revoke_session", session_id="session_id"),)),
    bad_refresh("refresh", "user-disabled", as_is, steps=(DISABLE_USER,)),
    bad_refresh("logout", "refresh_token-rotated", as_is, steps=(REFRESH_ONCE,)),
    bad_answer("signature-by-another-key", _other_key_signature),
    bad_answer("signature-of-another-message", put("signature", lambda w: signed(w, "hello"))),
    bad_answer("signature-truncated", put("signature", lambda w: signed(w)[:-4])),
    bad_answer("signature-not-base64url", put("signature", "!!!!")),
    bad_answer("signature-non-ascii", put("signature", "ä" * 8)),
    bad_answer("challenge-forged", _forged_challenge),
    bad_answer("challenge-tampered", _tampered_challenge),
    bad_answer("key-removed", as_is, steps=(REMOVE_PUBLIC_KEY,)),
    bad_answer("answered-twice", as_is, "challenge", steps=(Step("challenge.answer", BASE["challenge.answer"]),)),
    bad_answer(
        "user-disabled", as_is, "challenge", records=("NameClaimed", "LoginFailed"), steps=(DISABLE_USER,)
    ),  # the answer spends the challenge
    refusal("register", "username-taken", put("username", "user-1"), "conflict", "username", steps=(OPEN_REGISTRATION,)),
    refusal(
        "register", "username-taken-other-case", put("username", "USER-1"), "conflict", "username", steps=(OPEN_REGISTRATION,)
    ),
    refusal("register", "tenant-disabled", as_is, "forbidden", "tenant_id", steps=(OPEN_REGISTRATION, DISABLE_TENANT)),
    refusal("register", "tenant-closed-again", as_is, "forbidden", "tenant_id", steps=(OPEN_REGISTRATION, CLOSE_REGISTRATION)),
    refusal(
        "register", "tenant-rate-limited", as_is, "rate_limited", None, steps=(ONE_A_MINUTE, Step("register", BASE["register"]))
    ),
    refusal("cmd.delete_user", "already-deleted", as_is, "not_found", "user_id", steps=(DELETE_USER,)),
    refusal("cmd.update_user", "user-deleted", as_is, "not_found", "user_id", steps=(DELETE_USER,)),
    refusal("cmd.revoke_pat", "owner-deleted", as_is, "not_found", "pat_id", steps=(DELETE_USER,)),
    conflict("cmd.update_pat", "revoked", "pat_id", root_step("cmd.revoke_pat", pat_id="pat_id")),
    conflict("cmd.create_signing_key", "tenant-disabled", "tenant_id", DISABLE_TENANT),
    conflict("cmd.retire_signing_key", "already-retired", "kid", RETIRE_KEY),
    conflict("cmd.retire_signing_key", "revoked", "kid", REVOKE_KEY),
    conflict("cmd.revoke_signing_key", "already-revoked", "kid", REVOKE_KEY),
    conflict("cmd.remove_public_key", "already-removed", "public_key", REMOVE_PUBLIC_KEY),
    conflict("cmd.revoke_session", "already-revoked", "session_id", LOGOUT),
]


def _token_as_key(b: Body, w: W) -> None:
    b[w.pat_token] = 1


def _secret_as_nested_key(b: Body, w: W) -> None:
    b["scope"][secret_of(w.key_token)] = 1


def _injected_path(b: Body, w: W) -> None:
    b[f"x` - at `$.{secret_of(w.pat_token)}"] = 1


# A real token where a name or value goes: the reply says what is wrong without repeating it.
SECRETS_IN_REQUEST: list[tuple[str, str, Callable[[Body, W], None], str]] = [
    ("cmd.create_tenant", "token-as-field-name", _token_as_key, "body"),
    ("verify", "token-as-field-name", _token_as_key, "body"),
    ("cmd.add_scope", "secret-as-nested-field-name", _secret_as_nested_key, "scope"),
    ("admin.get_user", "field-name-forging-a-path", _injected_path, "body"),
    ("cmd.grant_role", "token-as-enum-value", put("role", lambda w: w.pat_token), "role"),
    ("cmd.disable_user", "token-as-uuid", put("user_id", lambda w: w.key_token), "user_id"),
    ("cmd.create_tenant", "token-in-bad-name", put("name", lambda w: " " + w.pat_token), "name"),
    ("authorize", "token-as-operation", put("operation", lambda w: w.key_token), "operation"),
    ("login", "password-as-field-name", lambda b, w: b.update({w.password: 1}), "body"),
    ("login", "password-in-long-source", put("source", lambda w: w.password * 10), "source"),
    ("refresh", "refresh-token-as-field-name", lambda b, w: b.update({w.refresh_token: 1}), "body"),
    ("logout", "refresh-token-in-long-source", put("source", lambda w: w.refresh_token * 4), "source"),
    ("challenge", "token-as-public_key", put("public_key", lambda w: w.pat_token), "public_key"),
    ("challenge.answer", "token-as-challenge", put("challenge", lambda w: w.pat_token), "challenge"),
    ("challenge.answer", "seed-in-long-signature", put("signature", lambda w: w.device_seed * 6), "signature"),
    ("cmd.create_signing_key", "secret-as-alg", put("alg", lambda w: w.hs256_secret), "alg"),
    ("cmd.register_public_key", "token-as-public_key", put("public_key", lambda w: w.key_token), "public_key"),
    ("cmd.revoke_session", "refresh-token-as-session_id", put("session_id", lambda w: w.refresh_token), "session_id"),
    ("admin.list_sessions", "refresh-token-as-after", put("after", lambda w: w.refresh_token), "after"),
]

# (endpoint, label, body, field): bodies that msgspec alone would misjudge.
RAW: list[tuple[str, str, bytes, str]] = [
    ("verify", "deeply-nested-value", b'{"token": ' + b"[" * 20000 + b"]" * 20000 + b"}", "token"),
    ("verify", "number-out-of-range", b'{"token": "x", "min_position": 1e400}', "min_position"),
    ("verify", "bad-utf8-after-a-bad-field", b'{"bogus": 1, "token": "\xff"}', "body"),
    ("cmd.create_tenant", "truncated-after-a-bad-field", b'{"bogus": 1, "name": "ac', "body"),
    ("cmd.create_tenant", "field-name-with-newline", b'{"na\\nme": "acme"}', "body"),
    ("cmd.create_tenant", "field-name-with-backtick", b'{"na`me": "acme"}', "body"),
]

UNKNOWN_BEARER = tokens.mint("api_key", uuid.uuid4(), os.urandom(32))


def _tenant_token(w: W) -> str:
    """A JWT the tenant mints with its HS256 key: it verifies, but it is nobody's bearer."""
    now = int(time.time())
    claims = {"tnd": w.tenant_id, "sub": "device-7", "iat": now, "exp": now + 300, "per": {"docs": {"doc/*": "CRUD"}}}
    return jwt.encode(claims, w.hs256_secret, algorithm="HS256", headers={"kid": w.signing_kid})


AUTH_HEADERS: dict[str, Headers] = {
    "missing": lambda w, root: None,
    "empty": lambda w, root: {"Authorization": ""},
    "not-bearer": lambda w, root: {"Authorization": f"Basic {root}"},
    "bearer-without-token": lambda w, root: {"Authorization": "Bearer "},
    "malformed": lambda w, root: {"Authorization": "Bearer not-a-token"},
    "bad-checksum": lambda w, root: {"Authorization": f"Bearer {flip(root, 40)}"},
    "unknown-key": lambda w, root: {"Authorization": f"Bearer {UNKNOWN_BEARER}"},
    "recovery-key": lambda w, root: {"Authorization": f"Bearer {w.recovery_token}"},
    "refresh-token": lambda w, root: {"Authorization": f"Bearer {w.refresh_token}"},
    "tampered-access-token": lambda w, root: {"Authorization": f"Bearer {flip(w.access_token, -10)}"},
    "tenant-token": lambda w, root: {"Authorization": f"Bearer {_tenant_token(w)}"},
}


def _padded_pat(w: W) -> str:
    return w.pat_token.ljust(MAX_TOKEN + 1, "0")


def _oversized_bearer(w: W, root: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + root.ljust(MAX_TOKEN + 1, "0")}


# Another id of the same world that names an entity of the wrong kind.
WRONG_KIND = {
    "tenant_id": "user_id",
    "user_id": "pat_id",
    "pat_id": "key_id",
    "key_id": "pat_id",
    "kid": "key_id",
    "session_id": "signing_kid",
    "credential_id": "user_id",
    "role_id": "user_id",
}
# The fields that carry a token, and so have a size limit of their own.
TOKEN_FIELDS = [
    ("verify", "token"),
    ("authorize", "token"),
    ("redeem", "token"),
    ("refresh", "refresh_token"),
    ("logout", "refresh_token"),
    ("admin.audit_as_of", "token"),
]


def _cases() -> list:
    cases: list[Case] = []
    for e in ENDPOINTS:
        cases += [
            Case(e, f"not-json-{k}", raw(v), "invalid_request", "body")
            for k, v in NOT_JSON.items()
            if not (k == "empty" and e in EMPTY_BODY_IS_EMPTY_OBJECT)
        ]
        cases += [Case(e, f"not-object-{k}", raw(v), "invalid_request", "body") for k, v in NOT_OBJECT.items()]
        base = BASE[e](_PLACEHOLDER)
        base_fields = list(base)
        cases += [Case(e, f"missing-{f}", changed(e, drop(f)), "invalid_request", f) for f in required(e)]
        cases += [Case(e, f"null-{f}", changed(e, put(f, None)), "invalid_request", f) for f in null_refused(e)]
        for f in base_fields:
            wrong = "yes" if isinstance(base[f], bool) else True
            cases.append(Case(e, f"wrong-type-{f}", changed(e, put(f, wrong)), "invalid_request", f))
            if f != "scope":  # an object is the right type there; its bad contents are in CONSTRAINTS
                cases.append(Case(e, f"object-for-{f}", changed(e, put(f, {"x": 1})), "invalid_request", f))
        cases.append(Case(e, "unknown-field", changed(e, put("bogus", 1)), "invalid_request", "bogus"))
        oversized = changed(e, put("description", "x" * MAX_BODY))
        cases.append(Case(e, "oversized-body", oversized, "invalid_request", "body"))
        # Lookups only: authorize's tenant_id is part of the question, not an entity to find.
        ids = [f for f in base_fields if f in ID_FIELDS] if e in AUTHENTICATED else []
        for f in ids:
            other = WRONG_KIND[f]
            cases.append(Case(e, f"unknown-{f}", changed(e, put(f, str(uuid.uuid4()))), "not_found", f))
            wrong = changed(e, put(f, lambda w, o=other: getattr(w, o)))
            cases.append(Case(e, f"{other}-as-{f}", wrong, "not_found", f))
    for e, f in TOKEN_FIELDS:
        for label, token in (("oversized-token", "a" * (MAX_TOKEN + 1)), ("oversized-real-token", _padded_pat)):
            cases.append(Case(e, label, changed(e, put(f, token)), "invalid_request", f))
    for e in AUTHENTICATED:
        unchanged = changed(e, lambda b, w: None)
        cases.append(Case(e, "oversized-bearer", unchanged, "invalid_request", "Authorization", _oversized_bearer))
        cases += [
            Case(e, f"authorization-{k}", unchanged, "unauthenticated", "Authorization", h) for k, h in AUTH_HEADERS.items()
        ]
    for e, f, values, named in ENUMS:
        cases += [Case(e, f"enum-{f}-{i}", changed(e, put(f, v)), "invalid_request", named) for i, v in enumerate(values)]
    cases += [Case(e, label, changed(e, change), code, f) for e, label, change, code, f in CONSTRAINTS]
    cases += [Case(e, label, changed(e, change), "invalid_request", f) for e, label, change, f in SECRETS_IN_REQUEST]
    cases += [Case(e, label, raw(data), "invalid_request", f) for e, label, data, f in RAW]
    cases += REFUSALS
    return [c.param() for c in cases]


# A stand-in world for building tables at import time (only the shape of its values matters).
_SEED = Ed25519PrivateKey.from_private_bytes(bytes(32))
_PLACEHOLDER = W(
    **{
        **{
            f: tokens.mint("pat", uuid.UUID(int=0), bytes(32)) if f.endswith("token") else str(uuid.UUID(int=0))
            for f in W.__dataclass_fields__
        },
        "password": PASSWORD,
        "access_token": "eyJhbGciOiJFZERTQSJ9.e30." + "A" * 86,
        "refresh_token": tokens.mint("refresh", uuid.UUID(int=0), bytes(32)),
        "hs256_secret": b64url(bytes(32)),
        "public_key": b64url(_SEED.public_key().public_bytes_raw()),
        "device_seed": b64url(bytes(32)),
        "challenge": "e30.AAAA",
    }
)
CASES = _cases()


def decoding_refusal(case: Case) -> InvalidRequest | None:
    """What decoding the case's body (built from the stand-in world) raises, if anything."""
    try:
        decode(case.body(_PLACEHOLDER), STRUCTS[case.endpoint])
    except InvalidRequest as error:
        return error
    return None


# The schema half: refused by decoding alone, before a bearer is read or the store is asked.
# These run through NATS on one backend: the store never sees them, and the unit tier
# (tests/unit/test_request_decoding.py) decodes every one of them again.
def _schema_and_store(cases: list) -> tuple[list, list]:
    halves: tuple[list, list] = ([], [])
    for p in cases:
        schema = p.values[0].code == "invalid_request" and not p.values[0].steps and decoding_refusal(p.values[0])
        halves[0 if schema else 1].append(p)
    return halves


SCHEMA_CASES, STORE_CASES = _schema_and_store(CASES)

# ---------------------------------------------------------------------------------------
# Sending, and what no reply may contain.

LEAKS = [
    re.compile(rb"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])"),  # a SHA-256 hex digest
    re.compile(rb"Traceback"),
    re.compile(rb'File "'),
    re.compile(rb"\.py\b"),
    re.compile(rb"(?<![\w.])/(?:[\w.-]+/)+[\w.-]+"),  # an absolute file path
    re.compile(rb"\$argon2"),  # a password hash
    re.compile(rb"PRIVATE KEY"),
]


@dataclass
class Reply:
    data: bytes
    body: dict[str, Any]
    headers: dict[str, str]


async def send(client, instance, endpoint: str, body: bytes, headers: dict[str, str] | None, secrets: list[str]) -> Reply:
    """One request, checked for leaks in its body and headers whatever it answers."""
    msg = await client.nc.request(f"{instance.prefix}.v1.{endpoint}", body, timeout=client.timeout, headers=headers)
    reply = Reply(msg.data, msgspec.json.decode(msg.data), dict(msg.headers or {}))
    everything = msg.data + b"\n" + "\n".join(f"{k}: {v}" for k, v in reply.headers.items()).encode()
    for secret in secrets:
        assert secret.encode() not in everything, f"reply echoes a secret: {reply}"
    for pattern in LEAKS:
        assert not pattern.search(everything), f"reply leaks {pattern.pattern!r}: {reply}"
    return reply


def endpoint_options(endpoint: str) -> dict[str, bool]:
    return world_options(BASE[endpoint], *([PREPARE[endpoint]] if endpoint in PREPARE else []))


# A refusal that appends nothing leaves its tenant as it found it (each case checks that), so
# such cases share one: a tenant costs eight commands (and argon2 with a password), a case
# one request.  A shared tenant serves for a bounded time, so its challenge, access token
# and recovery key are always far from their ends.
SHARE_FOR = 30.0
_shared: dict[tuple[str, str, bool, bool], tuple[float, W]] = {}


async def shared_tenant(client, instance, options: dict[str, bool], slot: str = "a") -> W:
    """The shared tenant with these options; another ``slot`` is another tenant."""
    key = (instance.prefix, slot, options["login"], options["keys"])
    made, w = _shared.get(key, (0.0, None))
    if w is None or time.monotonic() - made > SHARE_FOR:
        w = await make_tenant(client, "bad", **options)
        _shared[key] = (time.monotonic(), w)
    return w


@pytest.fixture
async def world(client, instance, request) -> W:
    """A tenant with what the test's case (or endpoint's base body) reads from it: a fresh
    one, or a shared one for a case that changes nothing first and leaves no record."""
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if "case" in params:
        case = params["case"]
        if not case.steps and not case.records:
            return await shared_tenant(client, instance, case.options)
        return await make_tenant(client, "bad", **case.options)
    options = endpoint_options(params["endpoint"]) if "endpoint" in params else {}
    if params.get("role") in ("user", "pat"):  # test_no_role_reaches_into_another_tenant's bearer only
        return await shared_tenant(client, instance, options)
    return await make_tenant(client, "bad", **options)


def secrets_of(w: W, instance) -> list[str]:
    """Everything secret a world holds, and every sealed private key the instance knows."""
    secrets = [secret_of(t) for t in (*w.tokens, instance.root_token)]
    if w.password is not None:
        secrets += [w.password, secret_of(w.refresh_token), w.access_token.rsplit(".", 1)[1]]
    if w.hs256_secret is not None:
        secrets += [w.hs256_secret, w.device_seed]
    return secrets + [k.sealed_private for k in instance.node.model.signing_keys.values()]


@pytest.fixture
def secrets(world, instance) -> list[str]:
    return secrets_of(world, instance)


def assert_error(reply: Reply, code: str, field: str | None, position: int) -> None:
    assert set(reply.body) == {"error", "position"}, reply.body
    error = reply.body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert (error["code"], error["details"].get("field")) == (code, field), error
    assert isinstance(error["message"], str) and error["message"]
    assert reply.body["position"] == position
    assert reply.headers.get("Nats-Service-Error-Code") == STATUS[code], reply.headers
    assert reply.headers.get("Nats-Service-Error")


# ---------------------------------------------------------------------------------------
# The tests.


def appended(instance, after: int) -> list[str]:
    """The names of the events appended since position ``after``."""
    notifications = instance.node.store.recorder.select_notifications(start=after + 1, limit=100)
    return [n.topic.rsplit(".", 1)[-1] for n in notifications]


async def take(client, instance, w: W, steps: tuple[Step, ...], secrets: list[str]) -> None:
    for step in steps:
        headers = default_headers(step.endpoint, w, instance.root_token)
        reply = await send(client, instance, step.endpoint, msgspec.json.encode(step.body(w)), headers, secrets)
        assert (reply.body.get("error") or {}).get("code") == step.refused, (step, reply.body)


async def check_refusal(client, instance, world, secrets, case: Case) -> None:
    await take(client, instance, world, case.steps, secrets)
    before = store_position(instance)
    reply = await send(
        client, instance, case.endpoint, case.body(world), case.request_headers(world, instance.root_token), secrets
    )
    assert_error(reply, case.code, case.field, store_position(instance))
    assert appended(instance, before) == list(case.records)
    if case.message is not None:
        assert reply.body["error"]["message"] == case.message


@pytest.mark.parametrize("case", STORE_CASES)
async def test_bad_request_is_rejected_and_appends_nothing(client, instance, world, secrets, case: Case):
    await check_refusal(client, instance, world, secrets, case)


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", SCHEMA_CASES)
async def test_undecodable_request_is_rejected_and_appends_nothing(client, instance, world, secrets, case: Case):
    await check_refusal(client, instance, world, secrets, case)


# A tenant admin of A sends tenant B's ids: the same answer as for an id that does not
# exist (or a refusal that does not depend on the id), never success.
CROSS_TENANT: dict[str, tuple[str, str | None]] = {
    "cmd.create_tenant": ("forbidden", None),  # needs root, whatever the name
    "cmd.disable_tenant": ("forbidden", None),
    "cmd.enable_tenant": ("forbidden", None),
    "cmd.register_user": ("forbidden", "tenant_id"),
    "cmd.change_password": ("not_found", "user_id"),
    "cmd.update_user": ("not_found", "user_id"),
    "cmd.delete_user": ("not_found", "user_id"),
    "cmd.disable_user": ("not_found", "user_id"),
    "cmd.enable_user": ("not_found", "user_id"),
    "cmd.grant_role": ("not_found", "user_id"),
    "cmd.revoke_role": ("not_found", "user_id"),
    "cmd.create_pat": ("not_found", "user_id"),
    "cmd.add_scope": ("not_found", "pat_id"),
    "cmd.remove_scope": ("not_found", "pat_id"),
    "cmd.revoke_pat": ("not_found", "pat_id"),
    "cmd.reset_pat_secret": ("not_found", "pat_id"),
    "cmd.update_pat": ("not_found", "pat_id"),
    "cmd.issue_key": ("not_found", "user_id"),
    "cmd.revoke_key": ("not_found", "key_id"),
    "admin.get_user": ("not_found", "user_id"),
    "admin.list_users": ("not_found", "tenant_id"),
    "admin.search_users": ("not_found", "tenant_id"),
    "admin.get_pat": ("not_found", "pat_id"),
    "admin.list_pats": ("not_found", "user_id"),
    "admin.list_keys": ("not_found", "user_id"),
    "cmd.create_signing_key": ("forbidden", "tenant_id"),
    "cmd.retire_signing_key": ("not_found", "kid"),
    "cmd.revoke_signing_key": ("not_found", "kid"),
    "cmd.register_public_key": ("not_found", "user_id"),
    "cmd.remove_public_key": ("not_found", "user_id"),
    "cmd.revoke_session": ("not_found", "session_id"),
    "admin.list_signing_keys": ("not_found", "tenant_id"),
    "admin.list_sessions": ("not_found", "user_id"),
    "admin.login_activity": ("not_found", "user_id"),
    "cmd.create_role": ("forbidden", "tenant_id"),
    "cmd.add_role_scopes": ("not_found", "role_id"),
    "cmd.remove_role_scopes": ("not_found", "role_id"),
    "cmd.delete_role": ("not_found", "role_id"),
    "cmd.set_role_order": ("forbidden", "tenant_id"),
    "admin.get_role": ("not_found", "role_id"),
    "admin.list_roles": ("not_found", "tenant_id"),
    "admin.audit_log": ("not_found", "tenant_id"),
    "admin.audit_as_of": ("not_found", "credential_id"),
    "admin.rebuild_check": ("forbidden", None),
    "cmd.rename_tenant": ("not_found", "tenant_id"),
    "cmd.update_tenant": ("not_found", "tenant_id"),
    "cmd.set_tenant_policy": ("not_found", "tenant_id"),
    "admin.get_tenant": ("not_found", "tenant_id"),
    "cmd.add_scopes": ("not_found", "pat_id"),
    "cmd.remove_scopes": ("not_found", "pat_id"),
    "admin.get_key": ("not_found", "key_id"),
}


@pytest.mark.parametrize("endpoint", list(CROSS_TENANT))
async def test_another_tenants_ids_are_not_found_or_forbidden(client, instance, world, secrets, endpoint):
    other = await make_tenant(client, "other", **endpoint_options(endpoint))
    secrets = [*secrets, *secrets_of(other, instance)]
    admin_a = {"Authorization": f"Bearer {world.admin_token}"}
    code, field = CROSS_TENANT[endpoint]
    await prepare(client, endpoint, other)
    before = store_position(instance)
    reply = await send(client, instance, endpoint, msgspec.json.encode(BASE[endpoint](other)), admin_a, secrets)
    assert_error(reply, code, field, before)
    assert store_position(instance) == before
    if code == "not_found":
        # Control: the same request on A's own entities succeeds, so tenancy alone refused it.
        await prepare(client, endpoint, world)
        reply = await send(client, instance, endpoint, msgspec.json.encode(BASE[endpoint](world)), admin_a, secrets)
        assert "error" not in reply.body, reply.body


@pytest.mark.parametrize("role", ["user", "auditor", "pat"])
@pytest.mark.parametrize("endpoint", list(CROSS_TENANT))
async def test_no_role_reaches_into_another_tenant(client, instance, world, secrets, endpoint, role):
    """The rest of the matrix: tenant A's plain user (API key), auditor (API key) and PAT
    against tenant B's ids are refused whatever the endpoint, and nothing is appended."""
    options = endpoint_options(endpoint)
    other = await (
        make_tenant(client, "other", **options) if endpoint in PREPARE else shared_tenant(client, instance, options, "b")
    )
    secrets = [*secrets, *secrets_of(other, instance)]
    if role == "auditor":
        await client.command("grant_role", user_id=world.user_id, role="auditor")
    bearer = world.pat_token if role == "pat" else world.key_token
    await prepare(client, endpoint, other)
    before = store_position(instance)
    body = msgspec.json.encode(BASE[endpoint](other))
    reply = await send(client, instance, endpoint, body, {"Authorization": f"Bearer {bearer}"}, secrets)
    assert reply.body.get("error", {}).get("code") in ("not_found", "forbidden"), reply.body
    assert store_position(instance) == before


async def prepare(client, endpoint: str, w: W) -> None:
    if endpoint in PREPARE:
        name, fields = PREPARE[endpoint](w)
        await client.command(name, **fields)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_base_bodies_are_accepted(client, instance, world, secrets, endpoint):
    """Control: every case above differs from a request that succeeds in one respect only."""
    await prepare(client, endpoint, world)
    headers = as_root(world, instance.root_token) if endpoint in AUTHENTICATED else None
    before = store_position(instance)
    reply = await send(client, instance, endpoint, msgspec.json.encode(BASE[endpoint](world)), headers, secrets)
    assert "error" not in reply.body, reply.body
    assert "Nats-Service-Error-Code" not in reply.headers
    if endpoint.startswith("cmd.") or endpoint in UNAUTHENTICATED_WRITES:
        assert store_position(instance) > before
    else:
        assert store_position(instance) == before
    if endpoint.startswith("cmd.") or endpoint in ("redeem", "logout"):
        assert reply.body["ok"] is True
    if endpoint in ("login", "refresh", "challenge.answer"):
        assert reply.body["token_type"] == "Bearer" and reply.body["session_id"]
    if endpoint == "verify":
        assert reply.body["valid"] is True


async def test_jwks_takes_an_empty_body_and_never_shows_a_tenants_secret(client, instance, secrets):
    world = await make_tenant(client, "jwks", keys=True)
    secrets = [*secrets, *secrets_of(world, instance)]
    for body in (b"", b"{}", msgspec.json.encode({"tenant_id": world.tenant_id})):
        reply = await send(client, instance, "jwks", body, None, secrets)
        assert reply.body["keys"] and world.signing_kid not in [k["kid"] for k in reply.body["keys"]]
        assert all("d" not in k and "k" not in k for k in reply.body["keys"])


async def test_the_tenant_token_is_valid_where_it_is_refused_as_a_bearer(client, instance, secrets):
    """Control for the ``authorization-tenant-token`` cases: refused as a bearer, not as a token."""
    world = await make_tenant(client, "tt", keys=True)
    reply = await send(client, instance, "verify", msgspec.json.encode({"token": _tenant_token(world)}), None, secrets)
    assert reply.body["valid"] is True, reply.body


def _malformed(w: W) -> dict[str, str]:
    pat = w.pat_token
    return {
        "empty": "",
        "space": " ",
        "garbage": "not a token",
        "prefix-only": "pat_",
        "jwt-shaped": "eyJhbGciOiJub25lIn0.e30.",
        "flipped-id": flip(pat, 8),
        "flipped-secret": flip(pat, 40),
        "flipped-checksum": flip(pat, len(pat) - 2),
        "other-prefix": "key" + pat[3:],
        "unknown-prefix": "tok" + pat[3:],
        "truncated": pat[:-1],
        "extended": pat + "0",
        "leading-space": " " + pat,
        "underscores-moved": pat.replace("_", "-"),
        "lowercased": pat.lower(),
        "non-ascii": "pät" + pat[3:],
        "nul": pat[:30] + "\x00" + pat[31:],
        "max-size": "p" * MAX_TOKEN,
    }


def _unknown(w: W) -> dict[str, str]:
    return {
        "unknown-id": tokens.mint("pat", uuid.uuid4(), os.urandom(32)),
        "right-id-wrong-secret": tokens.mint("pat", uuid.UUID(w.pat_id), os.urandom(32)),
        "right-id-wrong-kind": tokens.mint("api_key", uuid.UUID(w.pat_id), os.urandom(32)),
    }


VERDICTS = [("malformed", k) for k in _malformed(_PLACEHOLDER)] + [("unknown", k) for k in _unknown(_PLACEHOLDER)]


@pytest.mark.parametrize("endpoint", ["verify", "authorize"])
@pytest.mark.parametrize(("reason", "variant"), VERDICTS, ids=[f"{r}-{v}" for r, v in VERDICTS])
async def test_a_bad_token_is_an_answer_not_an_error(client, instance, world, secrets, endpoint, reason, variant):
    token = {**_malformed(world), **_unknown(world)}[variant]
    body = {**BASE[endpoint](world), "token": token}
    before = store_position(instance)
    reply = await send(client, instance, endpoint, msgspec.json.encode(body), None, secrets)
    position = instance.node.model.position
    if endpoint == "verify":
        assert reply.body == {"valid": False, "reason": reason, "position": position}
    else:
        assert reply.body == {"allowed": False, "reason": reason, "principal": None, "matched_scope": None, "position": position}
    assert "Nats-Service-Error-Code" not in reply.headers
    assert store_position(instance) == before


async def test_the_body_limit_is_exact(client, instance, world, secrets):
    body = msgspec.json.encode(BASE["verify"](world))
    at_limit = body + b" " * (MAX_BODY - len(body))  # JSON may end in whitespace
    reply = await send(client, instance, "verify", at_limit, None, secrets)
    assert reply.body["valid"] is True
    before = store_position(instance)
    reply = await send(client, instance, "verify", at_limit + b" ", None, secrets)
    assert_error(reply, "invalid_request", "body", before)


@pytest.mark.parametrize("endpoint", ["verify", "authorize", "jwks", "admin.get_user"])
async def test_a_min_position_never_reached_is_stale(client, instance, world, secrets, endpoint, monkeypatch):
    quick_to_stale(monkeypatch, instance)
    body = {**BASE[endpoint](world), "min_position": 10**30}
    headers = as_root(world, instance.root_token) if endpoint in AUTHENTICATED else None
    before = store_position(instance)
    reply = await send(client, instance, endpoint, msgspec.json.encode(body), headers, secrets)
    assert_error(reply, "stale", "min_position", before)
    assert store_position(instance) == before


def _has_enum(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.LiteralType):
        return True
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_has_enum(t) for t in info.types)
    if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
        return _has_enum(info.item_type)
    return False


def _options(info: msgspec.inspect.Type) -> tuple[msgspec.inspect.Type, ...]:
    return info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)


def test_the_tables_cover_every_endpoint():
    served = {subject.split(".v1.", 1)[1] for subject in subjects("p").values()}
    assert set(ENDPOINTS) == served == set(STRUCTS)
    assert set(CROSS_TENANT) | NAMES_NO_TENANT == set(AUTHENTICATED)
    assert set(ID_FIELDS) <= set(WRONG_KIND)
    token_fields = set()
    for endpoint, cls in STRUCTS.items():
        fields = {f.encode_name for f in msgspec.structs.fields(cls)}
        assert set(BASE[endpoint](_PLACEHOLDER)) == fields, endpoint
        info = msgspec.inspect.type_info(cls)
        enums = {(endpoint, f.encode_name) for f in info.fields if _has_enum(f.type)}
        assert enums <= {(e, f) for e, f, _, _ in ENUMS}, f"{endpoint}: add its enum fields to ENUMS"
        for f in info.fields:
            types = _options(f.type)
            if any(isinstance(t, msgspec.inspect.StrType) and t.max_length == MAX_TOKEN for t in types):
                token_fields.add((endpoint, f.encode_name))
            uuid_typed = any(isinstance(t, msgspec.inspect.UUIDType) for t in types)
            if endpoint in AUTHENTICATED and uuid_typed and f.encode_name != "after":
                assert f.encode_name in ID_FIELDS, f"{endpoint}: add {f.encode_name} to ID_FIELDS and WRONG_KIND"
    assert token_fields == set(TOKEN_FIELDS), "add the token field to TOKEN_FIELDS"
