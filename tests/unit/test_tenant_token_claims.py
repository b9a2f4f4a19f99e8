"""What a tenant-minted token's claims grant (wire.md §3.7): pure, no I/O."""

import pytest

from authbus.domain.scopes import Scope, parse_scope
from authbus.projections.jwt_tokens import granted


def keys(grants):
    return {(s.domain, s.entity_type, s.operation, s.entity_id) for s in grants.scopes.values()}


def test_per_scopes_and_scp_are_one_union_and_dpv_is_kept():
    grants = granted(
        {
            "per": {"docs": {"document/*": "CR"}},
            "scopes": {"invoice": {"actions": ["read"]}},
            "scp": ["docs/document:read:*", "report:read:7"],
            "dpv": {"docs": ["document/4"]},
        }
    )
    assert keys(grants) == {
        ("docs", "document", "create", "*"),
        ("docs", "document", "read", "*"),
        (None, "invoice", "read", "*"),
        (None, "report", "read", "7"),
    }
    assert grants.dpv == {"docs": ["document/4"]}


def test_no_claims_grant_nothing():
    grants = granted({})
    assert (grants.scopes, grants.dpv) == ({}, None)


@pytest.mark.parametrize(
    "claims",
    [
        {"scopes": ["invoice"]},
        {"scopes": {"invoice": ["read"]}},
        {"scopes": {"invoice": {"actions": "read"}}},
        {"scopes": {"invoice": {"actions": ["Read"]}}},  # operations are lower case (§4.1)
        {"scopes": {"in voice": {"actions": ["read"]}}},
        {"scp": "docs/document:read:*"},
        {"scp": ["docs/document:read"]},
        {"scp": [7]},
        {"scp": ["docs//document:read:*"]},
        {"per": {"docs": {"document": "R"}}},
        {"dpv": 1},
        {"dpv": {"docs": "document/4"}},
        {"dpv": {"docs": [4]}},
    ],
    ids=repr,
)
def test_a_malformed_claim_makes_the_whole_token_malformed(claims):
    assert granted({"per": {"docs": {"document/*": "R"}}, **claims}) is None


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("docs/document:read:*", Scope(domain="docs", entity_type="document", operation="read", entity_id="*")),
        ("document:read:42", Scope(entity_type="document", operation="read", entity_id="42")),
        ("a/b/c:read:1", None),  # where would the domain end?
        ("file:read:folder/7", Scope(entity_type="file", operation="read", entity_id="folder/7")),
        ("document:read:", None),
        ("document:READ:1", None),
        ("/document:read:1", None),
        ("document read:1", None),
    ],
)
def test_scope_strings(text, scope):
    assert parse_scope(text) == scope
