"""Bad input through the real NATS interface, on SQLite and PostgreSQL (DESIGN §5).

Every endpoint the service answers gets every kind of bad request: not JSON, JSON that is
not an object, a missing required field, a wrong type, an unknown enum value, an unknown
field, a value out of range, an oversized body or token, a bad ``Authorization`` header,
unknown ids, ids of the wrong kind, and ids of another tenant.  Each must come back as a
well-formed error with the right code, naming the field, with the micro error header set,
and the event store must not have moved.  A malformed token sent to verify or authorize is
an answer, not an error.  No reply may carry a token's secret, a SHA-256 digest, a
traceback or a file path.

The matrix is generated from data tables: ``BASE`` holds one valid body per endpoint, built
from a fresh tenant (``tests.helpers.make_tenant``), and every case is a change to it.
``test_the_tables_cover_every_endpoint`` fails when an endpoint, field or enum is added
without a row here.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from authbus.domain import tokens
from authbus.domain.commands import COMMANDS
from authbus.handlers.admin import ADMIN_READS
from authbus.handlers.commands import RedeemRequest
from authbus.handlers.queries import AuthorizeRequest, VerifyRequest
from authbus.handlers.service import subjects
from authbus.handlers.wire import MAX_BODY, MAX_TOKEN
from tests.helpers import PAT_SCOPE, TenantWorld, make_tenant, secret_of, store_position

Body = dict[str, Any]
W = TenantWorld

# ---------------------------------------------------------------------------------------
# One valid request per endpoint.  Every field of the request struct appears, so that
# "wrong type" reaches every field; ``test_base_bodies_are_accepted`` proves they are valid.

SCOPE_NEW = {"domain": "docs", "entity_type": "doc", "operation": "update", "entity_id": "42"}


def cmd(**fields: Any) -> Body:
    return {**fields, "command_id": str(uuid.uuid4())}


BASE: dict[str, Callable[[W], Body]] = {
    "verify": lambda w: {"token": w.pat_token, "min_position": 0},
    "authorize": lambda w: {
        "token": w.pat_token, "domain": "docs", "entity_type": "doc", "operation": "read", "entity_id": "42",
        "tenant_id": w.tenant_id, "min_position": 0,
    },
    "redeem": lambda w: cmd(token=w.recovery_token, password="a new password"),
    "cmd.create_tenant": lambda w: cmd(name=f"new-{uuid.uuid4().hex}"),
    "cmd.disable_tenant": lambda w: cmd(tenant_id=w.tenant_id, reason="audit"),
    "cmd.enable_tenant": lambda w: cmd(tenant_id=w.tenant_id),
    "cmd.register_user": lambda w: cmd(
        tenant_id=w.tenant_id, username="bob", password="bob's password", kind="user", roles=["user"]
    ),
    "cmd.change_password": lambda w: cmd(user_id=w.user_id, password="a new password", old_password="whatever"),
    "cmd.disable_user": lambda w: cmd(user_id=w.user_id, reason="left"),
    "cmd.enable_user": lambda w: cmd(user_id=w.user_id),
    "cmd.grant_role": lambda w: cmd(user_id=w.user_id, role="auditor"),
    "cmd.revoke_role": lambda w: cmd(user_id=w.user_id, role="user", reason="demoted"),
    "cmd.create_pat": lambda w: cmd(
        user_id=w.user_id, name="deploy", description="d", expires_in=3600, scopes=[dict(PAT_SCOPE)]
    ),
    "cmd.add_scope": lambda w: cmd(pat_id=w.pat_id, scope=dict(SCOPE_NEW)),
    "cmd.remove_scope": lambda w: cmd(pat_id=w.pat_id, scope=dict(PAT_SCOPE)),
    "cmd.revoke_pat": lambda w: cmd(pat_id=w.pat_id, reason="leaked"),
    "cmd.reset_pat_secret": lambda w: cmd(pat_id=w.pat_id, expires_in=3600),
    "cmd.issue_key": lambda w: cmd(
        user_id=w.user_id, kind="api_key", name="k", expires_in=3600, scopes=[dict(PAT_SCOPE)]
    ),
    "cmd.revoke_key": lambda w: cmd(key_id=w.key_id, reason="rotated"),
    "admin.get_user": lambda w: {"user_id": w.user_id, "min_position": 0},
    "admin.list_users": lambda w: {"tenant_id": w.tenant_id, "limit": 10, "after": w.admin_id, "min_position": 0},
    "admin.get_pat": lambda w: {"pat_id": w.pat_id, "min_position": 0},
    "admin.list_pats": lambda w: {"user_id": w.user_id, "limit": 10, "after": w.pat_id, "min_position": 0},
    "admin.list_keys": lambda w: {"user_id": w.user_id, "limit": 10, "after": w.key_id, "min_position": 0},
}

STRUCTS: dict[str, type] = {
    "verify": VerifyRequest,
    "authorize": AuthorizeRequest,
    "redeem": RedeemRequest,
    **{f"cmd.{name}": cls for name, cls in COMMANDS.items()},
    **{f"admin.{name}": cls for name, (cls, _) in ADMIN_READS.items()},
}
ENDPOINTS = list(BASE)
AUTHENTICATED = [e for e in ENDPOINTS if e.startswith(("cmd.", "admin."))]
ID_FIELDS = ("tenant_id", "user_id", "pat_id", "key_id")  # ids that name an entity (not the ``after`` cursor)

STATUS = {
    "invalid_request": "400", "unauthenticated": "401", "forbidden": "403", "not_found": "404", "conflict": "409",
    "stale": "503",
}

# Set up before a base body can succeed on its own (the control test only).
PREPARE: dict[str, Callable[[W], tuple[str, Body]]] = {
    "cmd.enable_tenant": lambda w: ("disable_tenant", {"tenant_id": w.tenant_id}),
    "cmd.enable_user": lambda w: ("disable_user", {"user_id": w.user_id}),
}

# ---------------------------------------------------------------------------------------
# Cases.  A case is an endpoint, a request (body bytes and headers, from a TenantWorld and
# the root token) and the error it must produce.

Headers = Callable[[W, str], "dict[str, str] | None"]


def as_root(w: W, root: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {root}"}


@dataclass(frozen=True)
class Case:
    endpoint: str
    label: str
    body: Callable[[W], bytes]
    code: str
    field: str | None
    headers: Headers | None = None  # None: root's bearer on authenticated endpoints, nothing otherwise

    def request_headers(self, w: W, root: str) -> dict[str, str] | None:
        if self.headers is not None:
            return self.headers(w, root)
        return as_root(w, root) if self.endpoint in AUTHENTICATED else None

    def param(self):
        return pytest.param(self, id=f"{self.endpoint}:{self.label}")


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
    ("cmd.register_user", "roles", [["superuser"], ["Admin"]], "roles[0]"),
    ("cmd.grant_role", "role", ["superuser", "Admin", ""], "role"),
    ("cmd.revoke_role", "role", ["superuser", "USER"], "role"),
    ("cmd.issue_key", "kind", ["pat", "refresh", "API_KEY"], "kind"),
]

def _recovery_for_two_days(b: Body, w: W) -> None:
    b.update(kind="recovery", scopes=None, expires_in=2 * 86400)  # recovery keys live a day at most


TOO_LONG_TEXT = "x" * 1025
LONG_NAME = "n" * 129
OVER_A_YEAR = 367 * 86400

# (endpoint, label, change, code, field): values of the right type that are still wrong,
# in the request's constraints or in the domain's rules.
CONSTRAINTS: list[tuple[str, str, Callable[[Body, W], None], str, str | None]] = [
    ("verify", "min_position-negative", put("min_position", -1), "invalid_request", "min_position"),
    ("verify", "min_position-float", put("min_position", 1.5), "invalid_request", "min_position"),
    ("verify", "min_position-string", put("min_position", "1"), "invalid_request", "min_position"),
    ("authorize", "operation-uppercase", put("operation", "READ"), "invalid_request", "operation"),
    ("authorize", "operation-empty", put("operation", ""), "invalid_request", "operation"),
    ("authorize", "entity_type-space", put("entity_type", "a doc"), "invalid_request", "entity_type"),
    ("authorize", "entity_id-empty", put("entity_id", ""), "invalid_request", "entity_id"),
    ("authorize", "entity_id-too-long", put("entity_id", LONG_NAME), "invalid_request", "entity_id"),
    ("authorize", "domain-empty", put("domain", ""), "invalid_request", "domain"),
    ("redeem", "password-short", put("password", "1234567"), "invalid_request", "password"),
    ("redeem", "token-a-pat", put("token", lambda w: w.pat_token), "unauthenticated", "token"),
    ("redeem", "token-malformed", put("token", "rec_nope"), "unauthenticated", "token"),
    ("redeem", "token-bad-checksum", put("token", lambda w: flip(w.recovery_token, 40)), "unauthenticated", "token"),
    ("redeem", "command_id-empty", put("command_id", ""), "invalid_request", "command_id"),
    ("cmd.create_tenant", "name-empty", put("name", ""), "invalid_request", "name"),
    ("cmd.create_tenant", "name-padded", put("name", " acme"), "invalid_request", "name"),
    ("cmd.create_tenant", "name-newline", put("name", "ac\nme"), "invalid_request", "name"),
    ("cmd.create_tenant", "name-too-long", put("name", LONG_NAME), "invalid_request", "name"),
    ("cmd.create_tenant", "command_id-empty", put("command_id", ""), "invalid_request", "command_id"),
    ("cmd.create_tenant", "command_id-too-long", put("command_id", LONG_NAME), "invalid_request", "command_id"),
    ("cmd.create_tenant", "name-taken", put("name", "system"), "conflict", "name"),
    ("cmd.disable_tenant", "tenant_id-not-a-uuid", put("tenant_id", "acme"), "invalid_request", "tenant_id"),
    ("cmd.disable_tenant", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.enable_tenant", "not-disabled", lambda b, w: None, "conflict", "tenant_id"),
    ("cmd.register_user", "username-space", put("username", "bo b"), "invalid_request", "username"),
    ("cmd.register_user", "username-leading-dot", put("username", ".bob"), "invalid_request", "username"),
    ("cmd.register_user", "username-too-long", put("username", LONG_NAME), "invalid_request", "username"),
    ("cmd.register_user", "password-short", put("password", "1234567"), "invalid_request", "password"),
    ("cmd.register_user", "password-too-long", put("password", TOO_LONG_TEXT), "invalid_request", "password"),
    ("cmd.register_user", "roles-2nd-unknown", put("roles", ["user", "superuser"]), "invalid_request", "roles[1]"),
    ("cmd.register_user", "roles-too-many", put("roles", ["user"] * 5), "invalid_request", "roles"),
    ("cmd.register_user", "root-outside-system", put("roles", ["root"]), "forbidden", "roles"),
    ("cmd.register_user", "username-taken", put("username", "user-1"), "conflict", "username"),
    ("cmd.change_password", "password-short", put("password", "short"), "invalid_request", "password"),
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
    ("cmd.add_scope", "scope-unknown-field", put("scope.bogus", True), "invalid_request", "scope.bogus"),
    ("cmd.add_scope", "already-held", put("scope", dict(PAT_SCOPE)), "conflict", "scope"),
    ("cmd.remove_scope", "not-held", put("scope", dict(SCOPE_NEW)), "conflict", "scope"),
    ("cmd.remove_scope", "operation-missing", drop("scope.operation"), "invalid_request", "scope.operation"),
    ("cmd.revoke_pat", "reason-too-long", put("reason", TOO_LONG_TEXT), "invalid_request", "reason"),
    ("cmd.reset_pat_secret", "expires_in-zero", put("expires_in", 0), "invalid_request", "expires_in"),
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
AUTH_HEADERS: dict[str, Headers] = {
    "missing": lambda w, root: None,
    "empty": lambda w, root: {"Authorization": ""},
    "not-bearer": lambda w, root: {"Authorization": f"Basic {root}"},
    "bearer-without-token": lambda w, root: {"Authorization": "Bearer "},
    "malformed": lambda w, root: {"Authorization": "Bearer not-a-token"},
    "bad-checksum": lambda w, root: {"Authorization": f"Bearer {flip(root, 40)}"},
    "unknown-key": lambda w, root: {"Authorization": f"Bearer {UNKNOWN_BEARER}"},
    "recovery-key": lambda w, root: {"Authorization": f"Bearer {w.recovery_token}"},
}

def _padded_pat(w: W) -> str:
    return w.pat_token.ljust(MAX_TOKEN + 1, "0")


def _oversized_bearer(w: W, root: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + root.ljust(MAX_TOKEN + 1, "0")}


# Another id of the same world that names an entity of the wrong kind.
WRONG_KIND = {"tenant_id": "user_id", "user_id": "pat_id", "pat_id": "key_id", "key_id": "pat_id"}


def _cases() -> list:
    cases: list[Case] = []
    for e in ENDPOINTS:
        cases += [Case(e, f"not-json-{k}", raw(v), "invalid_request", "body") for k, v in NOT_JSON.items()]
        cases += [Case(e, f"not-object-{k}", raw(v), "invalid_request", "body") for k, v in NOT_OBJECT.items()]
        base_fields = list(BASE[e](_PLACEHOLDER))
        cases += [Case(e, f"missing-{f}", changed(e, drop(f)), "invalid_request", f) for f in required(e)]
        cases += [Case(e, f"null-{f}", changed(e, put(f, None)), "invalid_request", f) for f in null_refused(e)]
        for f in base_fields:
            cases.append(Case(e, f"wrong-type-{f}", changed(e, put(f, True)), "invalid_request", f))
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
    for e in ("verify", "authorize", "redeem"):
        for label, token in (("oversized-token", "a" * (MAX_TOKEN + 1)), ("oversized-real-token", _padded_pat)):
            cases.append(Case(e, label, changed(e, put("token", token)), "invalid_request", "token"))
    for e in AUTHENTICATED:
        unchanged = changed(e, lambda b, w: None)
        cases.append(Case(e, "oversized-bearer", unchanged, "invalid_request", "Authorization", _oversized_bearer))
        cases += [
            Case(e, f"authorization-{k}", unchanged, "unauthenticated", "Authorization", h)
            for k, h in AUTH_HEADERS.items()
        ]
    for e, f, values, named in ENUMS:
        cases += [
            Case(e, f"enum-{f}-{i}", changed(e, put(f, v)), "invalid_request", named) for i, v in enumerate(values)
        ]
    cases += [Case(e, label, changed(e, change), code, f) for e, label, change, code, f in CONSTRAINTS]
    cases += [Case(e, label, changed(e, change), "invalid_request", f) for e, label, change, f in SECRETS_IN_REQUEST]
    cases += [Case(e, label, raw(data), "invalid_request", f) for e, label, data, f in RAW]
    return [c.param() for c in cases]


# A stand-in world for building tables at import time (only the shape of its values matters).
_PLACEHOLDER = W(**{
    f: tokens.mint("pat", uuid.UUID(int=0), bytes(32)) if f.endswith("token") else str(uuid.UUID(int=0))
    for f in W.__dataclass_fields__
})
CASES = _cases()

# ---------------------------------------------------------------------------------------
# Sending, and what no reply may contain.

LEAKS = [
    re.compile(rb"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])"),  # a SHA-256 hex digest
    re.compile(rb"Traceback"),
    re.compile(rb'File "'),
    re.compile(rb"\.py\b"),
    re.compile(rb"(?<![\w.])/(?:[\w.-]+/)+[\w.-]+"),  # an absolute file path
]


@dataclass
class Reply:
    data: bytes
    body: dict[str, Any]
    headers: dict[str, str]


async def send(
    client, instance, endpoint: str, body: bytes, headers: dict[str, str] | None, secrets: list[str]
) -> Reply:
    """One request, checked for leaks in its body and headers whatever it answers."""
    msg = await client.nc.request(f"{instance.prefix}.v1.{endpoint}", body, timeout=client.timeout, headers=headers)
    reply = Reply(msg.data, msgspec.json.decode(msg.data), dict(msg.headers or {}))
    everything = msg.data + b"\n" + "\n".join(f"{k}: {v}" for k, v in reply.headers.items()).encode()
    for secret in secrets:
        assert secret.encode() not in everything, f"reply echoes a secret: {reply}"
    for pattern in LEAKS:
        assert not pattern.search(everything), f"reply leaks {pattern.pattern!r}: {reply}"
    return reply


@pytest.fixture
async def world(client) -> W:
    return await make_tenant(client, "bad")


@pytest.fixture
def secrets(world, instance) -> list[str]:
    return [secret_of(t) for t in (*world.tokens, instance.root_token)]


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


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_is_rejected_and_appends_nothing(client, instance, world, secrets, case: Case):
    before = store_position(instance)
    reply = await send(
        client, instance, case.endpoint, case.body(world), case.request_headers(world, instance.root_token), secrets
    )
    assert_error(reply, case.code, case.field, before)
    assert store_position(instance) == before


# A tenant admin of A sends tenant B's ids: the same answer as for an id that does not
# exist (or a refusal that does not depend on the id), never success.
CROSS_TENANT: dict[str, tuple[str, str | None]] = {
    "cmd.create_tenant": ("forbidden", None),  # needs root, whatever the name
    "cmd.disable_tenant": ("forbidden", None),
    "cmd.enable_tenant": ("forbidden", None),
    "cmd.register_user": ("forbidden", "tenant_id"),
    "cmd.change_password": ("not_found", "user_id"),
    "cmd.disable_user": ("not_found", "user_id"),
    "cmd.enable_user": ("not_found", "user_id"),
    "cmd.grant_role": ("not_found", "user_id"),
    "cmd.revoke_role": ("not_found", "user_id"),
    "cmd.create_pat": ("not_found", "user_id"),
    "cmd.add_scope": ("not_found", "pat_id"),
    "cmd.remove_scope": ("not_found", "pat_id"),
    "cmd.revoke_pat": ("not_found", "pat_id"),
    "cmd.reset_pat_secret": ("not_found", "pat_id"),
    "cmd.issue_key": ("not_found", "user_id"),
    "cmd.revoke_key": ("not_found", "key_id"),
    "admin.get_user": ("not_found", "user_id"),
    "admin.list_users": ("not_found", "tenant_id"),
    "admin.get_pat": ("not_found", "pat_id"),
    "admin.list_pats": ("not_found", "user_id"),
    "admin.list_keys": ("not_found", "user_id"),
}


@pytest.mark.parametrize("endpoint", list(CROSS_TENANT))
async def test_another_tenants_ids_are_not_found_or_forbidden(client, instance, world, secrets, endpoint):
    other = await make_tenant(client, "other")
    secrets = [*secrets, *(secret_of(t) for t in other.tokens)]
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
    if endpoint.startswith("cmd.") or endpoint == "redeem":
        assert reply.body["ok"] is True and store_position(instance) > before
    else:
        assert store_position(instance) == before
    if endpoint == "verify":
        assert reply.body["valid"] is True


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
        assert reply.body == {
            "allowed": False, "reason": reason, "principal": None, "matched_scope": None, "position": position
        }
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


@pytest.mark.parametrize("endpoint", ["verify", "authorize", "admin.get_user"])
async def test_a_min_position_never_reached_is_stale(client, instance, world, secrets, endpoint):
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


def test_the_tables_cover_every_endpoint():
    served = {subject.split(".v1.", 1)[1] for subject in subjects("p").values()}
    assert set(ENDPOINTS) == served == set(STRUCTS)
    assert set(CROSS_TENANT) == set(AUTHENTICATED)
    for endpoint, cls in STRUCTS.items():
        fields = {f.encode_name for f in msgspec.structs.fields(cls)}
        assert set(BASE[endpoint](_PLACEHOLDER)) == fields, endpoint
        info = msgspec.inspect.type_info(cls)
        enums = {(endpoint, f.encode_name) for f in info.fields if _has_enum(f.type)}
        assert enums <= {(e, f) for e, f, _, _ in ENUMS}, f"{endpoint}: add its enum fields to ENUMS"
