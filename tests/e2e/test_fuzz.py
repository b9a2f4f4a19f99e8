"""Fuzzing every endpoint's body and headers through the real NATS interface, on SQLite and
PostgreSQL.

Hypothesis sends each endpoint three kinds of request: arbitrary bytes, arbitrary JSON, and
the endpoint's valid body (tests.e2e.test_bad_input.BASE) with one field replaced, dropped or
added, each with arbitrary or valid headers. Whatever comes back must be a well-formed
reply. An error must have a known code and never be `internal`. No reply may carry a
secret, digest, traceback or path (checked by `send`). A refused request appends nothing,
except the audit records some refusals exist to leave (`LoginFailed`, a reused refresh
token's `SessionRevoked`).

The budget fits CI: AUTHBUS_FUZZ_EXAMPLES cases per endpoint and backend (default 40). Set
it to 250 or more for ≥ 10,000 cases in all (docs/reliability.md).
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.test_bad_input import AUTHENTICATED, BASE, ENDPOINTS, STATUS, appended, as_root, secrets, send, world  # noqa: F401  (fixtures, used by name)
from tests.helpers import store_position

EXAMPLES = int(os.environ.get("AUTHBUS_FUZZ_EXAMPLES", "40"))
# Refusals that are recorded on purpose (docs/wire.md §6): what each endpoint may append
# while answering an error.
AUDITED_REFUSALS = {
    "login": {"LoginFailed", "FirstLoginFailed"},
    "refresh": {"SessionRevoked"},
    "challenge.answer": {"LoginFailed"},
}
CODES = set(STATUS) - {"internal"}
# Endpoints that read a token: from the Authorization header, or from a field of the body.
AUTHENTICATED_OR_TOKEN = frozenset(AUTHENTICATED) | {"verify", "authorize", "refresh", "logout", "redeem"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, str | None, Any]:
    """How to spoil a valid body: replace a field, drop it, or add an unknown one."""
    how = draw(st.sampled_from(["replace", "drop", "add"]))
    return how, draw(st.text(max_size=12)) if how == "add" else None, draw(json_values)


def spoil(body: dict[str, Any], change: tuple[str, str | None, Any], index: int) -> dict[str, Any]:
    how, name, value = change
    body = dict(body)
    fields = sorted(body)
    if how == "add" or not fields:
        body[name or "extra"] = value
    else:
        field = fields[index % len(fields)]
        if how == "drop":
            del body[field]
        else:
            body[field] = value
    return body


requests = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("json"), json_values),
    st.tuples(st.just("spoiled"), st.tuples(mutation(), st.integers(min_value=0, max_value=50))),
)
headers = st.one_of(
    st.none(),
    st.just("root"),
    st.dictionaries(st.sampled_from(["Authorization", "authorization", "X-Other"]), header_values, max_size=2),
)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests, header=headers)
async def test_fuzzed_requests_get_well_formed_replies_and_lose_nothing(
    client, instance, world, secrets, endpoint, request, header
):
    kind, value = request
    if kind == "bytes":
        body = value
    elif kind == "json":
        body = msgspec.json.encode(value)
    else:
        change, index = value
        body = msgspec.json.encode(spoil(BASE[endpoint](world), change, index))
    sent_headers = as_root(world, instance.root_token) if header == "root" else header
    before = store_position(instance)
    reply = await send(client, instance, endpoint, body, sent_headers, secrets)
    assert isinstance(reply.body, dict) and isinstance(reply.body.get("position"), int), reply.body
    error = reply.body.get("error")
    if error is None:
        return  # a spoiled body can still be a valid request (a dropped optional field, say)
    assert error["code"] in CODES, reply.body
    assert reply.headers.get("Nats-Service-Error-Code") == STATUS[error["code"]]
    assert set(appended(instance, before)) <= AUDITED_REFUSALS.get(endpoint, set()), (endpoint, body)


NON_ASCII_TAIL = "pat_" + "A" * 22 + "_" + "0" * 43 + "_éééééé"
TOKEN_FIELDS = ("token", "refresh_token")


@st.composite
def hostile_token(draw: st.DrawFn, world) -> str:
    """A token of the world's with a stretch replaced by any text, or a known troublemaker."""
    if draw(st.booleans()):
        return draw(st.sampled_from([NON_ASCII_TAIL, "é.é.é", "..", "x" * 300, "\x00"]))
    token = draw(st.sampled_from(world.tokens))
    start = draw(st.integers(0, len(token)))
    end = draw(st.integers(start, len(token)))
    return token[:start] + draw(st.text(max_size=12)) + token[end:]


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e in AUTHENTICATED_OR_TOKEN])
@settings(
    max_examples=max(5, EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_token_gets_internal_anywhere_a_token_goes(client, instance, world, secrets, endpoint, data):
    """Every place a token is read (a body's token fields, the Authorization header) answers
    a hostile token with a verdict or a client error, never ``internal``."""
    token = data.draw(hostile_token(world))
    body = BASE[endpoint](world)
    for name in TOKEN_FIELDS:
        if name in body:
            body[name] = token
    headers = {"Authorization": f"Bearer {token}"} if endpoint in AUTHENTICATED else None
    reply = await send(client, instance, endpoint, msgspec.json.encode(body), headers, secrets)
    error = reply.body.get("error")
    assert error is None or error["code"] in CODES, reply.body
