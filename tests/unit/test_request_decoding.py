"""The schema half of the bad-input matrix (tests/e2e/test_bad_input.py), without NATS: every
case that decoding alone refuses is decoded here with the endpoint's request struct, and
must name the field the wire test expects, in a message that repeats nothing secret.  The
same cases still go through a real nats-server in the e2e tier (on one backend: no store
sees them); here all of them take a
second, so a schema change shows its effect before anything starts."""

from __future__ import annotations

import msgspec
import pytest

from authbus.handlers.wire import PATTERN_WORDS, encode
from tests.e2e.test_bad_input import _PLACEHOLDER, LEAKS, SCHEMA_CASES, STRUCTS, Case
from tests.e2e.test_bad_input import decoding_refusal as _refusal
from tests.helpers import secret_of

SECRETS = [secret_of(t) for t in _PLACEHOLDER.tokens] + [_PLACEHOLDER.password, _PLACEHOLDER.hs256_secret]


def test_every_endpoints_schema_cases_are_here():
    kinds = {"not-json", "not-object", "wrong-type", "unknown-field", "oversized-body"}  # every endpoint has these
    for endpoint in STRUCTS:
        labels = {p.values[0].label for p in SCHEMA_CASES if p.values[0].endpoint == endpoint}
        assert {kind for kind in kinds if any(label.startswith(kind) for label in labels)} == (
            kinds if msgspec.structs.fields(STRUCTS[endpoint]) else kinds - {"wrong-type"}
        ), endpoint


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_decoding_names_the_field_and_repeats_nothing(case: Case):
    error = _refusal(case)
    assert error is not None and error.details.get("field") == case.field, (error and error.details, error and error.message)
    reply = encode({"error": {"code": error.code, "message": error.message, "details": error.details}, "position": 0})
    assert error.message and not any(s.encode() in reply for s in SECRETS if s), reply
    assert not any(pattern.search(reply) for pattern in LEAKS), reply


def _patterns(node: object, seen: set[int]) -> set[str]:
    """Every string pattern reachable from a msgspec type description."""
    if id(node) in seen:
        return set()
    seen.add(id(node))
    found = {node.pattern} if isinstance(node, msgspec.inspect.StrType) and node.pattern else set()
    children = []
    if isinstance(node, msgspec.inspect.StructType):
        children = [f.type for f in node.fields]
    elif isinstance(node, msgspec.inspect.UnionType):
        children = list(node.types)
    elif isinstance(node, msgspec.inspect.ListType | msgspec.inspect.SetType | msgspec.inspect.FrozenSetType):
        children = [node.item_type]
    elif isinstance(node, msgspec.inspect.DictType):
        children = [node.key_type, node.value_type]
    for child in children:
        found |= _patterns(child, seen)
    return found


def test_every_pattern_of_the_contract_is_told_in_words():
    """An invalid_request says what was expected ("operation must be a lowercase word such as
    create, read, …"), never msgspec's "Expected str matching regex"."""
    patterns = set().union(*(_patterns(msgspec.inspect.type_info(cls), set()) for cls in STRUCTS.values()))
    assert patterns - set(PATTERN_WORDS) == set()
    error = _refusal(next(p.values[0] for p in SCHEMA_CASES if p.values[0].label == "operation-uppercase"))
    assert error is not None and "must be a lowercase word" in error.message
