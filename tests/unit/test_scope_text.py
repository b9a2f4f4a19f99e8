"""A scope's string form, ``[domain/]entity_type:operation:entity_id``: one parser for the
CLI, the HTTP edge, tokens' ``scp`` and the wire, and one text for each scope (issue 19)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authbus.domain.scopes import Scope, parse_scope, scope_text

pytestmark = pytest.mark.unit

# What each part may hold in the string form: no whitespace, and no "/" or ":" where those cut.
CUTLESS = st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="/:"), min_size=1, max_size=20)
IDS = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=20)
OPERATIONS = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)


@given(st.one_of(st.none(), CUTLESS), CUTLESS, OPERATIONS, IDS)
def test_every_scope_without_a_cut_in_its_names_reads_back_from_its_text(domain, entity_type, operation, entity_id):
    scope = Scope(entity_type=entity_type, operation=operation, entity_id=entity_id, domain=domain)
    assert parse_scope(scope_text(scope)) == scope


@given(st.text(max_size=60))
def test_a_text_names_at_most_one_scope_and_is_that_scopes_only_text(text):
    scope = parse_scope(text)
    assert scope is None or scope_text(scope) == text


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("file:read:folder/7", Scope("file", "read", "folder/7")),  # "/" in an id: the id is the rest
        ("docs/document:read:*", Scope("document", "read", "*", "docs")),
        ("doc:read:urn:isbn:1", Scope("doc", "read", "urn:isbn:1")),
        ("docs//document:read:*", None),  # where does the domain end?
        ("a/b/c:read:*", None),
        ("/document:read:*", None),
        ("document:READ:*", None),
        ("document:read", None),
        ("document:read:", None),
    ],
)
def test_the_cases_users_wrote(text, scope):
    assert parse_scope(text) == scope
